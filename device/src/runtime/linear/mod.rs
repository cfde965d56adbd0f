//! Linear layers of int8 bundles (`x · W + b`, W constant), as the register tile
//! of `super::tile` swapped in for tract's product when a graph is loaded.
//!
//! A beam step multiplies 15 rows by each of its weight matrices, 11 MB of f32 in
//! all: more than the caches keep from one step to the next, so the step waits on
//! reading them (tract's product by the same matrix runs at half speed once the
//! weights cycle through 17 MB, `bench/README.md`). An int8 bundle's weights are
//! dequantized by the graph at load, `q · scale` with one scale per output; here
//! they are found again, exactly, and packed into column panels as int8, a
//! quarter of the bytes, widened in the tile to the very f32 values the graph
//! gave. The rows are read in place, and the bias is where each output's sum
//! starts. Weights that are not int8 (an f32 bundle) keep tract's product.

mod panels;

use std::sync::Arc;

use tract_linalg::multithread::par_chunks_mut;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::einsum::EinSum;

use super::swap::{f32_product, significant_axes, swap_each, Clamp, Fold};
use super::tile::{self, Bias, Columns, Tile, COLS, ROWS};
use panels::Panels;

/// One linear layer: `[rows.., inputs] → [rows.., outputs]`, any number of rows.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorLinear {
    inputs: usize,
    outputs: usize,
    /// The input is `[sum.., rows..]` (channels first) rather than `[rows.., sum..]`.
    rows_last: bool,
    /// The output's shape, axis by axis.
    output_dims: TVec<OutputDim>,
    /// The weights, int8 in panels of `COLS` outputs.
    panels: Arc<Panels>,
    /// One per output, padded with zeros to whole panels.
    bias: Arc<Vec<f32>>,
    clamp: Clamp,
}

// Ops are equal when they compute the same: sizes, weights and bounds.
impl Eq for VectorLinear {}

/// One axis of the output: as long as an axis of the input (a number of rows
/// known only when it runs), or a length of its own.
#[derive(Debug, Clone, Copy, PartialEq)]
enum OutputDim {
    Input(usize),
    Fixed(usize),
}

/// Replaces every product of a decluttered model by a constant int8-valued matrix
/// along its input's last axes (the rows' values read in place), with the bias
/// and Clip after it. Returns how many.
pub fn swap_in(model: &mut TypedModel) -> TractResult<usize> {
    if !tile::supported() {
        return Ok(0);
    }
    swap_each(model, |model, node| match node.op_as::<EinSum>() {
        Some(einsum) => VectorLinear::for_einsum(model, node, einsum),
        None => Ok(None),
    })
}

impl Fold for VectorLinear {
    /// One value, or one per output along the last axis (`[outputs]`, `[1, 1,
    /// outputs]`), padded to whole panels.
    fn fold_bias(&mut self, bias: &Tensor) -> TractResult<bool> {
        let values = bias.try_as_plain_ram()?;
        let values = values.as_slice::<f32>()?;
        let per_output = bias.shape().last() == Some(&self.outputs) && values.len() == self.outputs;
        let mut all = if values.len() == 1 {
            vec![values[0]; self.outputs]
        } else if per_output {
            values.to_vec()
        } else {
            return Ok(false);
        };
        all.resize(self.outputs.div_ceil(COLS) * COLS, 0.0);
        self.bias = Arc::new(all);
        Ok(true)
    }

    fn fold_clamp(&mut self, bounds: (f32, f32)) {
        self.clamp = Some(bounds);
    }
}

impl VectorLinear {
    /// The op for a product of the input's rows by a constant matrix: the input
    /// `[rows.., sum..]` (or `[sum.., rows..]`), the weights any arrangement of
    /// `sum..` and `outputs..`, the output `[rows.., outputs..]`; axes of one value
    /// left out. `None` where tract's own op stays.
    fn for_einsum(model: &TypedModel, node: &TypedNode, einsum: &EinSum) -> TractResult<Option<Self>> {
        let Some([x, w, y]) = f32_product(model, node, einsum)? else {
            return Ok(None);
        };
        let Some(weights) = &w.konst else {
            return Ok(None);
        };
        let (inputs, outputs) = einsum.axes.to_strs();
        let outputs_repr = outputs[0].clone();
        let w_dims: TVec<TDim> = weights.shape().iter().map(|&d| d.to_dim()).collect();
        let xs = significant_axes(&inputs[0], &x.shape.to_tvec());
        let ws = significant_axes(&inputs[1], &w_dims);
        let ys = significant_axes(&outputs[0], &y.shape.to_tvec());
        let summed: Vec<char> = xs
            .iter()
            .copied()
            .filter(|c| ws.contains(c) && !ys.contains(c))
            .collect();
        let rows: Vec<char> = xs
            .iter()
            .copied()
            .filter(|c| ys.contains(c) && !ws.contains(c))
            .collect();
        let outs: Vec<char> = ys
            .iter()
            .copied()
            .filter(|c| ws.contains(c) && !xs.contains(c))
            .collect();
        let row_major = [&rows[..], &summed[..]].concat() == xs;
        let rows_last = [&summed[..], &rows[..]].concat() == xs;
        if summed.is_empty()
            || outs.is_empty()
            || !(row_major || rows_last)
            || [&rows[..], &outs[..]].concat() != ys
            || ws.len() != summed.len() + outs.len()
        {
            return Ok(None);
        }
        // Where each summed index and each output index lies in the weights.
        let w_axes: Vec<char> = inputs[1].chars().collect();
        let offsets = |axes: &[char]| -> Vec<usize> {
            let mut offsets = vec![0usize];
            for c in axes {
                let at = w_axes
                    .iter()
                    .position(|a| a == c)
                    .expect("an axis of the weights");
                let stride: usize = weights.shape()[at + 1..].iter().product();
                offsets = offsets
                    .iter()
                    .flat_map(|&o| (0..weights.shape()[at]).map(move |i| o + i * stride))
                    .collect();
            }
            offsets
        };
        let (sum_at, out_at) = (offsets(&summed), offsets(&outs));
        let (inputs, outputs) = (sum_at.len(), out_at.len());
        // The summed axes' length in the input is concrete, and the weights'.
        let x_repr: Vec<char> = einsum.axes.to_strs().0[0].chars().collect();
        let summed_in_x: TDim = summed
            .iter()
            .map(|c| x.shape[x_repr.iter().position(|a| a == c).expect("an axis of the input")].clone())
            .product();
        if inputs == 0 || outputs == 0 || summed_in_x.to_usize().ok() != Some(inputs) {
            return Ok(None);
        }
        let mut output_dims = tvec![];
        for (c, dim) in outputs_repr.chars().zip(y.shape.iter()) {
            output_dims.push(match (dim.to_usize(), x_repr.iter().position(|&a| a == c)) {
                (Ok(len), _) => OutputDim::Fixed(len),
                (Err(_), Some(at)) => OutputDim::Input(at),
                (Err(_), None) => return Ok(None),
            });
        }
        let values = weights.try_as_plain_ram()?;
        let values = values.as_slice::<f32>()?;
        let panel_count = outputs.div_ceil(COLS);
        // f32 weights stay with tract's product: this tile's gain is reading a
        // quarter of the bytes; with f32 weights it was no faster (`bench/README.md`).
        let Some(panels) = Panels::int8(inputs, outputs, |i, o| values[sum_at[i] + out_at[o]]) else {
            return Ok(None);
        };
        Ok(Some(Self {
            inputs,
            outputs,
            rows_last: rows_last && !row_major,
            output_dims,
            panels: Arc::new(panels),
            bias: Arc::new(vec![0.0; panel_count * COLS]),
            clamp: None,
        }))
    }

    /// Every output row from its input row, the rows shared out among tract's
    /// threads when it has several.
    fn run(&self, input: &[f32], output: &mut [f32]) -> TractResult<()> {
        let rows = input.len() / self.inputs.max(1);
        ensure!(
            input.len() == rows * self.inputs && output.len() == rows * self.outputs,
            "VectorLinear: {} inputs and {} outputs, expected rows of {} and {}",
            input.len(),
            output.len(),
            self.inputs,
            self.outputs
        );
        if rows == 0 || self.outputs == 0 {
            return Ok(());
        }
        par_chunks_mut(output, self.outputs, input.len() + output.len(), |first, out| {
            self.rows(input, first, rows, out);
            Ok(())
        })
    }

    /// Rows `first..` of the output (`out`, whole rows) from the same rows of `x`
    /// (all `total` of them): for each panel of outputs, every run of up to `ROWS`
    /// rows (`tile::row_runs`), so that the panel's weights stay in cache while
    /// the rows go past.
    fn rows(&self, x: &[f32], first: usize, total: usize, out: &mut [f32]) {
        let (depth, n) = (self.inputs, self.outputs);
        let rows = out.len() / n;
        // Where row `r`'s values start, and the step from one to the next.
        let (row_step, depth_step) = if self.rows_last { (1, total) } else { (depth, 1) };
        let mut edge_out = [0f32; ROWS * COLS];
        for panel in 0..n.div_ceil(COLS) {
            let col = panel * COLS;
            let mut scale = [0f32; COLS];
            scale.copy_from_slice(&self.panels.scales[col..][..COLS]);
            let b = Columns::I8(self.panels.values[panel * depth * COLS..].as_ptr(), scale);
            let cols = COLS.min(n - col);
            let mut bias = [0f32; COLS];
            bias.copy_from_slice(&self.bias[col..][..COLS]);
            for (row, count) in tile::row_runs(rows) {
                let whole = cols == COLS;
                let (out_at, out_stride) = if whole {
                    (out[row * n + col..].as_mut_ptr(), n)
                } else {
                    (edge_out.as_mut_ptr(), COLS)
                };
                let tile = Tile {
                    depth,
                    a: x[(first + row) * row_step..].as_ptr(),
                    a_row: row_step,
                    a_depth: depth_step,
                    a_run: Tile::NO_JUMP,
                    a_jump: 0,
                    b,
                    b_stride: COLS,
                    bias: Bias::Cols(bias),
                    clamp: self.clamp,
                    out: out_at,
                    out_stride,
                    out_half: 8,
                };
                // SAFETY: `swap_in` swaps this op in only where `tile::supported()`;
                // the tile reads `count` rows of `depth` from `x` (`run` checked its
                // length: `total` rows, laid out by `row_step` and `depth_step`),
                // the panel's `depth` rows of `COLS` and writes `count` rows of
                // `COLS` (whole in `out`, or the edge tile).
                unsafe { tile::run(count, &tile) };
                if !whole {
                    for r in 0..count {
                        out[(row + r) * n + col..][..cols].copy_from_slice(&edge_out[r * COLS..][..cols]);
                    }
                }
            }
        }
    }
}

impl VectorLinear {
    fn output_shape(&self, input: &TypedFact) -> TractResult<TVec<TDim>> {
        self.output_dims
            .iter()
            .map(|dim| match *dim {
                OutputDim::Fixed(len) => Ok(len.to_dim()),
                OutputDim::Input(at) => input
                    .shape
                    .get(at)
                    .cloned()
                    .context("VectorLinear: input of too few axes"),
            })
            .collect()
    }
}

impl Op for VectorLinear {
    fn name(&self) -> StaticName {
        "VectorLinear".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{} to {}", self.inputs, self.outputs)])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for VectorLinear {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let mut shape: TVec<usize> = tvec![];
        for dim in &self.output_dims {
            shape.push(match *dim {
                OutputDim::Fixed(len) => len,
                OutputDim::Input(at) => *input
                    .shape()
                    .get(at)
                    .context("VectorLinear: input of too few axes")?,
            });
        }
        let values = input.try_as_plain_ram()?.as_slice::<f32>()?;
        // SAFETY: f32 has no invalid bit patterns, and `run` writes every output
        // (each row, for every panel) before anything reads it.
        let mut output = unsafe { Tensor::uninitialized::<f32>(&shape)? };
        let mut view = output.try_as_plain_ram_mut()?;
        self.run(values, view.as_slice_mut::<f32>()?)?;
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for VectorLinear {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1, "VectorLinear takes one input");
        Ok(tvec!(f32::fact(self.output_shape(inputs[0])?)))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let outputs: TDim = self.output_shape(inputs[0])?.iter().product();
        Ok(tvec!((Cost::FMA(f32::datum_type()), outputs * self.inputs)))
    }

    as_op!();
}

#[cfg(test)]
mod tests;

//! Convolutions with a k×k kernel over few input channels (EfficientNet's stem:
//! 3×3, stride 2, over the image's three colours; the synthetic preset's 3×3
//! over 32) as the register tile, swapped in for tract's op when a graph is
//! loaded.
//!
//! tract lowers such a convolution to a product over an im2col of the whole image
//! at under a quarter of the core's peak, then clamps (ReLU6) in a pass of its
//! own (`bench --profile`). Here the taps of one run of `COLS` output pixels are
//! gathered into a block that stays in L1 (`gather`), every panel of output
//! channels runs over it (`super::channel_panels`), and the Clip is applied in
//! the tile's registers.

use std::sync::Arc;

use tract_linalg::multithread::par_chunks_mut;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::nn::DataFormat;

mod blocked;

use super::blocked::ChannelColumns;
use super::channel_panels::{Block, ChannelPanels};
use super::swap::{conv_graph, race_graph, swap_each, Clamp, Fold};
use super::tile::{self, COLS, ROWS};

/// Taps per output (input channels × kernel height × width) up to which the
/// gathered block (`COLS` pixels of each, f32) fits a 32 KiB L1 cache: 448 taps
/// are 28 KiB (a 3×3 convolution over 48 channels; the synthetic preset's second
/// convolution, over 32, is 288). Beyond, tract's op stays.
const MAX_DEPTH: usize = 448;

/// Where one convolution reads and writes, per image of the batch.
#[derive(Debug, Clone, PartialEq)]
struct Geometry {
    batch: usize,
    inputs: usize,
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
    kernel_h: usize,
    kernel_w: usize,
    stride_h: usize,
    stride_w: usize,
    pad_top: usize,
    pad_left: usize,
}

/// One k×k convolution: `[batch, inputs, in_h, in_w] → [batch, outputs, out_h, out_w]`.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorConv {
    geometry: Geometry,
    outputs: usize,
    input_shape: TVec<usize>,
    output_shape: TVec<usize>,
    /// `[outputs][inputs × kernel_h × kernel_w]`, taps in the kernel's order.
    panels: Arc<ChannelPanels>,
    /// One per output channel.
    bias: Arc<Vec<f32>>,
    clamp: Clamp,
    /// What it replaced, to rebuild tract's own op beside it (`bench --profile`).
    conv: Conv,
    /// The weights turned around, where it writes channels in blocks of eight
    /// (`crate::runtime::blocked`).
    columns: Option<Arc<ChannelColumns>>,
}

// Ops are equal when they compute the same: geometry, weights and bounds.
impl Eq for VectorConv {}

/// Replaces every convolution this op can run (f32, NCHW, 2-D, one group, a
/// kernel larger than 1×1, undilated, constant weights, concrete shapes, at most
/// `MAX_DEPTH` taps per output) in a decluttered model. Returns how many.
pub fn swap_in(model: &mut TypedModel) -> TractResult<usize> {
    if !tile::supported() {
        return Ok(0);
    }
    swap_each(model, |model, node| match node.op_as::<Conv>() {
        Some(conv) => VectorConv::for_conv(model, node, conv),
        None => Ok(None),
    })
}

impl Fold for VectorConv {
    fn fold_clamp(&mut self, bounds: (f32, f32)) {
        self.clamp = Some(bounds);
    }
}

impl VectorConv {
    /// The op for this convolution node, or `None` where tract's own op stays.
    fn for_conv(model: &TypedModel, node: &TypedNode, conv: &Conv) -> TractResult<Option<Self>> {
        let spec = &conv.pool_spec;
        let (inputs, outputs) = (spec.input_channels, spec.output_channels);
        if conv.q_params.is_some()
            || conv.group != 1
            || conv.kernel_fmt != KernelFormat::OIHW
            || spec.data_format != DataFormat::NCHW
            || spec.rank() != 2
            || spec.kernel_shape.iter().product::<usize>() < 2
            || spec.dilations().iter().any(|&d| d != 1)
            || node.inputs.len() != 3
        {
            return Ok(None);
        }
        let input = model.outlet_fact(node.inputs[0])?;
        let kernel = model.outlet_fact(node.inputs[1])?;
        let bias = model.outlet_fact(node.inputs[2])?;
        let output = &node.outputs[0].fact;
        let (Some(in_shape), Some(out_shape), Some(kernel), Some(bias)) = (
            input.shape.as_concrete(),
            output.shape.as_concrete(),
            kernel.konst.as_ref(),
            bias.konst.as_ref(),
        ) else {
            return Ok(None);
        };
        let f32s = [
            input.datum_type,
            output.datum_type,
            kernel.datum_type(),
            bias.datum_type(),
        ];
        let (kernel_h, kernel_w) = (spec.kernel_shape[0], spec.kernel_shape[1]);
        let depth = inputs * kernel_h * kernel_w;
        if f32s != [f32::datum_type(); 4]
            || in_shape.len() != 4
            || in_shape[1] != inputs
            || kernel.shape() != [outputs, inputs, kernel_h, kernel_w]
            || !(bias.len() == 1 || bias.len() == outputs)
            || depth > MAX_DEPTH
        {
            return Ok(None);
        }
        let padding = spec.computed_padding(&in_shape[2..]);
        let (out_h, out_w) = (padding[0].convoluted, padding[1].convoluted);
        let expected = tvec![in_shape[0], outputs, out_h, out_w];
        if expected.as_slice() != out_shape {
            return Ok(None);
        }
        let bias_values = bias.try_as_plain_ram()?;
        let bias_values = bias_values.as_slice::<f32>()?;
        let kernel_values = kernel.try_as_plain_ram()?;
        let geometry = Geometry {
            batch: in_shape[0],
            inputs,
            in_h: in_shape[2],
            in_w: in_shape[3],
            out_h,
            out_w,
            kernel_h,
            kernel_w,
            stride_h: spec.stride(0),
            stride_w: spec.stride(1),
            pad_top: padding[0].pad_before,
            pad_left: padding[1].pad_before,
        };
        Ok(Some(Self {
            geometry,
            outputs,
            input_shape: in_shape.into(),
            output_shape: expected,
            panels: Arc::new(ChannelPanels::pack(kernel_values.as_slice::<f32>()?, depth)),
            bias: Arc::new(match bias_values.len() {
                1 => vec![bias_values[0]; outputs],
                _ => bias_values.to_vec(),
            }),
            clamp: None,
            conv: conv.clone(),
            columns: None,
        }))
    }

    fn depth(&self) -> usize {
        let g = &self.geometry;
        g.inputs * g.kernel_h * g.kernel_w
    }

    /// Every output: each image's output channels shared out among tract's
    /// threads when it has several (each thread gathers the blocks it reads).
    fn run(&self, input: &[f32], output: &mut [f32]) -> TractResult<()> {
        let g = &self.geometry;
        let (x_len, pixels) = (g.inputs * g.in_h * g.in_w, g.out_h * g.out_w);
        let y_len = self.outputs * pixels;
        ensure!(
            input.len() == g.batch * x_len && output.len() == g.batch * y_len,
            "VectorConv: {} inputs and {} outputs, expected {:?} and {:?}",
            input.len(),
            output.len(),
            self.input_shape,
            self.output_shape
        );
        if let Some(columns) = &self.columns {
            return self.run_blocked(columns, input, output);
        }
        for (x, y) in input.chunks_exact(x_len).zip(output.chunks_exact_mut(y_len)) {
            let split = self.split_columns(x);
            par_chunks_mut(y, pixels, x_len + y_len, |first, rows| {
                self.rows(x, &split, first, rows);
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Output channels `first..` into `out` (whole rows of pixels): for each run of
    /// `COLS` pixels, its taps gathered, then every panel.
    fn rows(&self, x: &[f32], split: &[f32], first: usize, out: &mut [f32]) {
        let pixels = self.geometry.out_h * self.geometry.out_w;
        let mut block = vec![0f32; self.depth() * COLS];
        let mut edge_out = [0f32; ROWS * COLS];
        for col in (0..pixels).step_by(COLS) {
            let cols = COLS.min(pixels - col);
            self.gather(x, split, col, cols, &mut block);
            let block = Block {
                b: &block,
                stride: COLS,
            };
            let bias = &self.bias;
            self.panels.run_block(
                block,
                bias,
                self.clamp,
                first,
                out,
                pixels,
                (col, cols),
                &mut edge_out,
            );
        }
    }

    /// The taps of output pixels `col..col + cols` (row-major) as `block[d * COLS +
    /// c]`, `d` over (input channel, kernel row, kernel column) as the weights are
    /// laid out; a tap in the padding, and the columns past `cols`, are zeros.
    /// `split` is `x` with each row's columns by phase (`split_columns`).
    fn gather(&self, x: &[f32], split: &[f32], col: usize, cols: usize, block: &mut [f32]) {
        let g = &self.geometry;
        let (oy, ox) = (col / g.out_w, col % g.out_w);
        if ox + cols > g.out_w {
            return self.gather_pixels(x, col, cols, block);
        }
        // One output row: each tap reads one input row, `stride_w` apart, which
        // is one contiguous run of the row's columns of one phase.
        let mut rows = block.chunks_exact_mut(COLS);
        let planes = x
            .chunks_exact(g.in_h * g.in_w)
            .zip(split.chunks_exact(g.in_h * g.in_w));
        for (plane, split_plane) in planes {
            for ky in 0..g.kernel_h {
                // Unsigned: a row above the image wraps to past its end.
                let iy = (oy * g.stride_h + ky).wrapping_sub(g.pad_top);
                for kx in 0..g.kernel_w {
                    let Some(row) = rows.next() else { return };
                    if iy >= g.in_h {
                        row.fill(0.0);
                        continue;
                    }
                    let in_row = &plane[iy * g.in_w..][..g.in_w];
                    let first = (ox * g.stride_w + kx).wrapping_sub(g.pad_left);
                    let last = first.wrapping_add((cols - 1) * g.stride_w);
                    if first < g.in_w && last < g.in_w {
                        let at = iy * g.in_w + self.phase_start(first % g.stride_w) + first / g.stride_w;
                        row[..cols].copy_from_slice(&split_plane[at..][..cols]);
                        row[cols..].fill(0.0);
                    } else {
                        for (c, v) in row.iter_mut().enumerate() {
                            let ix = first.wrapping_add(c * g.stride_w);
                            *v = if c < cols && ix < g.in_w { in_row[ix] } else { 0.0 };
                        }
                    }
                }
            }
        }
    }

    /// `x` as it is where the stride is one; else each row's columns reordered by
    /// phase (`x % stride_w`): phase `r`'s columns `r, r + stride_w, …` start at
    /// `phase_start(r)`, so that one output row's reads of a tap are contiguous.
    fn split_columns<'a>(&self, x: &'a [f32]) -> std::borrow::Cow<'a, [f32]> {
        let (w, stride) = (self.geometry.in_w, self.geometry.stride_w);
        if stride == 1 {
            return x.into();
        }
        let mut split = vec![0f32; x.len()];
        for (row, out) in x.chunks_exact(w).zip(split.chunks_exact_mut(w)) {
            for phase in 0..stride {
                let reads = row[phase..].iter().step_by(stride);
                for (o, &v) in out[self.phase_start(phase)..].iter_mut().zip(reads) {
                    *o = v;
                }
            }
        }
        split.into()
    }

    /// Where phase `r`'s columns start in a row of `split_columns`: after the
    /// columns of every phase before it.
    fn phase_start(&self, r: usize) -> usize {
        let (w, stride) = (self.geometry.in_w, self.geometry.stride_w);
        r * (w / stride) + r.min(w % stride)
    }

    /// `gather` for a run of pixels across output rows, one pixel at a time.
    fn gather_pixels(&self, x: &[f32], col: usize, cols: usize, block: &mut [f32]) {
        let g = &self.geometry;
        block.fill(0.0);
        for c in 0..cols {
            let (oy, ox) = ((col + c) / g.out_w, (col + c) % g.out_w);
            let mut d = 0;
            for plane in x.chunks_exact(g.in_h * g.in_w) {
                for ky in 0..g.kernel_h {
                    let iy = (oy * g.stride_h + ky).wrapping_sub(g.pad_top);
                    for kx in 0..g.kernel_w {
                        let ix = (ox * g.stride_w + kx).wrapping_sub(g.pad_left);
                        if iy < g.in_h && ix < g.in_w {
                            block[d * COLS + c] = plane[iy * g.in_w + ix];
                        }
                        d += 1;
                    }
                }
            }
        }
    }

    /// Its weights, `[outputs][depth]`, from whichever packing it runs.
    fn weights(&self) -> Vec<f32> {
        match &self.columns {
            Some(columns) => columns.weights(),
            None => self.panels.weights(),
        }
    }

    /// This convolution alone, as a graph with tract's own op or with this one,
    /// optimized, so that the two can be timed on the same sizes and weights.
    pub fn alone(&self, ours: bool) -> TractResult<TypedModel> {
        let g = &self.geometry;
        let shape = [self.outputs, g.inputs, g.kernel_h, g.kernel_w];
        let kernel = Tensor::from_shape(&shape, &self.weights())?;
        let bias = Tensor::from_shape(&[self.outputs], &self.bias)?;
        let model = conv_graph(
            &self.conv,
            &self.input_shape,
            kernel.into(),
            bias.into(),
            self.clamp,
        )?;
        race_graph(model, ours, swap_in)
    }

    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }
}

impl Op for VectorConv {
    fn name(&self) -> StaticName {
        "VectorConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let g = &self.geometry;
        Ok(vec![format!(
            "{}x{} stride {}x{} pad {},{}: {} to {} channels on {}x{}",
            g.kernel_h,
            g.kernel_w,
            g.stride_h,
            g.stride_w,
            g.pad_top,
            g.pad_left,
            g.inputs,
            self.outputs,
            g.in_h,
            g.in_w
        )])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for VectorConv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let input = input.try_as_plain_ram()?.as_slice::<f32>()?;
        // SAFETY: f32 has no invalid bit patterns, and `run` writes every output
        // (each row of each panel, for every run of pixels) before anything reads it.
        let mut output = unsafe { Tensor::uninitialized::<f32>(&self.output_shape)? };
        let mut view = output.try_as_plain_ram_mut()?;
        self.run(input, view.as_slice_mut::<f32>()?)?;
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for VectorConv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1, "VectorConv takes one input");
        Ok(tvec!(f32::fact(&self.output_shape)))
    }

    fn cost(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let g = &self.geometry;
        let fma = g.batch * self.outputs * self.depth() * g.out_h * g.out_w;
        Ok(tvec!((Cost::FMA(f32::datum_type()), fma.into())))
    }

    as_op!();
}

#[cfg(test)]
pub(super) mod tests;

//! Pointwise (1×1) convolutions, EfficientNet's expansions and projections, as a
//! register-tiled kernel swapped in for tract's product when a graph is loaded.
//!
//! tract declutters a 1×1 convolution into a product (`EinSum`) whose activations
//! it packs on every call before its kernel runs, then adds the bias and clamps
//! (ReLU6) as passes of their own: two thirds of the image encoder's time, at under
//! half the core's peak (`bench --profile`). In NCHW one channel's pixels are
//! already contiguous, so here the kernel reads them in place, the weights are
//! packed once at load, and the bias and the Clip are applied in the tile's
//! registers (`super::tile`).

use std::sync::Arc;

use tract_linalg::multithread::par_chunks_mut;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec, PoolSpec};
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::nn::DataFormat;

mod blocked;

use super::blocked::{ChannelColumns, BLOCK};
use super::channel_panels::{Block, ChannelPanels};
use super::swap::{conv_graph, f32_product, race_graph, significant_axes, swap_each, Clamp, Fold};
use super::tile::{self, COLS, ROWS};

/// One pointwise convolution: `[batch, inputs, pixels] → [batch, outputs, pixels]`.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorPointwise {
    batch: usize,
    inputs: usize,
    outputs: usize,
    pixels: usize,
    /// The input as an NCHW image (`[batch, inputs, pixels, 1]` unless it is one).
    nchw: TVec<usize>,
    output_shape: TVec<usize>,
    panels: Arc<ChannelPanels>,
    /// One per output channel.
    bias: Arc<Vec<f32>>,
    clamp: Clamp,
    /// The output's channel axis.
    channel: usize,
    /// The weights turned around, where it reads and writes channels in blocks
    /// of eight (`crate::runtime::blocked`).
    columns: Option<Arc<ChannelColumns>>,
}

// Ops are equal when they compute the same: sizes, weights and bounds.
impl Eq for VectorPointwise {}

/// Replaces every product of a decluttered model that is a pointwise convolution
/// this op can run (f32, constant weights, concrete shapes, channels before the
/// pixels), with the bias and Clip after it. Returns how many.
pub fn swap_in(model: &mut TypedModel) -> TractResult<usize> {
    if !tile::supported() {
        return Ok(0);
    }
    swap_each(model, |model, node| match node.op_as::<EinSum>() {
        Some(einsum) => VectorPointwise::for_einsum(model, node, einsum),
        None => Ok(None),
    })
}

impl Fold for VectorPointwise {
    /// One value, or one per output channel laid along the channel axis (`[1,
    /// outputs, 1, 1]`, `[outputs, 1, 1]`).
    fn fold_bias(&mut self, bias: &Tensor) -> TractResult<bool> {
        let values = bias.try_as_plain_ram()?;
        let values = values.as_slice::<f32>()?;
        let offset = self.output_shape.len().checked_sub(bias.rank());
        let along_channels = offset.is_some_and(|offset| {
            self.channel >= offset
                && bias.shape().iter().enumerate().all(|(axis, &d)| {
                    d == if axis + offset == self.channel {
                        self.outputs
                    } else {
                        1
                    }
                })
        });
        let all = if values.len() == 1 {
            vec![values[0]; self.outputs]
        } else if along_channels {
            values.to_vec()
        } else {
            return Ok(false);
        };
        self.bias = Arc::new(all);
        Ok(true)
    }

    fn fold_clamp(&mut self, bounds: (f32, f32)) {
        self.clamp = Some(bounds);
    }
}

impl VectorPointwise {
    /// The op for a product `[batch.., inputs, pixels..] × [outputs, inputs] →
    /// [batch.., outputs, pixels..]`, or `None` where tract's own op stays.
    fn for_einsum(model: &TypedModel, node: &TypedNode, einsum: &EinSum) -> TractResult<Option<Self>> {
        let Some([x, w, y]) = f32_product(model, node, einsum)? else {
            return Ok(None);
        };
        let (Some(x_shape), Some(y_shape), Some(kernel)) =
            (x.shape.as_concrete(), y.shape.as_concrete(), &w.konst)
        else {
            return Ok(None);
        };
        if kernel.rank() != 2 {
            return Ok(None);
        }
        let (inputs, outputs) = einsum.axes.to_strs();
        let (x_axes, y_axes) = (&inputs[0], &outputs[0]);
        let w_axes: Vec<char> = inputs[1].chars().collect();
        let [o, i] = w_axes[..] else {
            return Ok(None);
        };
        // Axes of one value (a batch of one) are left out: the output's other axes
        // are the input's with the input channels replaced by the output channels.
        let xs: String = significant_axes(x_axes, &x.shape.to_tvec()).into_iter().collect();
        let ys: String = significant_axes(y_axes, &y.shape.to_tvec()).into_iter().collect();
        let (Some(channel_x), Some(channel)) = (x_axes.find(i), y_axes.find(o)) else {
            return Ok(None);
        };
        if xs.replace(i, &o.to_string()) != ys || xs.matches(i).count() != 1 || xs.contains(o) {
            return Ok(None);
        }
        let (outputs, inputs) = (kernel.shape()[0], kernel.shape()[1]);
        let batch: usize = x_shape[..channel_x].iter().product();
        let pixels: usize = x_shape[channel_x + 1..].iter().product();
        // Where the last run of pixels would leave over a tenth of the tiles'
        // work unused (7×7 pixels: 64 computed for 49), tract's product, which
        // tiles the pixels six at a time, is the faster (`bench --profile`) in
        // NCHW; with the channels in blocks (`super::blocked`, which takes every
        // convolution of one image over whole blocks of channels) the tiles run
        // along the pixels in even runs, and none is left unused.
        let blockable = x_shape[..channel_x].iter().product::<usize>() == 1
            && inputs.is_multiple_of(BLOCK)
            && outputs.is_multiple_of(BLOCK);
        if x_shape[channel_x] != inputs
            || y_shape[channel] != outputs
            || (pixels.div_ceil(COLS) * COLS * 10 > pixels * 11 && !blockable)
        {
            return Ok(None);
        }
        let kernel_values = kernel.try_as_plain_ram()?;
        let kernel_values = kernel_values.as_slice::<f32>()?;
        let panels = ChannelPanels::pack(kernel_values, inputs);
        Ok(Some(Self {
            batch,
            inputs,
            outputs,
            pixels,
            nchw: if x_shape.len() == 4 && channel_x == 1 {
                x_shape.into()
            } else {
                tvec![batch, inputs, pixels, 1]
            },
            output_shape: y_shape.into(),
            panels: Arc::new(panels),
            bias: Arc::new(vec![0.0; outputs]),
            clamp: None,
            channel,
            columns: None,
        }))
    }

    /// Every output: each batch's `[outputs, pixels]` from its `[inputs, pixels]`,
    /// the output channels shared out among tract's threads when it has several.
    fn run(&self, input: &[f32], output: &mut [f32]) -> TractResult<()> {
        let (x_len, y_len) = (self.inputs * self.pixels, self.outputs * self.pixels);
        ensure!(
            input.len() == self.batch * x_len && output.len() == self.batch * y_len,
            "VectorPointwise: {} inputs and {} outputs, expected {}x{}x{} and {}x{}x{}",
            input.len(),
            output.len(),
            self.batch,
            self.inputs,
            self.pixels,
            self.batch,
            self.outputs,
            self.pixels
        );
        if let Some(columns) = &self.columns {
            return self.run_blocked(columns, input, output);
        }
        for (x, y) in input.chunks_exact(x_len).zip(output.chunks_exact_mut(y_len)) {
            par_chunks_mut(y, self.pixels, x_len + y_len, |first, rows| {
                self.rows(x, first, rows);
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Output channels `first..` into `out` (whole rows of pixels): for each run of
    /// `COLS` pixels, every panel, so that the run's inputs stay in cache while the
    /// weights stream past.
    fn rows(&self, x: &[f32], first: usize, out: &mut [f32]) {
        let p = self.pixels;
        // Where the last pixels fill no whole run, it reads a copy padded to one.
        let mut edge_x = Vec::new();
        let mut edge_out = [0f32; ROWS * COLS];
        for col in (0..p).step_by(COLS) {
            let cols = COLS.min(p - col);
            let block = if cols == COLS {
                Block {
                    b: &x[col..],
                    stride: p,
                }
            } else {
                edge_x.resize(self.inputs * COLS, 0.0);
                for (edge, channel) in edge_x.chunks_exact_mut(COLS).zip(x.chunks_exact(p)) {
                    edge[..cols].copy_from_slice(&channel[col..]);
                }
                Block {
                    b: &edge_x,
                    stride: COLS,
                }
            };
            let bias = &self.bias;
            self.panels
                .run_block(block, bias, self.clamp, first, out, p, (col, cols), &mut edge_out);
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
        let kernel = Tensor::from_shape(&[self.outputs, self.inputs, 1, 1], &self.weights())?;
        let bias = Tensor::from_shape(&[self.outputs], &self.bias)?;
        let conv = pointwise_conv(self.inputs, self.outputs);
        let model = conv_graph(&conv, &self.nchw, kernel.into(), bias.into(), self.clamp)?;
        race_graph(model, ours, swap_in)
    }

    /// The input of `alone`'s graph: the graph's own where it is NCHW, else
    /// `[batch, inputs, pixels, 1]`.
    pub fn input_shape(&self) -> &[usize] {
        &self.nchw
    }
}

/// tract's 1×1 convolution from `inputs` to `outputs` channels over NCHW images.
fn pointwise_conv(inputs: usize, outputs: usize) -> Conv {
    let pool_spec = PoolSpec {
        data_format: DataFormat::NCHW,
        kernel_shape: tvec![1, 1],
        padding: PaddingSpec::Valid,
        dilations: None,
        strides: None,
        input_channels: inputs,
        output_channels: outputs,
    };
    Conv {
        pool_spec,
        kernel_fmt: KernelFormat::OIHW,
        group: 1,
        q_params: None,
    }
}

impl Op for VectorPointwise {
    fn name(&self) -> StaticName {
        "VectorPointwise".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} to {} channels on {}x{} pixels",
            self.inputs, self.outputs, self.batch, self.pixels
        )])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for VectorPointwise {
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

impl TypedOp for VectorPointwise {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1, "VectorPointwise takes one input");
        Ok(tvec!(f32::fact(&self.output_shape)))
    }

    fn cost(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let fma = self.batch * self.outputs * self.inputs * self.pixels;
        Ok(tvec!((Cost::FMA(f32::datum_type()), fma.into())))
    }

    as_op!();
}

#[cfg(test)]
pub(super) mod tests;

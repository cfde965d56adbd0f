//! Channels in blocks of eight through a convolutional network (EfficientNet's
//! image encoder), from its stem to where its feature map leaves for other ops.
//!
//! In NCHW a depthwise convolution reads one channel's plane at a time: a 14×14
//! or 7×7 plane is a few vectors wide, so each plane pays its own copy, padding
//! and ragged last vector, and the pointwise products tile ragged runs of 196 or
//! 49 pixels. With the channels in blocks of eight (value `(c, p)` at `(c / 8) ·
//! pixels · 8 + p · 8 + c % 8`, as ONNX Runtime runs these networks) one vector
//! holds one pixel of eight channels: a depthwise tap is one multiply and one add
//! per vector over whole rows of pixels, and a pointwise product tiles the pixels
//! (in even runs) by the output channels.
//!
//! The layout lives inside the graph's tensors without changing their shapes:
//! `swap_in` picks the swapped convolutions that can run it (the stem writes it;
//! the depthwise and pointwise ops read and write it) and the residual Adds
//! between them (element-wise, so indifferent to the order of the values), and
//! wherever another op or the graph's output reads such a tensor it inserts
//! `FromBlocked`, which puts the values back in NCHW order. Every output is the
//! same sum of the same terms in the same order as in NCHW: the same bits.

mod columns;
mod region;

pub use columns::{ChannelColumns, RowsAt};
pub use region::{swap_in, Blockable};

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

/// Channels per block: one AVX vector, two NEON ones.
pub const BLOCK: usize = 8;

/// Puts a blocked tensor's values back in NCHW order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FromBlocked {
    channels: usize,
    pixels: usize,
}

impl FromBlocked {
    /// For a tensor of one image, `[1.., channels, spatial..]` (the batch axis
    /// there or not): its channels are its first axis longer than one.
    fn new(shape: &[usize]) -> Option<Self> {
        let axis = shape.iter().position(|&d| d != 1)?;
        let channels = shape[axis];
        let pixels = shape[axis + 1..].iter().product();
        channels
            .is_multiple_of(BLOCK)
            .then_some(Self { channels, pixels })
    }
}

impl Op for FromBlocked {
    fn name(&self) -> StaticName {
        "FromBlocked".into()
    }

    op_as_typed_op!();
}

impl EvalOp for FromBlocked {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let values = input.try_as_plain_ram()?;
        let values = values.as_slice::<f32>()?;
        let p = self.pixels;
        ensure!(
            values.len() == self.channels * p,
            "FromBlocked: {} values, expected {} channels of {p}",
            values.len(),
            self.channels
        );
        // SAFETY: f32 has no invalid bit patterns, and every value is written below.
        let mut output = unsafe { Tensor::uninitialized::<f32>(input.shape())? };
        {
            let mut view = output.try_as_plain_ram_mut()?;
            let out = view.as_slice_mut::<f32>()?;
            for (block, from) in values.chunks_exact(p * BLOCK).enumerate() {
                let planes = &mut out[block * BLOCK * p..][..BLOCK * p];
                for (pixel, lanes) in from.chunks_exact(BLOCK).enumerate() {
                    for (lane, &v) in lanes.iter().enumerate() {
                        planes[lane * p + pixel] = v;
                    }
                }
            }
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for FromBlocked {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1, "FromBlocked takes one input");
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}

/// `[1, channels, h, w]` NCHW values in blocks of eight channels (tests).
#[cfg(test)]
pub fn to_blocked(values: &[f32], channels: usize) -> Vec<f32> {
    let p = values.len() / channels;
    let mut out = vec![0f32; values.len()];
    for c in 0..channels {
        for pixel in 0..p {
            out[(c / BLOCK) * p * BLOCK + pixel * BLOCK + c % BLOCK] = values[c * p + pixel];
        }
    }
    out
}

#[cfg(test)]
mod tests;

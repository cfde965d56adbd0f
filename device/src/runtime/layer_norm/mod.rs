//! Layer normalization (every transformer block's two, the text and image
//! towers' last) as one op, swapped in for the six nodes tract makes of it.
//!
//! tract expands ONNX's LayerNormalization into a row sum, a multiply by the
//! width's reciprocal, a subtraction, an RmsNorm, and a multiply and an add by the
//! learned scale and shift. On a decode step's rows each node costs more to
//! dispatch than to compute: the seven normalizations of a synthetic step took
//! 15 % of it (`bench --profile`). Here one pass per row does the same six
//! operations, with tract's own sum and RmsNorm kernels, in the same order: the
//! same bits.

use std::sync::Arc;

use tract_linalg::reduce::Reduce as SumKernel;
use tract_linalg::routines::{rms_norm_f32, Func};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::nn::{Reduce, Reducer, RmsNorm};

use super::swap::{only_successor, replace};

/// Rows of tract's sum kernel's width and up; shorter rows it sums in order.
const KERNEL_MIN_WIDTH: usize = 4;

/// `((x - mean(x)) / sqrt(var(x) + eps)) * scale + shift` over the last axis.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorLayerNorm {
    width: usize,
    /// The graph's reciprocal of the width, as tract multiplies the sum by it.
    recip: f32,
    eps: f32,
    scale: Arc<Vec<f32>>,
    shift: Option<Arc<Vec<f32>>>,
}

// Ops are equal when they compute the same: width, constants and parameters.
impl Eq for VectorLayerNorm {}

/// Replaces every layer normalization over the last axis of f32 activations, as
/// tract expands ONNX's, in a decluttered model. Returns how many.
pub fn swap_in(model: &mut TypedModel) -> TractResult<usize> {
    let mut swapped = 0;
    for id in model.eval_order()? {
        if let Some((op, last)) = VectorLayerNorm::for_sum(model, id)? {
            replace(model, id, last, op, 1)?;
            swapped += 1;
        }
    }
    if swapped > 0 {
        model.compact()?;
    }
    Ok(swapped)
}

/// The binary op's name, its other input than `from`'s output, when `node` is a
/// binary op of that output and something else.
fn binary_of(node: &TypedNode, from: usize) -> Option<(&str, OutletId, bool)> {
    let bin = node.op_as::<TypedBinOp>()?;
    let [a, b] = node.inputs[..] else {
        return None;
    };
    if a.node == from && a.slot == 0 {
        Some((bin.0.name(), b, true))
    } else if b.node == from && b.slot == 0 {
        Some((bin.0.name(), a, false))
    } else {
        None
    }
}

/// A constant's f32 values where it holds one per position of the last axis
/// (`width`), every other axis one long.
fn along_last_axis(model: &TypedModel, outlet: OutletId, width: usize) -> TractResult<Option<Vec<f32>>> {
    let fact = model.outlet_fact(outlet)?;
    let Some(konst) = &fact.konst else {
        return Ok(None);
    };
    let shape = konst.shape();
    if konst.datum_type() != f32::datum_type()
        || shape.last() != Some(&width)
        || shape[..shape.len() - 1].iter().any(|&d| d != 1)
    {
        return Ok(None);
    }
    Ok(Some(konst.try_as_plain_ram()?.as_slice::<f32>()?.to_vec()))
}

impl VectorLayerNorm {
    /// The op and the last node it replaces, when `sum` starts tract's expansion
    /// of a layer normalization: `Reduce<Sum>` over the last axis → `Mul` by a
    /// constant → `Sub` from the same input → `RmsNorm` over the last axis → `Mul`
    /// by a constant along it → (`Add` of a constant along it).
    fn for_sum(model: &TypedModel, sum: usize) -> TractResult<Option<(Self, usize)>> {
        let node = model.node(sum);
        let Some(reduce) = node.op_as::<Reduce>() else {
            return Ok(None);
        };
        let x = node.inputs[0];
        let fact = model.outlet_fact(x)?;
        let rank = fact.rank();
        let Some(width) = fact.shape.last().and_then(|d| d.to_usize().ok()) else {
            return Ok(None);
        };
        if !matches!(reduce.reducer, Reducer::Sum)
            || reduce.axes[..] != [rank - 1]
            || fact.datum_type != f32::datum_type()
            || width == 0
        {
            return Ok(None);
        }
        // The mean: the sum times one constant.
        let Some(mean) = only_successor(model, sum)? else {
            return Ok(None);
        };
        let Some(("Mul", recip, _)) = binary_of(mean, sum) else {
            return Ok(None);
        };
        let recip = match &model.outlet_fact(recip)?.konst {
            Some(k) if k.datum_type() == f32::datum_type() && k.len() == 1 => {
                k.try_as_plain_ram()?.as_slice::<f32>()?[0]
            }
            _ => return Ok(None),
        };
        // The input less its mean.
        let Some(centred) = only_successor(model, mean.id)? else {
            return Ok(None);
        };
        if !(centred.op_as::<TypedBinOp>().is_some_and(|b| b.0.name() == "Sub")
            && centred.inputs[..] == [x, OutletId::new(mean.id, 0)])
        {
            return Ok(None);
        }
        let Some(normed) = only_successor(model, centred.id)? else {
            return Ok(None);
        };
        let eps = match normed.op_as::<RmsNorm>() {
            Some(rms) if rms.axis == rank - 1 && rms.eps.datum_type() == f32::datum_type() => {
                rms.eps.cast_to_scalar::<f32>()?
            }
            _ => return Ok(None),
        };
        let Some(scaled) = only_successor(model, normed.id)? else {
            return Ok(None);
        };
        let Some(("Mul", scale, true)) = binary_of(scaled, normed.id) else {
            return Ok(None);
        };
        let Some(scale) = along_last_axis(model, scale, width)? else {
            return Ok(None);
        };
        let mut op = Self {
            width,
            recip,
            eps,
            scale: Arc::new(scale),
            shift: None,
        };
        let same_shape = |node: &TypedNode| node.outputs[0].fact.shape == fact.shape;
        if !same_shape(scaled) {
            return Ok(None);
        }
        if let Some(shifted) = only_successor(model, scaled.id)? {
            if let Some(("Add", shift, true)) = binary_of(shifted, scaled.id) {
                if let (Some(shift), true) = (along_last_axis(model, shift, width)?, same_shape(shifted)) {
                    op.shift = Some(Arc::new(shift));
                    return Ok(Some((op, shifted.id)));
                }
            }
        }
        Ok(Some((op, scaled.id)))
    }

    /// One row normalized into `out`, as tract's six nodes compute it.
    fn row(
        &self,
        x: &[f32],
        out: &mut [f32],
        sum: &dyn SumKernel<f32>,
        rms: fn(&mut [f32], f32),
    ) -> TractResult<()> {
        let total = if x.len() >= KERNEL_MIN_WIDTH {
            sum.run_with_params(x, ())?
        } else {
            x.iter().sum()
        };
        let mean = total * self.recip;
        for (o, &v) in out.iter_mut().zip(x) {
            *o = v - mean;
        }
        rms(out, self.eps);
        match &self.shift {
            Some(shift) => {
                for ((o, &s), &b) in out.iter_mut().zip(self.scale.iter()).zip(shift.iter()) {
                    *o = *o * s + b;
                }
            }
            None => {
                for (o, &s) in out.iter_mut().zip(self.scale.iter()) {
                    *o *= s;
                }
            }
        }
        Ok(())
    }
}

impl Op for VectorLayerNorm {
    fn name(&self) -> StaticName {
        "VectorLayerNorm".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("rows of {}", self.width)])
    }

    op_as_typed_op!();
}

impl EvalOp for VectorLayerNorm {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        ensure!(
            x.shape().last() == Some(&self.width),
            "VectorLayerNorm: input of shape {:?}, expected rows of {}",
            x.shape(),
            self.width
        );
        let values = x.try_as_plain_ram()?;
        let values = values.as_slice::<f32>()?;
        // SAFETY: f32 has no invalid bit patterns, and every row is written below.
        let mut y = unsafe { Tensor::uninitialized::<f32>(x.shape())? };
        {
            let mut view = y.try_as_plain_ram_mut()?;
            let out = view.as_slice_mut::<f32>()?;
            let sum = Func::ReduceSum.reduce_f32()?;
            let rms = rms_norm_f32()?;
            for (row, out) in values
                .chunks_exact(self.width)
                .zip(out.chunks_exact_mut(self.width))
            {
                self.row(row, out, sum.as_ref(), rms)?;
            }
        }
        Ok(tvec!(y.into_tvalue()))
    }
}

impl TypedOp for VectorLayerNorm {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1, "VectorLayerNorm takes one input");
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}

#[cfg(test)]
mod tests;

//! Adds of two activations whose shapes hold a symbol (a beam's rows, a text's
//! length): a decoder's and the text encoder's residual connections, the text
//! encoder's attention mask added to its scores.
//!
//! tract turns an Add of two concrete shapes into a plain loop, but with a symbol
//! in the shape it keeps its broadcasting op, which walks the operands value by
//! value: 7 µs for the 3,840 values of a 15-row step's residual, six of them a
//! step, and 17 µs for a short text's masked scores (`bench --profile`). Here the
//! sums run row by row over the operand of the output's shape, in its buffer when
//! the graph no longer needs it, the other operand's row (or value) added where
//! it is broadcast: the same sums, so the same bits.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::broadcast::multi_broadcast;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;

use super::swap::{replace, row_major_steps};

/// `a + b` of two f32 activations, one of the output's shape, the other equal
/// to it or broadcast to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VectorAdd;

/// Replaces every Add of two f32 activations, one of them of the output's shape
/// and one shape holding a symbol, in a decluttered model. Returns how many.
pub fn swap_in(model: &mut TypedModel) -> TractResult<usize> {
    let mut swapped = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(bin) = node.op_as::<TypedBinOp>() else {
            continue;
        };
        if bin.0.name() != "Add" || node.inputs.len() != 2 {
            continue;
        }
        let (a, b) = (
            model.outlet_fact(node.inputs[0])?,
            model.outlet_fact(node.inputs[1])?,
        );
        let out = &node.outputs[0].fact;
        let f32_activation = |f: &TypedFact| f.datum_type == f32::datum_type() && f.konst.is_none();
        let symbolic = a.shape.as_concrete().is_none() || b.shape.as_concrete().is_none();
        if !f32_activation(a)
            || !f32_activation(b)
            || !symbolic
            || !(a.shape == out.shape || b.shape == out.shape)
            || out.datum_type != f32::datum_type()
        {
            continue;
        }
        replace(model, id, id, VectorAdd, 2)?;
        swapped += 1;
    }
    if swapped > 0 {
        model.compact()?;
    }
    Ok(swapped)
}

/// `other` added to `sum` in place, broadcast along the axes where it is one
/// long (or that it lacks, on the left): `None` where it does not fit `sum`.
fn add_broadcast(sum: &mut [f32], shape: &[usize], other: &[f32], other_shape: &[usize]) -> Option<()> {
    let rank = shape.len();
    let lacks = rank.checked_sub(other_shape.len())?;
    if other.len() != other_shape.iter().product::<usize>() {
        return None;
    }
    // The other operand's step along each of the output's axes (0 where broadcast).
    let other_steps = row_major_steps(other_shape);
    let mut steps: TVec<usize> = tvec![0; rank];
    for (axis, &dim) in other_shape.iter().enumerate() {
        match dim {
            d if d == shape[lacks + axis] => steps[lacks + axis] = other_steps[axis],
            1 => {}
            _ => return None,
        }
    }
    let row = shape.last().copied().unwrap_or(1);
    if row == 0 {
        return Some(());
    }
    let inner = steps.last().copied().unwrap_or(0);
    // The row's place along the outer axes, and where its values of the other
    // operand start.
    let mut index: TVec<usize> = tvec![0; rank.saturating_sub(1)];
    let mut at = 0;
    for sums in sum.chunks_exact_mut(row) {
        if inner == 1 {
            for (s, &y) in sums.iter_mut().zip(&other[at..at + row]) {
                *s += y;
            }
        } else {
            let y = other[at];
            sums.iter_mut().for_each(|s| *s += y);
        }
        // The next row: the last of the outer axes counts fastest.
        for (axis, i) in index.iter_mut().enumerate().rev() {
            *i += 1;
            at += steps[axis];
            if *i < shape[axis] {
                break;
            }
            at -= steps[axis] * shape[axis];
            *i = 0;
        }
    }
    Some(())
}

impl Op for VectorAdd {
    fn name(&self) -> StaticName {
        "VectorAdd".into()
    }

    op_as_typed_op!();
}

impl EvalOp for VectorAdd {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (a, b) = args_2!(inputs);
        // The operand of the output's shape holds the sums (a + b = b + a, exactly).
        let a_holds = a.len() > b.len() || (a.len() == b.len() && a.rank() >= b.rank());
        let (sum, other) = if a_holds { (a, b) } else { (b, a) };
        let mut sum = sum.into_tensor();
        let shape: TVec<usize> = sum.shape().into();
        let fits = {
            let mut view = sum.try_as_plain_ram_mut()?;
            let other_values = other.try_as_plain_ram()?;
            add_broadcast(
                view.as_slice_mut::<f32>()?,
                &shape,
                other_values.as_slice::<f32>()?,
                other.shape(),
            )
        };
        ensure!(
            fits.is_some(),
            "VectorAdd: operands of shapes {:?} and {:?}",
            shape,
            other.shape()
        );
        Ok(tvec!(sum.into_tvalue()))
    }
}

impl TypedOp for VectorAdd {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 2, "VectorAdd takes two inputs");
        let shape = multi_broadcast(&[inputs[0].shape.to_tvec(), inputs[1].shape.to_tvec()])?;
        Ok(tvec!(f32::fact(shape)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `a + b` of two `[rows, 3]` inputs (rows a symbol), `a + m` with `m`
    /// `[1, 3]`, `m + a`, `a + r` with `r` `[rows, 1]`, and `c + c` of a concrete
    /// shape.
    fn model() -> TypedModel {
        let mut model = TypedModel::default();
        let rows = model.symbols.sym("rows");
        let fact = f32::fact(&[rows.to_dim(), 3.to_dim()]);
        let a = model.add_source("a", fact.clone()).unwrap();
        let b = model.add_source("b", fact).unwrap();
        let m = model.add_source("m", f32::fact([1, 3])).unwrap();
        let r = model
            .add_source("r", f32::fact(&[rows.to_dim(), 1.to_dim()]))
            .unwrap();
        let c = model.add_source("c", f32::fact([2, 3])).unwrap();
        let add = tract_onnx::tract_core::ops::math::add;
        let mut outputs = vec![];
        for (name, x, y) in [
            ("sum", a, b),
            ("masked", a, m),
            ("masked_first", m, a),
            ("rows", a, r),
            ("double", c, c),
        ] {
            outputs.push(model.wire_node(name, add(), &[x, y]).unwrap()[0]);
        }
        model.select_output_outlets(&outputs).unwrap();
        model
    }

    #[test]
    fn symbolic_adds_are_swapped_and_give_the_same_sums() {
        let mut ours = model().into_decluttered().unwrap();
        assert_eq!(swap_in(&mut ours).unwrap(), 4, "the adds of symbolic shapes");
        assert!(ours.nodes().iter().any(|n| n.op_is::<VectorAdd>()));
        let a = tensor2(&[[1.5f32, -2.0, 3.25], [0.1, 0.2, 0.3]]);
        let b = tensor2(&[[0.25f32, 2.0, -1.0], [0.7, 1e-8, 0.3]]);
        let m = tensor2(&[[-0.0f32, 1e9, 0.5]]);
        let r = tensor2(&[[0.125f32], [-3.0]]);
        let c = tensor2(&[[1f32, 2.0, 3.0], [4.0, 5.0, 6.0]]);
        let inputs = || {
            tvec![a.clone(), b.clone(), m.clone(), r.clone(), c.clone()]
                .into_iter()
                .map(|t| t.into())
                .collect()
        };
        let theirs = model().into_runnable().unwrap().run(inputs()).unwrap();
        let got = ours.into_runnable().unwrap().run(inputs()).unwrap();
        assert_eq!(got.len(), 5);
        for (got, theirs) in got.iter().zip(&theirs) {
            assert_eq!(got.clone().into_tensor(), theirs.clone().into_tensor());
        }
    }

    #[test]
    fn operands_of_different_shapes_are_refused() {
        let err = VectorAdd
            .eval_out_of_plan(tvec!(
                tensor2(&[[1f32, 2.0]]).into(),
                tensor2(&[[1f32], [2.0]]).into()
            ))
            .unwrap_err();
        assert!(format!("{err}").contains("VectorAdd: operands"), "{err}");
    }
}

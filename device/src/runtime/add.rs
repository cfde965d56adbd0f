//! Adds of two activations of one shape that holds a symbol (a beam's rows, a
//! text's length): a decoder's and the text encoder's residual connections.
//!
//! tract turns an Add of two concrete equal shapes into a plain loop, but with a
//! symbol in the shape it keeps its broadcasting op, which walks the operands
//! value by value: 7 µs for the 3,840 values of a 15-row step's residual, six of
//! them a step (`bench --profile`). Here the sums are one loop over both
//! operands, the first one's buffer reused when the graph no longer needs it: the
//! same sums, so the same bits.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;

/// `a + b`, both f32 of the same shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VectorAdd;

/// Replaces every Add of two f32 activations whose shapes are the same and hold
/// a symbol, in a decluttered model. Returns how many.
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
        let f32_activation = |f: &TypedFact| f.datum_type == f32::datum_type() && f.konst.is_none();
        if !f32_activation(a)
            || !f32_activation(b)
            || a.shape != b.shape
            || a.shape.as_concrete().is_some()
            || node.outputs[0].fact.datum_type != f32::datum_type()
        {
            continue;
        }
        let mut patch = TypedModelPatch::new("add");
        let inputs = [
            patch.tap_model(model, node.inputs[0])?,
            patch.tap_model(model, node.inputs[1])?,
        ];
        let output = patch.wire_node(&node.name, VectorAdd, &inputs)?[0];
        patch.shunt_outside(model, OutletId::new(id, 0), output)?;
        patch.obliterate(id)?;
        patch.apply(model)?;
        swapped += 1;
    }
    if swapped > 0 {
        model.compact()?;
    }
    Ok(swapped)
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
        ensure!(
            a.shape() == b.shape(),
            "VectorAdd: operands of shapes {:?} and {:?}",
            a.shape(),
            b.shape()
        );
        let mut sum = a.into_tensor();
        {
            let mut view = sum.try_as_plain_ram_mut()?;
            let b = b.try_as_plain_ram()?;
            for (s, &y) in view.as_slice_mut::<f32>()?.iter_mut().zip(b.as_slice::<f32>()?) {
                *s += y;
            }
        }
        Ok(tvec!(sum.into_tvalue()))
    }
}

impl TypedOp for VectorAdd {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 2, "VectorAdd takes two inputs");
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `a + b` of two `[rows, 3]` inputs (rows a symbol), and `c + c` of a concrete shape.
    fn model() -> TypedModel {
        let mut model = TypedModel::default();
        let rows = model.symbols.sym("rows");
        let fact = f32::fact(&[rows.to_dim(), 3.to_dim()]);
        let a = model.add_source("a", fact.clone()).unwrap();
        let b = model.add_source("b", fact).unwrap();
        let sum = model
            .wire_node("sum", tract_onnx::tract_core::ops::math::add(), &[a, b])
            .unwrap()[0];
        let c = model.add_source("c", f32::fact([2, 3])).unwrap();
        let double = model
            .wire_node("double", tract_onnx::tract_core::ops::math::add(), &[c, c])
            .unwrap()[0];
        model.select_output_outlets(&[sum, double]).unwrap();
        model
    }

    #[test]
    fn symbolic_adds_are_swapped_and_give_the_same_sums() {
        let mut ours = model().into_decluttered().unwrap();
        assert_eq!(swap_in(&mut ours).unwrap(), 1, "only the add of symbolic shape");
        assert!(ours.nodes().iter().any(|n| n.op_is::<VectorAdd>()));
        let a = tensor2(&[[1.5f32, -2.0, 3.25], [0.1, 0.2, 0.3]]);
        let b = tensor2(&[[0.25f32, 2.0, -1.0], [0.7, 1e-8, 0.3]]);
        let c = tensor2(&[[1f32, 2.0, 3.0], [4.0, 5.0, 6.0]]);
        let inputs = || tvec!(a.clone().into(), b.clone().into(), c.clone().into());
        let theirs = model().into_runnable().unwrap().run(inputs()).unwrap();
        let got = ours.into_runnable().unwrap().run(inputs()).unwrap();
        assert_eq!(got[0].clone().into_tensor(), theirs[0].clone().into_tensor());
        assert_eq!(got[1].clone().into_tensor(), theirs[1].clone().into_tensor());
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

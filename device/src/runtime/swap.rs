//! What the ops this runtime swaps into tract's graphs share: finding the
//! element-wise nodes after a convolution that the swapped op does on its way out
//! (a bias, a Clip), and one-convolution graphs to time the swapped op against
//! tract's own.

use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cnn::Conv;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::math;

use super::{add, blocked, conv, depthwise, gemv, layer_norm, linear, pointwise};

/// Bounds every output is clamped to, where a Clip (EfficientNet's ReLU6: a Max,
/// then a Min) followed the convolution.
pub(super) type Clamp = Option<(f32, f32)>;

/// Swaps in every op of this runtime's that can run a node of the decluttered
/// `model`. Returns how many nodes were swapped.
pub fn swap_in(model: &mut TypedModel) -> TractResult<usize> {
    Ok(conv::swap_in(model)?
        + depthwise::swap_in(model)?
        + pointwise::swap_in(model)?
        + linear::swap_in(model)?
        + gemv::swap_in(model)?
        + add::swap_in(model)?
        + layer_norm::swap_in(model)?
        + blocked::swap_in(model)?)
}

/// An op of this runtime's that replaces one node of tract's and can do, on its
/// way out, the element-wise nodes right after it.
pub(super) trait Fold: TypedOp {
    /// Starts every output from `bias`, the constant an Add after the node adds,
    /// where the op can; `false` leaves the Add a node of its own.
    fn fold_bias(&mut self, _bias: &Tensor) -> TractResult<bool> {
        Ok(false)
    }

    /// Multiplies every output by `scale`, the one-value constant a Mul right after
    /// the node multiplies by, where the op can; `false` leaves the Mul a node.
    fn fold_scale(&mut self, _scale: f32) -> bool {
        false
    }

    /// Clamps every output to `bounds`, a Clip after the node (or after its bias).
    fn fold_clamp(&mut self, bounds: (f32, f32));

    /// How many of the node's first inputs the op reads (a convolution's weights
    /// and bias are the op's own).
    fn reads(&self) -> usize {
        1
    }
}

/// Replaces every node of a decluttered `model` that `op_for` gives an op for,
/// with the bias and Clip after it that the op folds in. Returns how many.
pub(super) fn swap_each<O: Fold>(
    model: &mut TypedModel,
    op_for: impl Fn(&TypedModel, &TypedNode) -> TractResult<Option<O>>,
) -> TractResult<usize> {
    let mut swapped = 0;
    for id in model.eval_order()? {
        let Some(mut op) = op_for(model, model.node(id))? else {
            continue;
        };
        let mut last = id;
        if let Some((mul, scale)) = constant_after(model, last, "Mul")? {
            if scale.len() == 1 && op.fold_scale(scale.try_as_plain_ram()?.as_slice::<f32>()?[0]) {
                last = mul;
            }
        }
        if let Some((add, bias)) = constant_after(model, last, "Add")? {
            if op.fold_bias(&bias)? {
                last = add;
            }
        }
        // A Clip (EfficientNet's ReLU6) is done on the way out instead of as
        // another pass over the output.
        if let Some((end, bounds)) = clamp_after(model, last)? {
            op.fold_clamp(bounds);
            last = end;
        }
        let reads = op.reads();
        replace(model, id, last, op, reads)?;
        swapped += 1;
    }
    if swapped > 0 {
        model.compact()?;
    }
    Ok(swapped)
}

/// `model` (one node of tract's, and what follows it) decluttered, given to
/// `swap_in` when `ours`, and optimized: the two graphs a race times.
pub(super) fn race_graph(
    mut model: TypedModel,
    ours: bool,
    swap_in: fn(&mut TypedModel) -> TractResult<usize>,
) -> TractResult<TypedModel> {
    model.declutter()?;
    if ours {
        swap_in(&mut model)?;
    }
    model.optimize()?;
    Ok(model)
}

/// The facts of a product's two inputs and of its output, where it is a plain
/// f32 product (not quantized, two inputs, f32 throughout); `None` otherwise.
pub(super) fn f32_product<'m>(
    model: &'m TypedModel,
    node: &'m TypedNode,
    einsum: &EinSum,
) -> TractResult<Option<[&'m TypedFact; 3]>> {
    if einsum.q_params.is_some() || node.inputs.len() != 2 || einsum.operating_dt != f32::datum_type() {
        return Ok(None);
    }
    let facts = [
        model.outlet_fact(node.inputs[0])?,
        model.outlet_fact(node.inputs[1])?,
        &node.outputs[0].fact,
    ];
    Ok(facts
        .iter()
        .all(|f| f.datum_type == f32::datum_type())
        .then_some(facts))
}

/// Replaces node `id`, and the element-wise nodes after it up to `last` (a bias,
/// a Clip) that `op` does on its way out, by `op` reading `id`'s first `reads`
/// inputs.
pub(super) fn replace(
    model: &mut TypedModel,
    id: usize,
    last: usize,
    op: impl TypedOp,
    reads: usize,
) -> TractResult<()> {
    let mut patch = TypedModelPatch::new(op.name());
    let mut inputs = tvec![];
    for &input in &model.node(id).inputs[..reads] {
        inputs.push(patch.tap_model(model, input)?);
    }
    let output = patch.wire_node(&model.node(id).name, op, &inputs)?[0];
    patch.shunt_outside(model, OutletId::new(last, 0), output)?;
    patch.obliterate(id)?;
    patch.apply(model)
}

/// The one node reading `node`'s output, if only one reads it and it is not a
/// graph output.
pub(super) fn only_successor(model: &TypedModel, node: usize) -> TractResult<Option<&TypedNode>> {
    let successors = &model.node(node).outputs[0].successors;
    if successors.len() != 1 || model.output_outlets()?.contains(&OutletId::new(node, 0)) {
        return Ok(None);
    }
    Ok(Some(model.node(successors[0].node)))
}

/// The node that alone reads `node`'s output, when it is the binary `op` (`Max`,
/// `Min`, `Add`) of that output and an f32 constant, and its output has the same
/// shape: its id and the constant.
fn constant_after(model: &TypedModel, node: usize, op: &str) -> TractResult<Option<(usize, Arc<Tensor>)>> {
    let outlet = OutletId::new(node, 0);
    let Some(next) = only_successor(model, node)? else {
        return Ok(None);
    };
    let Some(bin) = next.op_as::<TypedBinOp>() else {
        return Ok(None);
    };
    if bin.0.name() != op || next.inputs.len() != 2 {
        return Ok(None);
    }
    let other = if next.inputs[0] == outlet {
        next.inputs[1]
    } else {
        next.inputs[0]
    };
    let fact = model.outlet_fact(other)?;
    let same_shape = next.outputs[0].fact.shape == model.outlet_fact(outlet)?.shape;
    match &fact.konst {
        Some(k) if same_shape && k.datum_type() == f32::datum_type() => Ok(Some((next.id, k.clone()))),
        _ => Ok(None),
    }
}

/// A Clip after `node` (a Max by one value, then maybe a Min by one value): the
/// last node of it and its bounds.
fn clamp_after(model: &TypedModel, node: usize) -> TractResult<Option<(usize, (f32, f32))>> {
    let one_value = |k: &Tensor| -> TractResult<Option<f32>> {
        if k.len() != 1 {
            return Ok(None);
        }
        Ok(Some(k.try_as_plain_ram()?.as_slice::<f32>()?[0]))
    };
    let Some((max, lo)) = constant_after(model, node, "Max")? else {
        return Ok(None);
    };
    let Some(lo) = one_value(&lo)? else {
        return Ok(None);
    };
    if let Some((min, hi)) = constant_after(model, max, "Min")? {
        if let Some(hi) = one_value(&hi)? {
            return Ok(Some((min, (lo, hi))));
        }
    }
    Ok(Some((max, (lo, f32::INFINITY))))
}

/// Each axis's step through a row-major tensor of `shape`.
pub(super) fn row_major_steps(shape: &[usize]) -> TVec<usize> {
    let mut steps: TVec<usize> = tvec![0; shape.len()];
    let mut step = 1;
    for (axis, &dim) in shape.iter().enumerate().rev() {
        steps[axis] = step;
        step *= dim;
    }
    steps
}

/// The axes of an einsum operand, `repr` one label per axis of `shape`, whose
/// dimension is not a concrete 1: only they decide where the values lie.
pub(super) fn significant_axes(repr: &str, shape: &[TDim]) -> Vec<char> {
    repr.chars()
        .zip(shape)
        .filter(|(_, d)| !d.is_one())
        .map(|(c, _)| c)
        .collect()
}

/// A graph of one convolution, and the Clip after it when there is one.
pub(super) fn conv_graph(
    conv: &Conv,
    input_shape: &[usize],
    kernel: Arc<Tensor>,
    bias: Arc<Tensor>,
    clamp: Clamp,
) -> TractResult<TypedModel> {
    let mut model = TypedModel::default();
    let x = model.add_source("x", f32::fact(input_shape))?;
    let k = model.add_const("kernel", kernel)?;
    let b = model.add_const("bias", bias)?;
    let mut y = model.wire_node("conv", conv.clone(), &[x, k, b])?;
    if let Some((lo, hi)) = clamp {
        let one = vec![1; input_shape.len()];
        let lo = model.add_const("lo", Tensor::from_shape(&one, &[lo])?)?;
        y = model.wire_node("max", math::max(), &[y[0], lo])?;
        if hi.is_finite() {
            let hi = model.add_const("hi", Tensor::from_shape(&one, &[hi])?)?;
            y = model.wire_node("min", math::min(), &[y[0], hi])?;
        }
    }
    model.select_output_outlets(&y)?;
    Ok(model)
}

/// What the swapped ops' tests share: their weights and biases, running a graph,
/// and the agreement expected with tract's own op.
#[cfg(test)]
pub(super) mod tests {
    use tract_onnx::prelude::*;

    pub fn weight(i: usize) -> f32 {
        (i as f32 * 0.37).sin() * 0.5
    }

    pub fn bias_of(output: usize) -> f32 {
        output as f32 * 0.01 - 0.1
    }

    /// The graph optimized and run on `input`: its first output's values.
    pub fn run(model: TypedModel, input: &Tensor) -> Vec<f32> {
        let plan = model.into_optimized().unwrap().into_runnable().unwrap();
        let out = plan.run(tvec!(input.clone().into_tvalue())).unwrap().remove(0);
        out.try_as_plain_ram()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .to_vec()
    }

    /// The values the swapped ops are tested on, `cos(0.013 i)`, and the tensor
    /// of `shape` they fill.
    pub fn input(shape: &[usize]) -> (Vec<f32>, Tensor) {
        let len: usize = shape.iter().product();
        let values: Vec<f32> = (0..len).map(|i| ((i as f32) * 0.013).cos()).collect();
        let x = Tensor::from_shape(shape, &values).unwrap();
        (values, x)
    }

    /// The graph `model()` gives, run on `x` as tract optimizes it and after
    /// `swap_in`, which must swap exactly one node and leave op `O` the graph's
    /// last (the bias and the Clip after it folded in): tract's values and ours.
    pub fn tracts_and_ours<O: Op>(
        model: impl Fn() -> TypedModel,
        swap_in: fn(&mut TypedModel) -> TractResult<usize>,
        x: &Tensor,
        at: &str,
    ) -> (Vec<f32>, Vec<f32>) {
        let theirs = run(model(), x);
        let mut ours = model();
        assert_eq!(swap_in(&mut ours).unwrap(), 1, "{at}");
        let last = ours.node(ours.output_outlets().unwrap()[0].node);
        assert!(last.op_as::<O>().is_some(), "{at}: ends in {}", last.op.name());
        (theirs, run(ours, x))
    }

    /// Ours within rounding of tract's (it sums in another order).
    pub fn assert_near_tract(theirs: f32, ours: f32, at: &str) {
        assert!(
            (theirs - ours).abs() <= 1e-5 * theirs.abs().max(1.0),
            "{at}: tract's {theirs} vs {ours}"
        );
    }
}

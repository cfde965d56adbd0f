//! Which nodes of a graph run with channels in blocks, and where their values
//! go back to NCHW.

use std::collections::BTreeSet;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;

use super::FromBlocked;
use crate::runtime::conv::VectorConv;
use crate::runtime::depthwise::VectorDepthwise;
use crate::runtime::pointwise::VectorPointwise;

/// A swapped convolution that can write its output with the channels in blocks.
pub trait Blockable {
    /// Whether it can (one image, channels a multiple of the block).
    fn can_block(&self) -> bool;
    /// Whether, blocked, it reads its input blocked too (the stem reads the image).
    fn reads_blocked(&self) -> bool;
    /// Runs it blocked from now on.
    fn set_blocked(&mut self) -> TractResult<()>;
}

/// The node's op as a `Blockable`, where it is one.
fn blockable(node: &TypedNode) -> Option<&dyn Blockable> {
    if let Some(op) = node.op_as::<VectorConv>() {
        Some(op)
    } else if let Some(op) = node.op_as::<VectorDepthwise>() {
        Some(op)
    } else {
        node.op_as::<VectorPointwise>().map(|op| op as &dyn Blockable)
    }
}

fn set_blocked(node: &mut TypedNode) -> TractResult<()> {
    if let Some(op) = node.op_as_mut::<VectorConv>() {
        op.set_blocked()
    } else if let Some(op) = node.op_as_mut::<VectorDepthwise>() {
        op.set_blocked()
    } else if let Some(op) = node.op_as_mut::<VectorPointwise>() {
        op.set_blocked()
    } else {
        Ok(())
    }
}

/// An Add of two f32 activations of the output's shape: indifferent to the
/// order of the values.
fn is_plain_add(model: &TypedModel, node: &TypedNode) -> TractResult<bool> {
    let Some(bin) = node.op_as::<TypedBinOp>() else {
        return Ok(false);
    };
    if bin.0.name() != "Add" || node.inputs.len() != 2 {
        return Ok(false);
    }
    let out = &node.outputs[0].fact;
    for &input in &node.inputs {
        let fact = model.outlet_fact(input)?;
        if fact.konst.is_some() || fact.shape != out.shape || fact.datum_type != f32::datum_type() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Runs every swapped convolution that can with the channels in blocks, from a
/// convolution reading NCHW (the stem) through the depthwise and pointwise ones
/// and the residual Adds reading what they write, and puts the values back in
/// NCHW order (`FromBlocked`) where anything else reads them. Returns how many
/// nodes run blocked.
pub fn swap_in(model: &mut TypedModel) -> TractResult<usize> {
    let mut blocked = BTreeSet::new();
    for node in model.nodes() {
        // Only tensors that `FromBlocked` can put back: concrete, one image, whole
        // blocks of channels.
        let fits = node
            .outputs
            .first()
            .and_then(|o| o.fact.shape.as_concrete())
            .is_some_and(|shape| FromBlocked::new(shape).is_some());
        if fits && (blockable(node).is_some_and(|op| op.can_block()) || is_plain_add(model, node)?) {
            blocked.insert(node.id);
        }
    }
    // Drop what cannot read blocked input because its input is not blocked, and a
    // stem whose output nothing reads blocked, until nothing changes.
    loop {
        let before = blocked.len();
        for id in blocked.clone() {
            let node = model.node(id);
            let keep = match blockable(node) {
                Some(op) if !op.reads_blocked() => node.outputs[0]
                    .successors
                    .iter()
                    .any(|s| blocked.contains(&s.node)),
                _ => node.inputs.iter().all(|i| blocked.contains(&i.node)),
            };
            if !keep {
                blocked.remove(&id);
            }
        }
        if blocked.len() == before {
            break;
        }
    }
    for &id in &blocked {
        set_blocked(model.node_mut(id))?;
    }
    // The stem reads NCHW even where it runs blocked.
    let reads_blocked = |model: &TypedModel, id: usize| {
        blocked.contains(&id) && blockable(model.node(id)).is_none_or(|op| op.reads_blocked())
    };
    for &id in &blocked {
        let outlet = OutletId::new(id, 0);
        let readers: Vec<InletId> = model.node(id).outputs[0]
            .successors
            .iter()
            .filter(|s| !reads_blocked(model, s.node))
            .copied()
            .collect();
        let is_output = model.output_outlets()?.contains(&outlet);
        if readers.is_empty() && !is_output {
            continue;
        }
        let fact = model.outlet_fact(outlet)?.clone();
        let shape = fact
            .shape
            .as_concrete()
            .ok_or_else(|| format_err!("a blocked tensor of symbolic shape {:?}", fact.shape))?
            .to_vec();
        let op = FromBlocked::new(&shape).ok_or_else(|| format_err!("blocked tensor of shape {shape:?}"))?;
        let name = format!("{}.from_blocked", model.node(id).name);
        let back = model.add_node(name, op, tvec![fact])?;
        model.add_edge(outlet, InletId::new(back, 0))?;
        for reader in readers {
            model.add_edge(OutletId::new(back, 0), reader)?;
        }
        if is_output {
            let outputs: Vec<OutletId> = model
                .output_outlets()?
                .iter()
                .map(|&o| if o == outlet { OutletId::new(back, 0) } else { o })
                .collect();
            model.select_output_outlets(&outputs)?;
        }
    }
    Ok(blocked.len())
}

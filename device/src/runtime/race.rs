//! The ops this runtime swaps into tract's graphs, each timed against the op of
//! tract's it replaced, on the bundle's own sizes and weights (`bench --profile`).
//!
//! Both run as one-node graphs on the same input, alternately, best of several
//! rounds: a machine whose speed drifts during the run moves both alike.

use std::time::Instant;

use serde::Serialize;
use tract_onnx::prelude::*;

use super::conv::VectorConv;
use super::depthwise::VectorDepthwise;
use super::pointwise::VectorPointwise;
use super::{Plan, Result, Runtime, RuntimeError};

const ROUNDS: usize = 7;
const RUNS_PER_ROUND: usize = 5;

/// One swapped node: milliseconds per call with tract's op and with ours.
#[derive(Debug, Clone, Serialize)]
pub struct KernelRace {
    pub graph: String,
    pub node: String,
    pub op: String,
    pub input_shape: Vec<usize>,
    pub tract_ms: f64,
    pub swapped_ms: f64,
}

impl Runtime {
    /// Every swapped node of the loaded graphs, raced against tract's own op.
    pub fn race_kernels(&self) -> Result<Vec<KernelRace>> {
        let mut plans: Vec<(&str, &Plan)> = vec![
            (edgevlm_shared::bundle::io::IMAGE_ENCODER, &self.image_encoder),
            (edgevlm_shared::bundle::io::CAPTION_DECODER, &self.decoder),
            (edgevlm_shared::bundle::io::CAPTION_STEP, &self.decoder_step),
        ];
        if let Some(vqa) = &self.vqa {
            plans.push((edgevlm_shared::bundle::io::VQA, &vqa.plan));
        }
        let mut races = Vec::new();
        for (graph, plan) in plans {
            for node in plan.model().nodes() {
                let op: &dyn Swapped = if let Some(op) = node.op_as::<VectorDepthwise>() {
                    op
                } else if let Some(op) = node.op_as::<VectorPointwise>() {
                    op
                } else if let Some(op) = node.op_as::<VectorConv>() {
                    op
                } else {
                    continue;
                };
                let fail = |e: TractError| RuntimeError::Run {
                    graph: graph.to_string(),
                    reason: format!("racing node {}: {e:#}", node.name),
                };
                let (tract_ms, swapped_ms) = race(op).map_err(fail)?;
                races.push(KernelRace {
                    graph: graph.to_string(),
                    node: node.name.clone(),
                    op: op.name().to_string(),
                    input_shape: op.input_shape().to_vec(),
                    tract_ms,
                    swapped_ms,
                });
            }
        }
        Ok(races)
    }
}

/// An op swapped in for one of tract's: it builds itself alone, with its own op
/// or the one it replaced.
trait Swapped: Op {
    fn alone(&self, ours: bool) -> TractResult<TypedModel>;
    fn input_shape(&self) -> &[usize];
}

impl Swapped for VectorDepthwise {
    fn alone(&self, ours: bool) -> TractResult<TypedModel> {
        VectorDepthwise::alone(self, ours)
    }
    fn input_shape(&self) -> &[usize] {
        VectorDepthwise::input_shape(self)
    }
}

impl Swapped for VectorConv {
    fn alone(&self, ours: bool) -> TractResult<TypedModel> {
        VectorConv::alone(self, ours)
    }
    fn input_shape(&self) -> &[usize] {
        VectorConv::input_shape(self)
    }
}

impl Swapped for VectorPointwise {
    fn alone(&self, ours: bool) -> TractResult<TypedModel> {
        VectorPointwise::alone(self, ours)
    }
    fn input_shape(&self) -> &[usize] {
        VectorPointwise::input_shape(self)
    }
}

/// Best milliseconds per call of tract's op and of ours.
fn race(op: &dyn Swapped) -> TractResult<(f64, f64)> {
    let tract = op.alone(false)?.into_runnable()?;
    let ours = op.alone(true)?.into_runnable()?;
    let len: usize = op.input_shape().iter().product();
    let values: Vec<f32> = (0..len).map(|i| (i as f32 * 0.013).cos()).collect();
    let input = Tensor::from_shape(op.input_shape(), &values)?.into_tvalue();
    let time = |plan: &Plan| -> TractResult<f64> {
        let start = Instant::now();
        for _ in 0..RUNS_PER_ROUND {
            plan.run(tvec!(input.clone()))?;
        }
        Ok(start.elapsed().as_secs_f64() * 1e3 / RUNS_PER_ROUND as f64)
    };
    let (mut best_tract, mut best_ours) = (f64::MAX, f64::MAX);
    for _ in 0..ROUNDS {
        best_tract = best_tract.min(time(&tract)?);
        best_ours = best_ours.min(time(&ours)?);
    }
    Ok((best_tract, best_ours))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ops_are_timed_on_the_same_sizes() {
        let depthwise = crate::runtime::depthwise::tests::example_op();
        let pointwise = crate::runtime::pointwise::tests::example_op();
        let conv = crate::runtime::conv::tests::example_op();
        let mut ops: Vec<&dyn Swapped> = vec![&depthwise];
        ops.extend(pointwise.as_ref().map(|op| op as &dyn Swapped));
        ops.extend(conv.as_ref().map(|op| op as &dyn Swapped));
        for op in ops {
            let (tract, ours) = race(op).unwrap();
            assert!(tract.is_finite() && tract > 0.0, "{tract}");
            assert!(ours.is_finite() && ours > 0.0, "{ours}");
            assert_eq!(op.input_shape()[2..], [16, 16]);
            // Each graph holds the op it is timing, and only that one.
            for ours in [true, false] {
                let graph = op.alone(ours).unwrap();
                let swapped = graph.nodes().iter().any(|n| n.op.name() == op.name());
                assert_eq!(swapped, ours, "{}", op.name());
            }
        }
    }
}

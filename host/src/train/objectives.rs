//! Training objectives. Each takes a batch already on the device and returns its
//! loss; random choices (masks, negatives) come from the caller's seeded generator so
//! that a resumed run repeats them exactly.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};

mod alignment;
mod masking;
mod tasks;

pub use self::alignment::*;
pub use self::masking::*;
pub use self::tasks::*;
pub use crate::model::input::{text_input, TextInput};

/// Cross-entropy of `logits` `[n, classes]` against `targets`, weighted per row
/// (0 ignores a row), averaged over the total weight.
pub fn weighted_cross_entropy(logits: Tensor<2>, targets: &[i64], weights: &[f32]) -> Tensor<1> {
    smoothed_cross_entropy(logits, targets, weights, 0.0)
}

/// [`weighted_cross_entropy`] against targets smoothed towards the uniform
/// distribution (Szegedy et al. 2016): `(1 - smoothing)` on the target class and
/// `smoothing / classes` on every class.
pub fn smoothed_cross_entropy(
    logits: Tensor<2>,
    targets: &[i64],
    weights: &[f32],
    smoothing: f32,
) -> Tensor<1> {
    let device = logits.device();
    let n = targets.len();
    let targets = Tensor::<2, Int>::from_data(TensorData::new(targets.to_vec(), [n, 1]), &device);
    let w = Tensor::<2>::from_data(TensorData::new(weights.to_vec(), [n, 1]), &device);
    let log_probs = log_softmax(logits, 1);
    let mut picked = log_probs.clone().gather(1, targets);
    if smoothing > 0.0 {
        let uniform = log_probs.mean_dim(1);
        picked = picked.mul_scalar(1.0 - smoothing) + uniform.mul_scalar(smoothing);
    }
    let total: f32 = weights.iter().sum();
    (picked * w).sum().neg().div_scalar(total.max(1.0))
}

/// Sequence cross-entropy: `[batch, len, vocab]` logits against `[batch * len]` targets.
pub fn sequence_cross_entropy(logits: Tensor<3>, targets: &[i64], weights: &[f32]) -> Tensor<1> {
    smoothed_sequence_cross_entropy(logits, targets, weights, 0.0)
}

/// [`sequence_cross_entropy`] with label smoothing (see [`smoothed_cross_entropy`]).
pub fn smoothed_sequence_cross_entropy(
    logits: Tensor<3>,
    targets: &[i64],
    weights: &[f32],
    smoothing: f32,
) -> Tensor<1> {
    let [batch, len, vocab] = logits.dims();
    smoothed_cross_entropy(logits.reshape([batch * len, vocab]), targets, weights, smoothing)
}

#[cfg(test)]
mod tests;

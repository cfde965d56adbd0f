//! A VQA head that reasons over where things are, for questions like "is the red
//! object at the top?" or "what shape is the object closest to the red one?".
//!
//! It reads the cells of the [`GridEncoder`](super::grid::GridEncoder), each with
//! its (x, y). The question then
//! 1. attends to the cell it names (the anchor) and reads its features and position,
//! 2. scores every cell given the question, the anchor and its offset and
//!    distance from the anchor, and reads the best one (the object closest to / farthest from it),
//! 3. and pools the scored cells by sum and max (how many, which is largest).

use burn::config::Config;
use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{relu, softmax};
use burn::tensor::{Device, Tensor};

use super::grid::coordinates;

/// Divides the sum over the cells: a fixed scale rather than the mean, which would
/// hide how many cells are on.
pub const POOL_SCALE: f32 = 16.0;

/// Added under the square root of the distance to the anchor, so that its gradient
/// stays finite at the anchor itself.
pub const DISTANCE_FLOOR: f32 = 1e-6;

#[derive(Config, Debug)]
pub struct SpatialVqaConfig {
    /// Width of the question vector (the text encoder's); equal to `d_model`.
    pub d_question: usize,
    pub answers: usize,
    /// Cells per side of the grid it reads.
    #[config(default = 8)]
    pub grid: usize,
    /// Width of a cell vector.
    #[config(default = 128)]
    pub d_model: usize,
    /// Width of the answer MLP.
    #[config(default = 256)]
    pub d_hidden: usize,
}

#[derive(Module, Debug)]
pub struct SpatialVqa {
    pub question_norm: LayerNorm,
    pub anchor_key: Linear,
    pub anchor_query: Linear,
    pub scored_cell: Linear,
    pub scored_context: Linear,
    pub scored_offset: Linear,
    pub scored_hidden: Linear,
    pub score: Linear,
    pub answer_hidden: Linear,
    pub answer: Linear,
    grid: usize,
}

impl SpatialVqaConfig {
    pub fn init(&self, device: &Device) -> SpatialVqa {
        let (d, h) = (self.d_model, self.d_hidden);
        assert_eq!(self.d_question, d, "the question vector joins the cells' width");
        let linear = |i, o| LinearConfig::new(i, o).init(device);
        let unbiased = |i, o| LinearConfig::new(i, o).with_bias(false).init(device);
        SpatialVqa {
            question_norm: LayerNormConfig::new(d).init(device),
            anchor_key: linear(d, d),
            anchor_query: linear(d, d),
            scored_cell: linear(d, d),
            scored_context: unbiased(2 * d + 2, d),
            scored_offset: unbiased(3, d),
            scored_hidden: linear(d, d),
            score: linear(d, 1),
            answer_hidden: linear(5 * d + 2, h),
            answer: linear(h, self.answers),
            grid: self.grid,
        }
    }
}

impl SpatialVqa {
    pub fn grid(&self) -> usize {
        self.grid
    }

    /// The same head with a fresh answer layer over `answers` classes.
    pub fn with_answers(mut self, answers: usize, device: &Device) -> Self {
        let hidden = self.answer_hidden.weight.val().dims()[1];
        self.answer = LinearConfig::new(hidden, answers).init(device);
        self
    }

    /// Cell vectors `[batch, grid², d_model]` ([`GridEncoder`](super::grid::GridEncoder))
    /// → per cell, its vector and the two projections of it that do not depend on
    /// the question (anchor key, cell term of the score), side by side:
    /// `[batch, grid², 3 · d_model]`. Images are encoded once for all their
    /// questions, so these are too.
    pub fn cells(&self, cells: Tensor<3>) -> Tensor<3> {
        let keys = self.anchor_key.forward(cells.clone());
        let scored = self.scored_cell.forward(cells.clone());
        Tensor::cat(vec![cells, keys, scored], 2)
    }

    /// [`Self::cells`] `[batch, cells, 3d]` (one row per question) and question
    /// vectors `[batch, d_question]` → answer logits `[batch, answers]`.
    pub fn forward(&self, encoded: Tensor<3>, question: Tensor<2>) -> Tensor<2> {
        self.forward_with_focus(encoded, question).0
    }

    /// [`Self::forward`], and where the head looked: the weights of the cell it
    /// read for the answer `[batch, cells]` (the best-scored cell, the object
    /// the answer is about).
    pub fn forward_with_focus(&self, encoded: Tensor<3>, question: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let device = encoded.device();
        let [batch, n, width] = encoded.dims();
        let d = width / 3;
        let cells = encoded.clone().narrow(2, 0, d);
        let keys = encoded.clone().narrow(2, d, d);
        let cell_scores = encoded.narrow(2, 2 * d, d);
        let coordinates = coordinates(self.grid, &device);
        // LayerNorm brings the averaged states to the cells' scale; without it (or
        // with an MLP instead) the question's vector starts too weak to steer the
        // anchor attention, and learning waits for it.
        let question = self.question_norm.forward(question);

        // 1. The anchor: the cell the question names.
        let query = self.anchor_query.forward(question.clone()).unsqueeze_dim::<3>(2);
        let anchor_weights = softmax(keys.matmul(query).div_scalar((d as f32).sqrt()), 1); // [b, n, 1]
        let anchor_weights = anchor_weights.swap_dims(1, 2); // [b, 1, n]
        let anchor = anchor_weights.clone().matmul(cells.clone()).reshape([batch, d]);
        let anchor_at = anchor_weights
            .matmul(coordinates.clone().unsqueeze_dim::<3>(0).expand([batch, n, 2]))
            .reshape([batch, 2]);

        // 2. Every cell scored given the question, the anchor and its offset from it.
        let offsets = coordinates.unsqueeze_dim::<3>(0).expand([batch, n, 2])
            - anchor_at.clone().unsqueeze_dim::<3>(1).expand([batch, n, 2]);
        // The distance itself too: "closest"/"farthest" rank by it, and ReLU layers
        // would only approximate a square root from (dx, dy).
        let distance = offsets
            .clone()
            .powi_scalar(2)
            .sum_dim(2)
            .add_scalar(DISTANCE_FLOOR)
            .sqrt();
        let offsets = Tensor::cat(vec![offsets, distance], 2);
        let context = Tensor::cat(vec![question.clone(), anchor.clone(), anchor_at.clone()], 1);
        let scored = relu(
            cell_scores
                + self.scored_context.forward(context).unsqueeze_dim::<3>(1)
                + self.scored_offset.forward(offsets),
        );
        let scored = relu(self.scored_hidden.forward(scored)); // [b, n, d]
        let best_weights = softmax(self.score.forward(scored.clone()), 1).swap_dims(1, 2); // [b, 1, n]
        let best = best_weights.clone().matmul(cells).reshape([batch, d]);

        // 3. Pooled over the cells: sums count, maxima find.
        let total = scored
            .clone()
            .sum_dim(1)
            .reshape([batch, d])
            .div_scalar(POOL_SCALE);
        let largest = scored.max_dim(1).reshape([batch, d]);

        let joined = Tensor::cat(vec![question, anchor, anchor_at, best, total, largest], 1);
        let logits = self.answer.forward(relu(self.answer_hidden.forward(joined)));
        (logits, best_weights.reshape([batch, n]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn shapes_through_the_head() {
        let device = Device::flex();
        device.seed(3);
        let head = SpatialVqaConfig::new(16, 5)
            .with_grid(4)
            .with_d_model(16)
            .with_d_hidden(32)
            .init(&device);
        let cells = Tensor::<3>::random([3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
        let encoded = head.cells(cells);
        assert_eq!(encoded.dims(), [3, 16, 3 * 16], "cell, anchor key, score term");
        let question = Tensor::<2>::random([3, 16], Distribution::Normal(0.0, 1.0), &device);
        let (logits, focus) = head.forward_with_focus(encoded, question);
        assert_eq!(logits.dims(), [3, 5]);
        let sums: Vec<f32> = focus
            .sum_dim(1)
            .into_data()
            .convert::<f32>()
            .try_to_vec()
            .unwrap();
        assert!(
            sums.iter().all(|s| (s - 1.0).abs() < 1e-5),
            "a distribution over the cells: {sums:?}"
        );
        let values: Vec<f32> = logits.into_data().convert::<f32>().try_to_vec().unwrap();
        assert!(values.iter().all(|v| v.is_finite()));
    }
}

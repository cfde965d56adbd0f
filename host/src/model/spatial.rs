//! A VQA head that reasons over where things are, for questions like "is the red
//! object at the top?" or "what shape is the object closest to the red one?".
//!
//! A small BatchNorm CNN turns the image into a grid of cells, each joined with its
//! (x, y). The question then
//! 1. attends to the cell it names (the anchor) and reads its features and position,
//! 2. scores every cell given the question, the anchor and its offset and
//!    distance from the anchor, and reads the best one (the object closest to / farthest from it),
//! 3. and pools the scored cells by sum and max (how many, which is largest).
//!
//! Why its own CNN and explicit coordinates: tokens of a ViT trained for captions
//! keep the left-to-right order the captions name but not where objects are, and
//! a model left to learn position from answers alone stays at chance on "top or
//! bottom" for thousands of steps. Why BatchNorm: with batch statistics this CNN
//! leaves chance within a few hundred steps; GroupNorm and no normalisation do not.

use burn::config::Config;
use burn::module::{Module, RunningState};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig2d,
};
use burn::tensor::activation::{relu, softmax};
use burn::tensor::module::batch_norm;
use burn::tensor::{Device, Tensor, TensorData};

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
    #[config(default = 64)]
    pub image_size: usize,
    /// Cells per side; `image_size / grid` must be a power of two.
    #[config(default = 8)]
    pub grid: usize,
    #[config(default = 128)]
    pub d_model: usize,
    /// Width of the answer MLP.
    #[config(default = 256)]
    pub d_hidden: usize,
}

/// 3x3 convolution, BatchNorm, ReLU.
#[derive(Module, Debug)]
pub struct ConvBn {
    pub conv: Conv2d,
    pub norm: BatchNorm,
}

impl ConvBn {
    fn new(c_in: usize, c_out: usize, stride: usize, device: &Device) -> Self {
        ConvBn {
            conv: Conv2dConfig::new([c_in, c_out], [3, 3])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            norm: BatchNormConfig::new(c_out).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        relu(self.norm.forward(self.conv.forward(x)))
    }

    /// With the running statistics whatever the device, as inference computes it.
    fn forward_inference(&self, x: Tensor<4>) -> Tensor<4> {
        let norm = &self.norm;
        relu(batch_norm(
            self.conv.forward(x),
            norm.gamma.val(),
            norm.beta.val(),
            norm.running_mean.value(),
            norm.running_var.value(),
            norm.epsilon,
        ))
    }
}

#[derive(Module, Debug)]
pub struct SpatialVqa {
    pub convs: Vec<ConvBn>,
    /// Cell features joined with (x, y) → cell vectors.
    pub cell: Linear,
    pub cell_norm: LayerNorm,
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
        let reduction = self.image_size / self.grid;
        assert!(
            self.image_size.is_multiple_of(self.grid) && reduction.is_power_of_two(),
            "image_size {} / grid {} must be a power of two",
            self.image_size,
            self.grid
        );
        let (d, h) = (self.d_model, self.d_hidden);
        assert_eq!(self.d_question, d, "the question vector joins the cells' width");
        // Stride-2 layers down to the grid (32 then 64 channels), then one at the grid.
        let mut convs = Vec::new();
        let mut channels = 3;
        for layer in 0..reduction.trailing_zeros() {
            let out = if layer == 0 { 32 } else { 64 };
            convs.push(ConvBn::new(channels, out, 2, device));
            channels = out;
        }
        convs.push(ConvBn::new(channels, d, 1, device));
        let linear = |i, o| LinearConfig::new(i, o).init(device);
        let unbiased = |i, o| LinearConfig::new(i, o).with_bias(false).init(device);
        SpatialVqa {
            convs,
            cell: linear(d + 2, d),
            cell_norm: LayerNormConfig::new(d).init(device),
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

/// Cell centres `[cells, 2]` as (x, y) in [-1, 1], row by row.
pub fn cell_coordinates(grid: usize) -> Vec<f32> {
    let at = |i: usize| {
        if grid == 1 {
            0.0
        } else {
            -1.0 + 2.0 * i as f32 / (grid - 1) as f32
        }
    };
    (0..grid * grid)
        .flat_map(|c| [at(c % grid), at(c / grid)])
        .collect()
}

impl SpatialVqa {
    pub fn grid(&self) -> usize {
        self.grid
    }

    /// Sets every BatchNorm's running statistics to the exact mean and variance of
    /// its input over `batches` of images, layer by layer, each layer fed by the
    /// ones before it as inference runs them ("precise BatchNorm"). Running
    /// averages gathered while the weights moved lag behind them; such stale
    /// statistics moved held-out accuracy by tens of points between neighbouring
    /// checkpoints of the same run.
    pub fn recalibrate(mut self, batches: &[Tensor<4>]) -> Self {
        for layer in 0..self.convs.len() {
            let mut moments: Option<(Tensor<1>, Tensor<1>)> = None;
            let mut count = 0;
            for images in batches {
                let mut x = images.clone();
                for conv in &self.convs[..layer] {
                    x = conv.forward_inference(x);
                }
                let y = self.convs[layer].conv.forward(x).detach();
                let [b, c, h, w] = y.dims();
                let flat = y.swap_dims(0, 1).reshape([c, b * h * w]);
                let sum = flat.clone().sum_dim(1).reshape([c]);
                let squares = flat.powi_scalar(2).sum_dim(1).reshape([c]);
                count += b * h * w;
                moments = Some(match moments {
                    Some((s, q)) => (s + sum, q + squares),
                    None => (sum, squares),
                });
            }
            let Some((sum, squares)) = moments else {
                return self;
            };
            let mean = sum.div_scalar(count as f32);
            let variance = (squares.div_scalar(count as f32) - mean.clone().powi_scalar(2)).clamp_min(0.0);
            let norm = &mut self.convs[layer].norm;
            norm.running_mean = RunningState::new(mean);
            norm.running_var = RunningState::new(variance);
        }
        self
    }

    fn coordinates(&self, device: &Device) -> Tensor<2> {
        let cells = self.grid * self.grid;
        Tensor::from_data(TensorData::new(cell_coordinates(self.grid), [cells, 2]), device)
    }

    /// Images `[batch, 3, s, s]` → per cell, its vector and the two projections of
    /// it that do not depend on the question (anchor key, cell term of the score),
    /// side by side: `[batch, grid², 3 · d_model]`. Images are encoded once for all
    /// their questions, so these are too.
    pub fn cells(&self, images: Tensor<4>) -> Tensor<3> {
        let cells = self.cell_vectors(images);
        let keys = self.anchor_key.forward(cells.clone());
        let scored = self.scored_cell.forward(cells.clone());
        Tensor::cat(vec![cells, keys, scored], 2)
    }

    /// Images `[batch, 3, s, s]` → cell vectors `[batch, grid², d_model]`.
    fn cell_vectors(&self, images: Tensor<4>) -> Tensor<3> {
        let device = images.device();
        let mut x = images;
        for conv in &self.convs {
            x = conv.forward(x);
        }
        let [batch, channels, rows, columns] = x.dims();
        let features = x.reshape([batch, channels, rows * columns]).swap_dims(1, 2);
        let coordinates = self
            .coordinates(&device)
            .unsqueeze_dim::<3>(0)
            .expand([batch, rows * columns, 2]);
        self.cell_norm.forward(relu(
            self.cell.forward(Tensor::cat(vec![features, coordinates], 2)),
        ))
    }

    /// [`Self::cells`] `[batch, cells, 3d]` (one row per question) and question
    /// vectors `[batch, d_question]` → answer logits `[batch, answers]`.
    pub fn forward(&self, encoded: Tensor<3>, question: Tensor<2>) -> Tensor<2> {
        let device = encoded.device();
        let [batch, n, width] = encoded.dims();
        let d = width / 3;
        let cells = encoded.clone().narrow(2, 0, d);
        let keys = encoded.clone().narrow(2, d, d);
        let cell_scores = encoded.narrow(2, 2 * d, d);
        let coordinates = self.coordinates(&device);
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
        let best = best_weights.matmul(cells).reshape([batch, d]);

        // 3. Pooled over the cells: sums count, maxima find.
        let total = scored
            .clone()
            .sum_dim(1)
            .reshape([batch, d])
            .div_scalar(POOL_SCALE);
        let largest = scored.max_dim(1).reshape([batch, d]);

        let joined = Tensor::cat(vec![question, anchor, anchor_at, best, total, largest], 1);
        self.answer.forward(relu(self.answer_hidden.forward(joined)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn head(device: &Device) -> SpatialVqa {
        device.seed(3);
        SpatialVqaConfig::new(16, 5)
            .with_image_size(16)
            .with_grid(4)
            .with_d_model(16)
            .with_d_hidden(32)
            .init(device)
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn coordinates_run_row_by_row_from_the_top_left() {
        let xy = cell_coordinates(3);
        assert_eq!(&xy[..6], &[-1.0, -1.0, 0.0, -1.0, 1.0, -1.0]);
        assert_eq!(&xy[16..], &[1.0, 1.0]);
        assert_eq!(cell_coordinates(1), vec![0.0, 0.0]);
    }

    #[test]
    fn shapes_through_the_head() {
        let device = Device::flex();
        let head = head(&device);
        assert_eq!(
            head.convs.len(),
            3,
            "two stride-2 layers (16 px to 4 cells), one at the grid"
        );
        let images = Tensor::<4>::random([3, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
        let cells = head.cells(images);
        assert_eq!(cells.dims(), [3, 16, 3 * 16], "cell, anchor key, score term");
        let question = Tensor::<2>::random([3, 16], Distribution::Normal(0.0, 1.0), &device);
        let logits = head.forward(cells, question);
        assert_eq!(logits.dims(), [3, 5]);
        assert!(values(logits).iter().all(|v| v.is_finite()));
    }

    /// Recalibrated on one batch, inference normalises each layer with exactly the
    /// statistics training computes from that batch, so the cells agree.
    #[test]
    fn recalibrated_inference_matches_training_statistics() {
        let device = Device::flex().autodiff();
        let head = head(&device);
        let images = Tensor::<4>::random([6, 3, 16, 16], Distribution::Normal(0.5, 2.0), &device);
        let trained = values(head.cell_vectors(images.clone()));
        let recalibrated = head.recalibrate(std::slice::from_ref(&images)).valid();
        let inferred = values(recalibrated.cell_vectors(images.inner()));
        let diff = trained
            .iter()
            .zip(&inferred)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(diff < 1e-3, "max |train - inference| = {diff}");
        let mean = values(recalibrated.convs[0].norm.running_mean.value());
        assert!(
            mean.iter().any(|m| m.abs() > 1e-3),
            "statistics were set: {mean:?}"
        );
    }
}

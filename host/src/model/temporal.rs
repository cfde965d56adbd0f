//! The temporal encoder that turns a clip's per-frame image tokens into one memory
//! the caption decoder reads: each frame's tokens get the frame's position, then
//! every token attends to the same token in the other frames (TimeSformer's
//! divided time attention, Bertasius et al. 2021), so "was here, is gone" and
//! "was there, is here" become features before the decoder looks.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Embedding, LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Tensor};

use super::attention::{Attention, AttentionConfig};
use super::bert::embedding;
use super::feed_forward::{FeedForward, FeedForwardConfig};

#[derive(Config, Debug)]
pub struct TemporalConfig {
    /// Width of the image tokens (the decoder's `d_image`).
    pub d_image: usize,
    /// Frames of a clip: the model always reads this many (inputs are resampled).
    #[config(default = 8)]
    pub frames: usize,
    #[config(default = 4)]
    pub heads: usize,
    #[config(default = 2)]
    pub layers: usize,
    #[config(default = 256)]
    pub d_intermediate: usize,
}

#[derive(Module, Debug)]
pub struct TemporalEncoder {
    pub frame_embedding: Embedding,
    pub layers: Vec<TemporalLayer>,
    frames: usize,
}

#[derive(Module, Debug)]
pub struct TemporalLayer {
    pub attention_norm: LayerNorm,
    pub attention: Attention,
    pub ff_norm: LayerNorm,
    pub feed_forward: FeedForward,
}

impl TemporalConfig {
    pub fn init(&self, device: &Device) -> TemporalEncoder {
        let d = self.d_image;
        TemporalEncoder {
            frame_embedding: embedding(self.frames, d, device),
            layers: (0..self.layers)
                .map(|_| TemporalLayer {
                    attention_norm: LayerNormConfig::new(d).init(device),
                    attention: AttentionConfig::new(d, self.heads).init(device),
                    ff_norm: LayerNormConfig::new(d).init(device),
                    feed_forward: FeedForwardConfig::new(d, self.d_intermediate).init(device),
                })
                .collect(),
            frames: self.frames,
        }
    }
}

impl TemporalEncoder {
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// # Shapes
    /// - frame_tokens: `[clips * frames, n, d]`, each clip's frames in order
    /// - output: `[clips, frames * n, d]`, frame by frame
    ///
    /// Panics if the rows are not a whole number of clips.
    pub fn forward(&self, frame_tokens: Tensor<3>) -> Tensor<3> {
        let [rows, n, d] = frame_tokens.dims();
        let frames = self.frames;
        assert!(
            rows.is_multiple_of(frames),
            "{rows} frames are not clips of {frames}"
        );
        let clips = rows / frames;
        let position = self.frame_embedding.weight.val().reshape([1, frames, 1, d]);
        let x = frame_tokens.reshape([clips, frames, n, d]) + position;
        // One sequence over time per (clip, token position).
        let mut x = x.swap_dims(1, 2).reshape([clips * n, frames, d]);
        for layer in &self.layers {
            let h = layer.attention_norm.forward(x.clone());
            x = x.clone() + layer.attention.forward(h.clone(), h, None);
            x = x.clone() + layer.feed_forward.forward(layer.ff_norm.forward(x));
        }
        x.reshape([clips, n, frames, d])
            .swap_dims(1, 2)
            .reshape([clips, frames * n, d])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn clips_become_one_memory_and_frame_order_matters() {
        let device = Device::flex();
        device.seed(3);
        let temporal = TemporalConfig::new(16).with_frames(4).with_heads(2).init(&device);
        let frames = Tensor::<3>::random([8, 5, 16], Distribution::Normal(0.0, 1.0), &device);
        let memory = temporal.forward(frames.clone());
        assert_eq!(memory.dims(), [2, 20, 16]);
        // The second clip alone gives the same memory as in the batch.
        let alone = temporal.forward(frames.clone().narrow(0, 4, 4));
        let batch_second = memory.clone().narrow(0, 1, 1);
        assert!((alone - batch_second).abs().max().into_scalar::<f32>() < 1e-5);
        // Frames in another order are another clip.
        let reversed = Tensor::cat((0..4).rev().map(|f| frames.clone().narrow(0, f, 1)).collect(), 0);
        let back = temporal.forward(reversed);
        let first = memory.slice([0..1, 0..5]);
        let first_of_reversed = back.slice([0..1, 15..20]);
        assert!((first - first_of_reversed).abs().max().into_scalar::<f32>() > 1e-3);
    }
}

//! The position-wise MLP of transformer blocks: Linear → GELU → Linear
//! (BERT's `intermediate.dense` and `output.dense`).

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::gelu;
use burn::tensor::{Device, Tensor};

#[derive(Config, Debug)]
pub struct FeedForwardConfig {
    pub d_model: usize,
    pub d_hidden: usize,
}

#[derive(Module, Debug)]
pub struct FeedForward {
    pub intermediate: Linear,
    pub output: Linear,
}

impl FeedForwardConfig {
    pub fn init(&self, device: &Device) -> FeedForward {
        FeedForward {
            intermediate: LinearConfig::new(self.d_model, self.d_hidden).init(device),
            output: LinearConfig::new(self.d_hidden, self.d_model).init(device),
        }
    }
}

impl FeedForward {
    /// `[..., d_model]` → `[..., d_model]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.output.forward(gelu(self.intermediate.forward(x)))
    }
}

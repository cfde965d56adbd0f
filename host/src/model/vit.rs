//! Vision Transformer image encoder (Dosovitskiy et al. 2021, "An Image is Worth
//! 16x16 Words"): convolutional patch embedding, a learned [CLS] token and
//! positions, pre-LayerNorm blocks, a final LayerNorm.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Tensor};

use super::attention::{Attention, AttentionConfig};
use super::feed_forward::{FeedForward, FeedForwardConfig};

#[derive(Config, Debug)]
pub struct VitConfig {
    #[config(default = 64)]
    pub image_size: usize,
    #[config(default = 8)]
    pub patch_size: usize,
    #[config(default = 128)]
    pub d_model: usize,
    #[config(default = 3)]
    pub layers: usize,
    #[config(default = 4)]
    pub heads: usize,
    #[config(default = 4)]
    pub mlp_ratio: usize,
}

#[derive(Module, Debug)]
pub struct Vit {
    pub patch_embed: Conv2d,
    pub cls_token: Param<Tensor<3>>,
    pub position: Param<Tensor<3>>,
    pub blocks: Vec<VitBlock>,
    pub norm: LayerNorm,
}

#[derive(Module, Debug)]
pub struct VitBlock {
    pub norm1: LayerNorm,
    pub attention: Attention,
    pub norm2: LayerNorm,
    pub mlp: FeedForward,
}

impl VitConfig {
    pub fn patches(&self) -> usize {
        (self.image_size / self.patch_size).pow(2)
    }

    pub fn init(&self, device: &Device) -> Vit {
        assert!(
            self.image_size.is_multiple_of(self.patch_size),
            "image_size {} must be a multiple of patch_size {}",
            self.image_size,
            self.patch_size
        );
        let d = self.d_model;
        let small = Initializer::Normal { mean: 0.0, std: 0.02 };
        Vit {
            patch_embed: Conv2dConfig::new([3, d], [self.patch_size, self.patch_size])
                .with_stride([self.patch_size, self.patch_size])
                .init(device),
            cls_token: small.init([1, 1, d], device),
            position: small.init([1, self.patches() + 1, d], device),
            blocks: (0..self.layers)
                .map(|_| VitBlock {
                    norm1: LayerNormConfig::new(d).with_epsilon(1e-6).init(device),
                    attention: AttentionConfig::new(d, self.heads).init(device),
                    norm2: LayerNormConfig::new(d).with_epsilon(1e-6).init(device),
                    mlp: FeedForwardConfig::new(d, d * self.mlp_ratio).init(device),
                })
                .collect(),
            norm: LayerNormConfig::new(d).with_epsilon(1e-6).init(device),
        }
    }
}

impl Vit {
    /// Embeds patches and prepends [CLS], before any block.
    ///
    /// # Shapes
    /// - images: `[batch, 3, size, size]` → `[batch, 1 + patches, d_model]`
    pub fn embed(&self, images: Tensor<4>) -> Tensor<3> {
        let patches = self.patch_embed.forward(images); // [b, d, h, w]
        let [batch, d, h, w] = patches.dims();
        let tokens = patches.reshape([batch, d, h * w]).swap_dims(1, 2);
        let cls = self.cls_token.val().expand([batch, 1, d]);
        Tensor::cat(vec![cls, tokens], 1) + self.position.val()
    }

    /// Runs the blocks over embedded tokens.
    pub fn encode(&self, mut x: Tensor<3>) -> Tensor<3> {
        for block in &self.blocks {
            let h = block.norm1.forward(x.clone());
            x = x + block.attention.forward(h.clone(), h, None);
            x = x.clone() + block.mlp.forward(block.norm2.forward(x));
        }
        self.norm.forward(x)
    }

    /// # Shapes
    /// - images: `[batch, 3, size, size]`
    /// - output: `[batch, 1 + patches, d_model]`; token 0 is the pooled [CLS] vector.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<3> {
        self.encode(self.embed(images))
    }
}

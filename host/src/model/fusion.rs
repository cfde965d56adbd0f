//! Fusion of text and image: the linear additive baseline, or cross-attention
//! layers in which text tokens attend to image tokens (as in ALBEF, Li et al. 2021,
//! "Align before Fuse").

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use super::attention::padding_bias;
use super::bert::{BertConfig, BertLayer};

#[derive(Config, Debug, PartialEq, Eq, Copy)]
pub enum FusionKind {
    /// Project the text tokens and the pooled image vector to one width and add them.
    Linear,
    /// Text layers with cross-attention to the image tokens.
    CrossAttention,
}

#[derive(Config, Debug)]
pub struct FusionConfig {
    #[config(default = "FusionKind::CrossAttention")]
    pub kind: FusionKind,
    /// Width of the text side (and of the fused output).
    pub d_model: usize,
    /// Width of the image tokens.
    pub d_image: usize,
    #[config(default = 2)]
    pub layers: usize,
    #[config(default = 4)]
    pub heads: usize,
    #[config(default = 512)]
    pub d_intermediate: usize,
}

#[derive(Module, Debug)]
pub struct Fusion {
    pub text_proj: Option<Linear>,
    pub image_proj: Option<Linear>,
    pub layers: Vec<BertLayer>,
}

impl FusionConfig {
    pub fn init(&self, device: &Device) -> Fusion {
        match self.kind {
            FusionKind::Linear => Fusion {
                text_proj: Some(LinearConfig::new(self.d_model, self.d_model).init(device)),
                image_proj: Some(LinearConfig::new(self.d_image, self.d_model).init(device)),
                layers: Vec::new(),
            },
            FusionKind::CrossAttention => {
                let layer_cfg = BertConfig::new(0)
                    .with_d_model(self.d_model)
                    .with_heads(self.heads)
                    .with_d_intermediate(self.d_intermediate);
                Fusion {
                    text_proj: None,
                    image_proj: None,
                    layers: (0..self.layers)
                        .map(|_| BertLayer::new(&layer_cfg, Some(self.d_image), device))
                        .collect(),
                }
            }
        }
    }
}

impl Fusion {
    /// # Shapes
    /// - text: `[batch, len, d_model]`, text_mask: `[batch, len]` (1 = token)
    /// - image: `[batch, patches + 1, d_image]`, token 0 pooled
    /// - output: `[batch, len, d_model]`; position 0 is the fused [CLS]
    pub fn forward(&self, text: Tensor<3>, text_mask: Tensor<2>, image: Tensor<3>) -> Tensor<3> {
        if let (Some(text_proj), Some(image_proj)) = (&self.text_proj, &self.image_proj) {
            let [batch, _, d_image] = image.dims();
            let pooled = image.slice([0..batch, 0..1]).reshape([batch, 1, d_image]);
            return text_proj.forward(text) + image_proj.forward(pooled);
        }
        let bias = padding_bias(text_mask);
        let mut x = text;
        for layer in &self.layers {
            x = layer.forward(x, Some(bias.clone()), Some((image.clone(), None)));
        }
        x
    }
}

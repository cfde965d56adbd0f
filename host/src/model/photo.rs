//! The real-photo model: frozen pretrained towers (EfficientNet-Lite0 for images,
//! MiniLM for text) whose outputs are cached, and the trained parts on top of them:
//! ITC projections, a cross-attention fusion with ITM and MLM heads (alignment), and
//! a caption decoder with its own small vocabulary that attends to the projected
//! image tokens.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::gelu;
use burn::tensor::{Device, Tensor};

use super::decoder::{CaptionDecoder, CaptionDecoderConfig};
use super::fusion::{Fusion, FusionConfig, FusionKind};
use super::heads::{l2_normalize, MlmHead};

#[derive(Config, Debug)]
pub struct PhotoVlmConfig {
    /// Width of the image tower's tokens (EfficientNet-Lite0: 1280).
    pub d_image_features: usize,
    /// Width of the text tower (MiniLM-L6: 384).
    pub d_text: usize,
    /// The text tower's vocabulary (MLM predicts into it).
    pub text_vocab: usize,
    /// The caption decoder; its `d_image` must equal `d_model`.
    pub decoder: CaptionDecoderConfig,
    /// Width of the projected image tokens seen by fusion and decoder.
    #[config(default = 256)]
    pub d_model: usize,
    /// Width of the shared ITC embedding space.
    #[config(default = 256)]
    pub d_embed: usize,
    #[config(default = 1)]
    pub fusion_layers: usize,
    #[config(default = 6)]
    pub fusion_heads: usize,
    #[config(default = 1024)]
    pub fusion_intermediate: usize,
}

/// A two-layer projection into the ITC space: locked tower features need a little
/// non-linearity to be brought together (a linear map alone loses several R@1 points).
#[derive(Module, Debug)]
pub struct Projection {
    pub hidden: Linear,
    pub output: Linear,
}

impl Projection {
    fn new(d_in: usize, d_out: usize, device: &Device) -> Self {
        Self {
            hidden: LinearConfig::new(d_in, d_out).init(device),
            output: LinearConfig::new(d_out, d_out).init(device),
        }
    }

    /// Unit-length embeddings: `[batch, d_in]` → `[batch, d_out]`.
    pub fn embed(&self, x: Tensor<2>) -> Tensor<2> {
        let h = self.hidden.forward(x);
        l2_normalize(h.clone() + self.output.forward(gelu(h)))
    }
}

#[derive(Module, Debug)]
pub struct PhotoVlm {
    pub image_proj: Linear,
    pub image_norm: LayerNorm,
    pub itc_image: Projection,
    pub itc_text: Projection,
    /// log(1 / temperature), learned, capped at log 100 as in CLIP.
    pub logit_scale: Param<Tensor<1>>,
    pub fusion: Fusion,
    pub itm: Linear,
    pub mlm: MlmHead,
    pub decoder: CaptionDecoder,
}

impl PhotoVlmConfig {
    pub fn init(&self, device: &Device) -> PhotoVlm {
        let d = self.d_model;
        PhotoVlm {
            image_proj: LinearConfig::new(self.d_image_features, d).init(device),
            image_norm: LayerNormConfig::new(d).init(device),
            itc_image: Projection::new(self.d_image_features, self.d_embed, device),
            itc_text: Projection::new(self.d_text, self.d_embed, device),
            logit_scale: Initializer::Constant {
                value: (1.0f64 / 0.07).ln(),
            }
            .init([1], device),
            fusion: FusionConfig::new(self.d_text, d)
                .with_kind(FusionKind::CrossAttention)
                .with_layers(self.fusion_layers)
                .with_heads(self.fusion_heads)
                .with_d_intermediate(self.fusion_intermediate)
                .init(device),
            itm: LinearConfig::new(self.d_text, 2).init(device),
            mlm: MlmHead::new(self.d_text, self.text_vocab, device),
            decoder: self.decoder.init(device),
        }
    }
}

impl PhotoVlm {
    /// Tower tokens to the model's width.
    ///
    /// # Shapes
    /// - features: `[batch, n, d_image_features]` → `[batch, n, d_model]`
    pub fn image_tokens(&self, features: Tensor<3>) -> Tensor<3> {
        self.image_norm.forward(self.image_proj.forward(features))
    }

    /// Unit ITC embeddings of pooled image features `[batch, d_image_features]`.
    pub fn image_embedding(&self, pooled: Tensor<2>) -> Tensor<2> {
        self.itc_image.embed(pooled)
    }

    /// Unit ITC embeddings of sentence embeddings `[batch, d_text]`.
    pub fn text_embedding(&self, sentence: Tensor<2>) -> Tensor<2> {
        self.itc_text.embed(sentence)
    }

    pub fn itc_scale(&self) -> Tensor<1> {
        self.logit_scale.val().clamp_max(100f32.ln()).exp()
    }

    /// The fused [CLS] state of text tokens attending to image tokens.
    ///
    /// # Shapes
    /// - text: `[batch, len, d_text]`, mask `[batch, len]`, image `[batch, n, d_model]`
    /// - output: `[batch, d_text]`
    pub fn fused_cls(&self, text: Tensor<3>, mask: Tensor<2>, image: Tensor<3>) -> Tensor<2> {
        let fused = self.fusion.forward(text, mask, image);
        let [batch, _, d] = fused.dims();
        fused.slice([0..batch, 0..1]).reshape([batch, d])
    }
}

impl super::freeze::Freeze for PhotoVlm {
    fn freeze_parts(mut self, parts: &[String]) -> crate::error::Result<Self> {
        for part in parts {
            match part.as_str() {
                "image" => {
                    self.image_proj = self.image_proj.freeze();
                    self.image_norm = self.image_norm.freeze();
                }
                "fusion" => self.fusion = self.fusion.freeze(),
                "decoder" => self.decoder = self.decoder.freeze(),
                other => {
                    return Err(crate::error::Error::Invalid(format!(
                        "cannot freeze `{other}`: expected image, fusion or decoder"
                    )))
                }
            }
        }
        Ok(self)
    }

    fn part_params(&self, parts: &[String]) -> crate::error::Result<Vec<burn::module::ParamId>> {
        use burn::module::list_param_ids;
        let mut ids = Vec::new();
        for part in parts {
            match part.as_str() {
                "image" => {
                    ids.extend(list_param_ids(&self.image_proj));
                    ids.extend(list_param_ids(&self.image_norm));
                }
                "fusion" => ids.extend(list_param_ids(&self.fusion)),
                "decoder" => ids.extend(list_param_ids(&self.decoder)),
                other => {
                    return Err(crate::error::Error::Invalid(format!(
                        "unknown model part `{other}`: expected image, fusion or decoder"
                    )))
                }
            }
        }
        Ok(ids)
    }
}

//! Task heads: image-text contrastive projections (ITC), image-text matching (ITM),
//! masked language modelling tied to the word embeddings (MLM), masked image-feature
//! regression (MIM) and the VQA answer classifier.

use burn::config::Config;
use burn::module::{Module, Param, ParamId};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::gelu;
use burn::tensor::{Device, Tensor};

use super::bert::{BertConfig, BertLayer};
use super::count::{CountReadout, CountReadoutConfig};

/// CLIP/ALBEF-style contrastive projections with a learned temperature.
#[derive(Module, Debug)]
pub struct ItcHead {
    pub image_proj: Linear,
    pub text_proj: Linear,
    /// A residual `Linear(GELU(h))` after each projection (see [`ItcHeadConfig::residual`]).
    pub image_residual: Option<Linear>,
    pub text_residual: Option<Linear>,
    /// log(1 / temperature), learned; CLIP starts it at log(1 / 0.07).
    pub logit_scale: Param<Tensor<1>>,
}

#[derive(Config, Debug)]
pub struct ItcHeadConfig {
    pub d_image: usize,
    pub d_text: usize,
    pub d_embed: usize,
    /// Adds a residual layer to each projection: locked tower features need a little
    /// non-linearity to be brought together (a linear map alone loses several R@1
    /// points on Flickr8k).
    #[config(default = false)]
    pub residual: bool,
}

impl ItcHeadConfig {
    pub fn init(&self, device: &Device) -> ItcHead {
        let start = (1.0f64 / 0.07).ln();
        let residual = || {
            self.residual
                .then(|| LinearConfig::new(self.d_embed, self.d_embed).init(device))
        };
        ItcHead {
            image_proj: LinearConfig::new(self.d_image, self.d_embed).init(device),
            text_proj: LinearConfig::new(self.d_text, self.d_embed).init(device),
            image_residual: residual(),
            text_residual: residual(),
            logit_scale: Initializer::Constant { value: start }.init([1], device),
        }
    }
}

/// L2-normalises the last dimension.
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powf_scalar(2.0).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// Mean of the states over the tokens the mask keeps: `[batch, len, d]` → `[batch, d]`.
pub fn mean_over_tokens(states: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
    masked_mean(states, mask, 1.0)
}

/// A sentence embedding as sentence-transformers pools MiniLM: the mean of the
/// token states the mask keeps, at unit length.
///
/// # Shapes
/// - states: `[batch, len, d]`, mask `[batch, len]` (1 = token) → `[batch, d]`
pub fn sentence_embedding(states: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
    l2_normalize(masked_mean(states, mask, 1e-9))
}

/// States `[batch, len, d]` summed over the tokens the mask `[batch, len]` keeps and
/// divided by how many it keeps, at least `count_floor` (what an empty mask divides
/// by); the twin of the exporter's `blocks::masked_mean`.
fn masked_mean(states: Tensor<3>, mask: Tensor<2>, count_floor: f32) -> Tensor<2> {
    let [n, len, d] = states.dims();
    let summed = (states * mask.clone().reshape([n, len, 1]))
        .sum_dim(1)
        .reshape([n, d]);
    summed / mask.sum_dim(1).clamp_min(count_floor)
}

fn project(proj: &Linear, residual: &Option<Linear>, x: Tensor<2>) -> Tensor<2> {
    let h = proj.forward(x);
    l2_normalize(match residual {
        Some(residual) => h.clone() + residual.forward(gelu(h)),
        None => h,
    })
}

impl ItcHead {
    /// Unit-length embeddings: `[batch, d_image]` → `[batch, d_embed]`.
    pub fn embed_image(&self, pooled: Tensor<2>) -> Tensor<2> {
        project(&self.image_proj, &self.image_residual, pooled)
    }

    /// Unit-length embeddings: `[batch, d_text]` → `[batch, d_embed]`.
    pub fn embed_text(&self, pooled: Tensor<2>) -> Tensor<2> {
        project(&self.text_proj, &self.text_residual, pooled)
    }

    /// The multiplier of cosine similarities, capped at 100 as in CLIP.
    pub fn scale(&self) -> Tensor<1> {
        self.logit_scale.val().clamp_max(100f32.ln()).exp()
    }
}

/// Masked-LM head: transform, then logits against the (tied) word embeddings.
#[derive(Module, Debug)]
pub struct MlmHead {
    pub dense: Linear,
    pub norm: LayerNorm,
    pub bias: Param<Tensor<1>>,
}

impl MlmHead {
    pub fn new(d_model: usize, vocab: usize, device: &Device) -> Self {
        MlmHead {
            dense: LinearConfig::new(d_model, d_model).init(device),
            norm: LayerNormConfig::new(d_model).with_epsilon(1e-12).init(device),
            bias: Param::initialized(ParamId::new(), Tensor::zeros([vocab], device)),
        }
    }

    /// # Shapes
    /// - hidden: `[batch, len, d]`, word_embeddings: `[vocab, d]` → `[batch, len, vocab]`
    pub fn forward(&self, hidden: Tensor<3>, word_embeddings: Tensor<2>) -> Tensor<3> {
        let h = self.norm.forward(gelu(self.dense.forward(hidden)));
        let [batch, len, d] = h.dims();
        let vocab = word_embeddings.dims()[0];
        let logits = h.reshape([batch * len, d]).matmul(word_embeddings.transpose());
        (logits + self.bias.val().unsqueeze_dim(0)).reshape([batch, len, vocab])
    }
}

/// Masked image-feature regression (UNITER's MRFR, on ViT patches): some patch
/// embeddings are replaced by a learned mask token before the image encoder; this
/// head lets the encoded tokens attend to the text and regresses the masked patches'
/// input features: their pixels, normalised per patch (MAE's target), which, unlike
/// the learned embeddings, stay fixed while the encoder trains.
#[derive(Module, Debug)]
pub struct MimHead {
    pub mask_token: Param<Tensor<3>>,
    pub layer: BertLayer,
    pub output: Linear,
}

impl MimHead {
    /// `d_target`: features per patch (3 x patch x patch).
    pub fn new(d_image: usize, d_text: usize, heads: usize, d_target: usize, device: &Device) -> Self {
        let cfg = BertConfig::new(0)
            .with_d_model(d_image)
            .with_heads(heads)
            .with_d_intermediate(2 * d_image);
        MimHead {
            mask_token: Initializer::Normal { mean: 0.0, std: 0.02 }.init([1, 1, d_image], device),
            layer: BertLayer::new(&cfg, Some(d_text), device),
            output: LinearConfig::new(d_image, d_target).init(device),
        }
    }

    /// Replaces hidden positions of embedded patches by the mask token.
    ///
    /// # Shapes
    /// - embedded: `[batch, n, d_image]`; keep: `[batch, n, 1]` (1 = visible, 0 = masked)
    pub fn mask(&self, embedded: Tensor<3>, keep: Tensor<3>) -> Tensor<3> {
        let [batch, n, d] = embedded.dims();
        let hide = keep.clone().neg().add_scalar(1.0);
        embedded * keep + self.mask_token.val().expand([batch, n, d]) * hide
    }

    /// # Shapes
    /// - encoded: image tokens of the masked input `[batch, n, d_image]`
    /// - text: `[batch, len, d_text]`, text_bias `[batch, 1, 1, len]`
    /// - output: predicted patch features `[batch, n, d_target]`
    pub fn forward(&self, encoded: Tensor<3>, text: Tensor<3>, text_bias: Tensor<4>) -> Tensor<3> {
        self.output
            .forward(self.layer.forward(encoded, None, Some((text, Some(text_bias)))))
    }
}

/// Answer classifier over the fused [CLS], with an optional counting read-out
/// ([`CountReadout`]) added to its hidden layer.
#[derive(Module, Debug)]
pub struct VqaHead {
    pub hidden: Linear,
    pub norm: LayerNorm,
    pub output: Linear,
    pub count: Option<CountReadout>,
}

impl VqaHead {
    pub fn new(d_model: usize, answers: usize, count: Option<&CountReadoutConfig>, device: &Device) -> Self {
        VqaHead {
            hidden: LinearConfig::new(d_model, 2 * d_model).init(device),
            norm: LayerNormConfig::new(2 * d_model).init(device),
            output: LinearConfig::new(2 * d_model, answers).init(device),
            count: count.map(|c| c.init(device)),
        }
    }

    /// Width of the hidden layer (what a [`CountReadout`] adds to).
    pub fn d_hidden(&self) -> usize {
        self.output.weight.dims()[0]
    }

    /// The same head with a fresh answer layer over `answers` classes.
    pub fn with_answers(mut self, answers: usize, device: &Device) -> Self {
        self.output = LinearConfig::new(self.d_hidden(), answers).init(device);
        self
    }

    /// The same head with the counting read-out `count` asks for: one it has is
    /// kept, a missing one starts fresh, one not asked for is dropped.
    pub fn with_count(mut self, count: Option<&CountReadoutConfig>, device: &Device) -> Self {
        self.count = match (self.count.take(), count) {
            (Some(kept), Some(_)) => Some(kept),
            (None, Some(config)) => Some(config.init(device)),
            (_, None) => None,
        };
        self
    }

    /// # Shapes
    /// - fused_cls: `[batch, d]`; image: the tokens fusion read `[batch, n, d_image]`;
    ///   question: its token states `[batch, len, d_text]` and mask `[batch, len]`
    ///   (image and question are read only by the counting read-out)
    /// - output: `[batch, answers]`
    pub fn forward(
        &self,
        fused_cls: Tensor<2>,
        image: Tensor<3>,
        question: Tensor<3>,
        mask: Tensor<2>,
    ) -> Tensor<2> {
        let mut hidden = self.hidden.forward(fused_cls);
        if let Some(count) = &self.count {
            hidden = hidden + count.forward(image, mean_over_tokens(question, mask));
        }
        self.output.forward(self.norm.forward(gelu(hidden)))
    }
}

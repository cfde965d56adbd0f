//! BERT text encoder (Devlin et al. 2019), laid out as Hugging Face's `BertModel` so
//! BERT and MiniLM checkpoints load unchanged: word + position + token-type
//! embeddings, post-LayerNorm blocks, a tanh pooler over [CLS].

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor};

use super::attention::{padding_bias, Attention, AttentionConfig};
use super::feed_forward::{FeedForward, FeedForwardConfig};

#[derive(Config, Debug)]
pub struct BertConfig {
    pub vocab_size: usize,
    #[config(default = 128)]
    pub d_model: usize,
    #[config(default = 2)]
    pub layers: usize,
    #[config(default = 4)]
    pub heads: usize,
    #[config(default = 512)]
    pub d_intermediate: usize,
    #[config(default = 64)]
    pub max_positions: usize,
    #[config(default = 2)]
    pub type_vocab_size: usize,
    #[config(default = 1e-12)]
    pub layer_norm_eps: f64,
}

#[derive(Module, Debug)]
pub struct Bert {
    pub word_embeddings: Embedding,
    pub position_embeddings: Embedding,
    pub token_type_embeddings: Embedding,
    pub embeddings_norm: LayerNorm,
    pub layers: Vec<BertLayer>,
    pub pooler: Linear,
}

/// One post-LayerNorm block; optionally with cross-attention (used by the fusion).
#[derive(Module, Debug)]
pub struct BertLayer {
    pub attention: Attention,
    pub attention_norm: LayerNorm,
    pub cross_attention: Option<Attention>,
    pub cross_attention_norm: Option<LayerNorm>,
    pub feed_forward: FeedForward,
    pub output_norm: LayerNorm,
}

impl BertLayer {
    pub fn new(cfg: &BertConfig, d_context: Option<usize>, device: &Device) -> Self {
        let d = cfg.d_model;
        let norm = || {
            LayerNormConfig::new(d)
                .with_epsilon(cfg.layer_norm_eps)
                .init(device)
        };
        BertLayer {
            attention: AttentionConfig::new(d, cfg.heads).init(device),
            attention_norm: norm(),
            cross_attention: d_context.map(|c| {
                AttentionConfig::new(d, cfg.heads)
                    .with_d_context(Some(c))
                    .init(device)
            }),
            cross_attention_norm: d_context.map(|_| norm()),
            feed_forward: FeedForwardConfig::new(d, cfg.d_intermediate).init(device),
            output_norm: norm(),
        }
    }

    /// # Shapes
    /// - x: `[batch, len, d]`, self_bias: `[batch, 1, 1, len]`
    /// - context: `[batch, k_len, d_context]`, context_bias: `[batch, 1, 1, k_len]`
    pub fn forward(
        &self,
        x: Tensor<3>,
        self_bias: Option<Tensor<4>>,
        context: Option<(Tensor<3>, Option<Tensor<4>>)>,
    ) -> Tensor<3> {
        let attended = self.attention.forward(x.clone(), x.clone(), self_bias);
        let mut x = self.attention_norm.forward(x + attended);
        if let (Some(cross), Some(norm), Some((context, bias))) =
            (&self.cross_attention, &self.cross_attention_norm, context)
        {
            let attended = cross.forward(x.clone(), context, bias);
            x = norm.forward(x + attended);
        }
        let out = self.feed_forward.forward(x.clone());
        self.output_norm.forward(x + out)
    }
}

/// An embedding table initialised as BERT does (normal, std 0.02): burn's default
/// N(0, 1) would make the logits of heads tied to it start out huge.
pub fn embedding(rows: usize, d: usize, device: &Device) -> Embedding {
    EmbeddingConfig::new(rows, d)
        .with_initializer(Initializer::Normal { mean: 0.0, std: 0.02 })
        .init(device)
}

impl BertConfig {
    pub fn init(&self, device: &Device) -> Bert {
        let d = self.d_model;
        Bert {
            word_embeddings: embedding(self.vocab_size, d, device),
            position_embeddings: embedding(self.max_positions, d, device),
            token_type_embeddings: embedding(self.type_vocab_size, d, device),
            embeddings_norm: LayerNormConfig::new(d)
                .with_epsilon(self.layer_norm_eps)
                .init(device),
            layers: (0..self.layers)
                .map(|_| BertLayer::new(self, None, device))
                .collect(),
            pooler: LinearConfig::new(d, d).init(device),
        }
    }
}

impl Bert {
    /// Token embeddings before the blocks (also used to embed masked-LM inputs).
    ///
    /// # Shapes
    /// - ids: `[batch, len]` → `[batch, len, d_model]`
    pub fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [batch, len] = ids.dims();
        let device = ids.device();
        let positions = Tensor::<1, Int>::arange(0..len as i64, &device)
            .reshape([1, len])
            .expand([batch, len]);
        let types = Tensor::<2, Int>::zeros([batch, len], &device);
        let x = self.word_embeddings.forward(ids)
            + self.position_embeddings.forward(positions)
            + self.token_type_embeddings.forward(types);
        self.embeddings_norm.forward(x)
    }

    /// # Shapes
    /// - ids: `[batch, len]`; mask: `[batch, len]`, 1 for real tokens
    /// - output: `[batch, len, d_model]`
    pub fn forward(&self, ids: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<3> {
        let bias = padding_bias(mask);
        let mut x = self.embed(ids);
        for layer in &self.layers {
            x = layer.forward(x, Some(bias.clone()), None);
        }
        x
    }

    /// BERT's pooled output: tanh(W · h_[CLS]).
    pub fn pool(&self, hidden: Tensor<3>) -> Tensor<2> {
        let [batch, _, d] = hidden.dims();
        self.pooler
            .forward(hidden.slice([0..batch, 0..1]).reshape([batch, d]))
            .tanh()
    }
}

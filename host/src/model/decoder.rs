//! Caption decoder: a causal transformer whose blocks also cross-attend to the image
//! tokens, with output logits tied to the token embeddings. Decoding is greedy or
//! beam search with a GNMT length penalty (Wu et al. 2016).

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Embedding, LayerNorm, LayerNormConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::attention::{causal_bias, Attention, AttentionConfig};
use super::bert::embedding;
use super::feed_forward::{FeedForward, FeedForwardConfig};
use edgevlm_shared::search::{self, NextToken};

#[derive(Config, Debug)]
pub struct CaptionDecoderConfig {
    pub vocab_size: usize,
    pub d_image: usize,
    #[config(default = 128)]
    pub d_model: usize,
    #[config(default = 2)]
    pub layers: usize,
    #[config(default = 4)]
    pub heads: usize,
    #[config(default = 512)]
    pub d_intermediate: usize,
    /// Longest sequence, [CLS] and [SEP] included.
    #[config(default = 40)]
    pub max_len: usize,
}

#[derive(Module, Debug)]
pub struct CaptionDecoder {
    pub token_embedding: Embedding,
    pub position_embedding: Embedding,
    pub layers: Vec<DecoderLayer>,
    pub norm: LayerNorm,
    max_len: usize,
}

#[derive(Module, Debug)]
pub struct DecoderLayer {
    pub self_norm: LayerNorm,
    pub self_attention: Attention,
    pub cross_norm: LayerNorm,
    pub cross_attention: Attention,
    pub ff_norm: LayerNorm,
    pub feed_forward: FeedForward,
}

impl CaptionDecoderConfig {
    pub fn init(&self, device: &Device) -> CaptionDecoder {
        let d = self.d_model;
        CaptionDecoder {
            token_embedding: embedding(self.vocab_size, d, device),
            position_embedding: embedding(self.max_len, d, device),
            layers: (0..self.layers)
                .map(|_| DecoderLayer {
                    self_norm: LayerNormConfig::new(d).init(device),
                    self_attention: AttentionConfig::new(d, self.heads).init(device),
                    cross_norm: LayerNormConfig::new(d).init(device),
                    cross_attention: AttentionConfig::new(d, self.heads)
                        .with_d_context(Some(self.d_image))
                        .init(device),
                    ff_norm: LayerNormConfig::new(d).init(device),
                    feed_forward: FeedForwardConfig::new(d, self.d_intermediate).init(device),
                })
                .collect(),
            norm: LayerNormConfig::new(d).init(device),
            max_len: self.max_len,
        }
    }
}

pub use edgevlm_shared::search::DecodeOptions;

impl CaptionDecoder {
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Next-token logits at every position.
    ///
    /// # Shapes
    /// - ids: `[batch, len]` (starting with [CLS]); image: `[batch, n, d_image]`
    /// - output: `[batch, len, vocab]`
    pub fn forward(&self, ids: Tensor<2, Int>, image: Tensor<3>) -> Tensor<3> {
        self.forward_rows(ids, image, None)
    }

    /// [`CaptionDecoder::forward`] for several captions per image: row `r` attends
    /// to image `owner[r]`, whose keys and values are projected once for all its rows.
    ///
    /// # Shapes
    /// - ids: `[rows, len]`; image: `[images, n, d_image]`; owner: `[rows]`
    /// - output: `[rows, len, vocab]`
    pub fn forward_shared(&self, ids: Tensor<2, Int>, image: Tensor<3>, owner: Tensor<1, Int>) -> Tensor<3> {
        self.forward_rows(ids, image, Some(owner))
    }

    fn forward_rows(
        &self,
        ids: Tensor<2, Int>,
        image: Tensor<3>,
        owner: Option<Tensor<1, Int>>,
    ) -> Tensor<3> {
        let [batch, len] = ids.dims();
        let device = ids.device();
        let positions = Tensor::<1, Int>::arange(0..len as i64, &device)
            .reshape([1, len])
            .expand([batch, len]);
        let mut x = self.token_embedding.forward(ids) + self.position_embedding.forward(positions);
        let causal = causal_bias(len, &device);
        for layer in &self.layers {
            let h = layer.self_norm.forward(x.clone());
            x = x + layer.self_attention.forward(h.clone(), h, Some(causal.clone()));
            let h = layer.cross_norm.forward(x.clone());
            let (mut k, mut v) = layer.cross_attention.project_context(image.clone());
            if let Some(owner) = &owner {
                k = k.select(0, owner.clone());
                v = v.select(0, owner.clone());
            }
            x = x + layer.cross_attention.forward_projected(h, k, v, None);
            x = x.clone() + layer.feed_forward.forward(layer.ff_norm.forward(x));
        }
        let h = self.norm.forward(x);
        let [_, _, d] = h.dims();
        let vocab = self.token_embedding.weight.val().dims()[0];
        h.reshape([batch * len, d])
            .matmul(self.token_embedding.weight.val().transpose())
            .reshape([batch, len, vocab])
    }

    /// Log-probabilities of the next token after each prefix: `[batch, vocab]`.
    fn next_log_probs(&self, prefixes: &[Vec<u32>], image: Tensor<3>) -> Vec<Vec<f32>> {
        let batch = prefixes.len();
        let len = prefixes[0].len();
        let device = image.device();
        let flat: Vec<i64> = prefixes.iter().flatten().map(|&t| t as i64).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(flat, [batch, len]), &device);
        let logits = self.forward(ids, image);
        let vocab = logits.dims()[2];
        let last = logits.slice([0..batch, len - 1..len]).reshape([batch, vocab]);
        let values = log_softmax(last, 1)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        values.chunks(vocab).map(<[f32]>::to_vec).collect()
    }

    /// Generates token ids (without [CLS]/[SEP]) for each image, with the search
    /// the device uses too (`edgevlm_shared::search`).
    ///
    /// # Shapes
    /// - image: `[batch, n, d_image]`
    pub fn generate(&self, image: Tensor<3>, bos: u32, eos: u32, opts: DecodeOptions) -> Vec<Vec<u32>> {
        let max_len = opts.max_len.min(self.max_len);
        let [batch, n, d] = image.dims();
        let result = if opts.beam_size <= 1 {
            search::greedy(&mut Prefixes { decoder: self, image }, batch, bos, eos, max_len)
        } else {
            (0..batch)
                .map(|i| {
                    let one = image.clone().narrow(0, i, 1).reshape([1, n, d]);
                    search::beam(
                        &mut Prefixes {
                            decoder: self,
                            image: one,
                        },
                        bos,
                        eos,
                        max_len,
                        opts,
                    )
                })
                .collect()
        };
        match result {
            Ok(seqs) => seqs,
            Err(never) => match never {},
        }
    }
}

/// The decoder over whole prefixes (no cache: training-time code, recomputes).
struct Prefixes<'a> {
    decoder: &'a CaptionDecoder,
    image: Tensor<3>,
}

impl NextToken for Prefixes<'_> {
    type Error = std::convert::Infallible;

    fn next_log_probs(
        &mut self,
        prefixes: &[Vec<u32>],
        _parents: Option<&[usize]>,
    ) -> Result<Vec<Vec<f32>>, Self::Error> {
        let [images, n, d] = self.image.dims();
        let image = if images == prefixes.len() {
            self.image.clone()
        } else {
            self.image.clone().expand([prefixes.len(), n, d])
        };
        Ok(self.decoder.next_log_probs(prefixes, image))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn shared_image_keys_give_the_same_logits_as_repeated_images() {
        let device = Device::flex();
        let decoder = CaptionDecoderConfig::new(20, 12)
            .with_d_model(16)
            .with_heads(2)
            .with_d_intermediate(32)
            .init(&device);
        let image = Tensor::<3>::random([2, 5, 12], Distribution::Normal(0.0, 1.0), &device);
        let ids =
            Tensor::<2, Int>::from_data(TensorData::from([[2i64, 5, 7], [2, 9, 4], [2, 3, 3]]), &device);
        let owner = Tensor::<1, Int>::from_data(TensorData::from([1i64, 0, 1]), &device);
        let repeated = decoder.forward(ids.clone(), image.clone().select(0, owner.clone()));
        let shared = decoder.forward_shared(ids, image, owner);
        let diff = (repeated - shared).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-5, "{diff}");
    }
}

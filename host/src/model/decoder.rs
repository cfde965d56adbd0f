//! Caption decoder: a causal transformer whose blocks also cross-attend to the image
//! tokens, with output logits tied to the token embeddings. Decoding is greedy or
//! beam search with a GNMT length penalty (Wu et al. 2016).

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Embedding, LayerNorm, LayerNormConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};

use super::attention::{causal_bias, Attention, AttentionConfig};
use super::bert::embedding;
use super::feed_forward::{FeedForward, FeedForwardConfig};
use edgevlm_shared::search::{self, Candidate, NextToken};

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
    /// Dropout on the embeddings and on each sub-layer's output before its residual
    /// sum, active only while training on an autodiff device. Optional so that configs
    /// saved before it existed still load (as no dropout).
    pub dropout: Option<f64>,
}

#[derive(Module, Debug)]
pub struct CaptionDecoder {
    pub token_embedding: Embedding,
    pub position_embedding: Embedding,
    pub layers: Vec<DecoderLayer>,
    pub norm: LayerNorm,
    max_len: usize,
    dropout: f64,
}

#[derive(Module, Debug)]
pub struct DecoderLayer {
    pub self_norm: LayerNorm,
    pub self_attention: Attention,
    pub cross_norm: LayerNorm,
    pub cross_attention: Attention,
    pub ff_norm: LayerNorm,
    pub feed_forward: FeedForward,
    dropout: f64,
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
                    dropout: self.dropout.unwrap_or(0.0),
                })
                .collect(),
            norm: LayerNormConfig::new(d).init(device),
            max_len: self.max_len,
            dropout: self.dropout.unwrap_or(0.0),
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
        let mut x = self.embed(ids, 0);
        let causal = causal_bias(len, &x.device());
        for layer in &self.layers {
            let (mut k, mut v) = layer.cross_attention.project_context(image.clone());
            if let Some(owner) = &owner {
                k = k.select(0, owner.clone());
                v = v.select(0, owner.clone());
            }
            x = layer.forward(x, None, (k, v), Some(causal.clone())).0;
        }
        let h = self.norm.forward(x);
        let [_, _, d] = h.dims();
        let vocab = self.token_embedding.weight.val().dims()[0];
        self.logits(h.reshape([batch * len, d]))
            .reshape([batch, len, vocab])
    }

    /// Token plus position embeddings of `ids` placed from position `start` on.
    fn embed(&self, ids: Tensor<2, Int>, start: usize) -> Tensor<3> {
        let [rows, len] = ids.dims();
        let start = start as i64;
        let positions = Tensor::<1, Int>::arange(start..start + len as i64, &ids.device())
            .reshape([1, len])
            .expand([rows, len]);
        dropout(
            self.token_embedding.forward(ids) + self.position_embedding.forward(positions),
            self.dropout,
        )
    }

    /// Output logits tied to the token embeddings: `[n, d_model]` → `[n, vocab]`.
    fn logits(&self, h: Tensor<2>) -> Tensor<2> {
        h.matmul(self.token_embedding.weight.val().transpose())
    }

    /// A cache for decoding captions of `image` (`[images, n, d_image]`): each layer's
    /// cross-attention keys and values, projected once.
    pub fn cache(&self, image: Tensor<3>) -> DecoderCache {
        DecoderCache {
            image: self
                .layers
                .iter()
                .map(|l| l.cross_attention.project_context(image.clone()))
                .collect(),
            past: Vec::new(),
            fed: 0,
        }
    }

    /// Feeds `ids` after the tokens already in `cache` and returns the logits of the
    /// next token after the last one: `[rows, vocab]`. Row `r` reads image `owner[r]`.
    /// Only the new positions are computed, so a caption of `L` tokens costs `L`
    /// single-token steps instead of `L` whole prefixes.
    ///
    /// # Shapes
    /// - ids: `[rows, new]`; owner: `[rows]`
    pub fn extend(&self, ids: Tensor<2, Int>, owner: Tensor<1, Int>, cache: &mut DecoderCache) -> Tensor<2> {
        let [rows, new] = ids.dims();
        let device = ids.device();
        let mut x = self.embed(ids, cache.fed);
        let bias = (new > 1).then(|| {
            let causal = causal_bias(new, &device);
            match cache.fed {
                0 => causal,
                fed => Tensor::cat(vec![Tensor::zeros([1, 1, new, fed], &device), causal], 3),
            }
        });
        for (i, layer) in self.layers.iter().enumerate() {
            let (k, v) = &cache.image[i];
            let image = (
                k.clone().select(0, owner.clone()),
                v.clone().select(0, owner.clone()),
            );
            let (next, keys) = layer.forward(x, cache.past.get(i), image, bias.clone());
            x = next;
            if i < cache.past.len() {
                cache.past[i] = keys;
            } else {
                cache.past.push(keys);
            }
        }
        cache.fed += new;
        let [_, _, d] = x.dims();
        self.logits(self.norm.forward(x.narrow(1, new - 1, 1).reshape([rows, d])))
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
            search::greedy(&mut Cached::new(self, image), batch, bos, eos, max_len)
        } else {
            (0..batch)
                .map(|i| {
                    let one = image.clone().narrow(0, i, 1).reshape([1, n, d]);
                    search::beam(&mut Cached::new(self, one), bos, eos, max_len, opts)
                })
                .collect()
        };
        match result {
            Ok(seqs) => seqs,
            Err(never) => match never {},
        }
    }
}

impl CaptionDecoder {
    /// Every caption a beam search of `opts.beam_size` finishes for each image, best
    /// score first (see [`search::beam_candidates`]), for reranking.
    ///
    /// # Shapes
    /// - image: `[batch, n, d_image]`
    pub fn candidates(
        &self,
        image: Tensor<3>,
        bos: u32,
        eos: u32,
        opts: DecodeOptions,
    ) -> Vec<Vec<Candidate>> {
        let max_len = opts.max_len.min(self.max_len);
        let [batch, n, d] = image.dims();
        (0..batch)
            .map(|i| {
                let one = image.clone().narrow(0, i, 1).reshape([1, n, d]);
                match search::beam_candidates(&mut Cached::new(self, one), bos, eos, max_len, opts) {
                    Ok(found) => found,
                    Err(never) => match never {},
                }
            })
            .collect()
    }
}

impl DecoderLayer {
    /// One block: self-attention over the `past` keys and values followed by `x`'s
    /// own (masked by `bias`), cross-attention to one image's keys and values per row,
    /// feed-forward. Returns the new states and the self-attention keys and values of
    /// `past` and `x` together.
    ///
    /// # Shapes
    /// - x: `[rows, new, d]`; past and image: `[rows, heads, k_len, d_head]`
    fn forward(
        &self,
        x: Tensor<3>,
        past: Option<&(Tensor<4>, Tensor<4>)>,
        image: (Tensor<4>, Tensor<4>),
        bias: Option<Tensor<4>>,
    ) -> (Tensor<3>, (Tensor<4>, Tensor<4>)) {
        let h = self.self_norm.forward(x.clone());
        let (k_new, v_new) = self.self_attention.project_context(h.clone());
        let (k, v) = match past {
            Some((k, v)) => (
                Tensor::cat(vec![k.clone(), k_new], 2),
                Tensor::cat(vec![v.clone(), v_new], 2),
            ),
            None => (k_new, v_new),
        };
        let p = self.dropout;
        let x = x + dropout(
            self.self_attention
                .forward_projected(h, k.clone(), v.clone(), bias),
            p,
        );
        let h = self.cross_norm.forward(x.clone());
        let x = x + dropout(
            self.cross_attention.forward_projected(h, image.0, image.1, None),
            p,
        );
        let x = x.clone() + dropout(self.feed_forward.forward(self.ff_norm.forward(x)), p);
        (x, (k, v))
    }
}

/// Inverted dropout, only while training: on an autodiff device with `prob > 0`.
/// A plain probability rather than burn's `Dropout` module, so the saved records of
/// decoders trained before dropout existed still load.
fn dropout<const D: usize>(x: Tensor<D>, prob: f64) -> Tensor<D> {
    if prob <= 0.0 || !x.device().is_autodiff() {
        return x;
    }
    let keep = 1.0 - prob;
    let mask = x.random_like(Distribution::Bernoulli(keep));
    (x * mask).div_scalar(keep)
}

/// Keys and values computed so far while decoding (see [`CaptionDecoder::extend`]).
#[derive(Clone)]
pub struct DecoderCache {
    /// Per layer, the image's cross-attention keys and values `[images, heads, n, d_head]`.
    image: Vec<(Tensor<4>, Tensor<4>)>,
    /// Per layer, self-attention keys and values of the fed tokens `[rows, heads, fed, d_head]`.
    past: Vec<(Tensor<4>, Tensor<4>)>,
    fed: usize,
}

impl DecoderCache {
    /// Keeps, for each new row, the cached tokens of row `parents[r]`.
    pub fn reorder(&mut self, parents: Tensor<1, Int>) {
        for (k, v) in &mut self.past {
            *k = k.clone().select(0, parents.clone());
            *v = v.clone().select(0, parents.clone());
        }
    }
}

/// The decoder behind the shared search, one cached step per call.
struct Cached<'a> {
    decoder: &'a CaptionDecoder,
    cache: DecoderCache,
    images: usize,
}

impl<'a> Cached<'a> {
    fn new(decoder: &'a CaptionDecoder, image: Tensor<3>) -> Self {
        Self {
            images: image.dims()[0],
            cache: decoder.cache(image),
            decoder,
        }
    }
}

impl NextToken for Cached<'_> {
    type Error = std::convert::Infallible;

    fn next_log_probs(
        &mut self,
        prefixes: &[Vec<u32>],
        parents: Option<&[usize]>,
    ) -> Result<Vec<Vec<f32>>, Self::Error> {
        let rows = prefixes.len();
        let device = self.cache.image[0].0.device();
        let index = |values: Vec<i64>| Tensor::<1, Int>::from_data(TensorData::new(values, [rows]), &device);
        let fresh: Vec<u32> = match parents {
            // The search restarted or a step's parents are unknown: feed whole prefixes.
            None => {
                self.cache.past.clear();
                self.cache.fed = 0;
                prefixes.iter().flatten().copied().collect()
            }
            Some(parents) => {
                self.cache
                    .reorder(index(parents.iter().map(|&p| p as i64).collect()));
                prefixes.iter().map(|p| p.last().copied().unwrap_or(0)).collect()
            }
        };
        let new = fresh.len() / rows;
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(fresh.into_iter().map(i64::from).collect(), [rows, new]),
            &device,
        );
        // One image shared by all beams, or one image per row (greedy).
        let owner = index(if self.images == 1 {
            vec![0; rows]
        } else {
            (0..rows as i64).collect()
        });
        let logits = self.decoder.extend(ids, owner, &mut self.cache);
        let vocab = logits.dims()[1];
        let values = log_softmax(logits, 1)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        Ok(values.chunks(vocab).map(<[f32]>::to_vec).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// A decoder over 20 words and 12-wide image tokens, small enough for exact checks.
    fn small_config() -> CaptionDecoderConfig {
        CaptionDecoderConfig::new(20, 12)
            .with_d_model(16)
            .with_heads(2)
            .with_d_intermediate(32)
    }

    fn small_decoder(device: &Device) -> CaptionDecoder {
        small_config().init(device)
    }

    #[test]
    fn configs_saved_without_dropout_load_as_no_dropout() {
        let mut json: serde_json::Value =
            serde_json::to_value(small_config().with_dropout(Some(0.2))).unwrap();
        assert_eq!(json["dropout"], 0.2);
        json.as_object_mut().unwrap().remove("dropout");
        let old: CaptionDecoderConfig = serde_json::from_value(json).unwrap();
        assert_eq!(old.dropout, None);
        assert_eq!(old.d_model, 16);
    }

    #[test]
    fn shared_image_keys_give_the_same_logits_as_repeated_images() {
        let device = Device::flex();
        let decoder = small_decoder(&device);
        let image = Tensor::<3>::random([2, 5, 12], Distribution::Normal(0.0, 1.0), &device);
        let ids =
            Tensor::<2, Int>::from_data(TensorData::from([[2i64, 5, 7], [2, 9, 4], [2, 3, 3]]), &device);
        let owner = Tensor::<1, Int>::from_data(TensorData::from([1i64, 0, 1]), &device);
        let repeated = decoder.forward(ids.clone(), image.clone().select(0, owner.clone()));
        let shared = decoder.forward_shared(ids, image, owner);
        let diff = (repeated - shared).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn cached_steps_give_the_logits_of_whole_prefixes() {
        let device = Device::flex();
        let decoder = small_decoder(&device);
        let image = Tensor::<3>::random([2, 5, 12], Distribution::Normal(0.0, 1.0), &device);
        let ids = |rows: [[i64; 3]; 2]| Tensor::<2, Int>::from_data(TensorData::from(rows), &device);
        let index = |v: [i64; 2]| Tensor::<1, Int>::from_data(TensorData::from(v), &device);
        let last = |logits: Tensor<3>| {
            let [rows, len, vocab] = logits.dims();
            logits.narrow(1, len - 1, 1).reshape([rows, vocab])
        };
        let close = |a: Tensor<2>, b: Tensor<2>| {
            let diff = (a - b).abs().max().into_scalar::<f32>();
            assert!(diff < 1e-4, "{diff}");
        };

        let mut cache = decoder.cache(image.clone());
        let prefix = ids([[2, 5, 7], [2, 9, 4]]);
        let stepped = decoder.extend(prefix.clone(), index([0, 1]), &mut cache);
        close(stepped, last(decoder.forward(prefix, image.clone())));

        // Both beams now continue row 1 (image 1), each with its own next token.
        cache.reorder(index([1, 1]));
        let next = Tensor::<2, Int>::from_data(TensorData::from([[6i64], [8]]), &device);
        let stepped = decoder.extend(next, index([1, 1]), &mut cache);
        let whole = Tensor::<2, Int>::from_data(TensorData::from([[2i64, 9, 4, 6], [2, 9, 4, 8]]), &device);
        close(
            stepped,
            last(decoder.forward(whole, image.select(0, index([1, 1])))),
        );
    }
}

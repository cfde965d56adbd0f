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

/// Decoding settings.
#[derive(Debug, Clone, Copy)]
pub struct DecodeOptions {
    /// 1 = greedy.
    pub beam_size: usize,
    /// GNMT length penalty exponent; 0 = none.
    pub length_penalty: f32,
    pub max_len: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            beam_size: 1,
            length_penalty: 0.6,
            max_len: 40,
        }
    }
}

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
            x = x + layer.cross_attention.forward(h, image.clone(), None);
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

    /// Generates token ids (without [CLS]/[SEP]) for each image.
    ///
    /// # Shapes
    /// - image: `[batch, n, d_image]`
    pub fn generate(&self, image: Tensor<3>, bos: u32, eos: u32, opts: DecodeOptions) -> Vec<Vec<u32>> {
        let max_len = opts.max_len.min(self.max_len);
        if opts.beam_size <= 1 {
            return self.greedy(image, bos, eos, max_len);
        }
        let [batch, n, d] = image.dims();
        (0..batch)
            .map(|i| {
                let one = image.clone().narrow(0, i, 1).reshape([1, n, d]);
                self.beam(one, bos, eos, max_len, opts)
            })
            .collect()
    }

    fn greedy(&self, image: Tensor<3>, bos: u32, eos: u32, max_len: usize) -> Vec<Vec<u32>> {
        let batch = image.dims()[0];
        let mut seqs = vec![vec![bos]; batch];
        let mut done = vec![false; batch];
        while seqs[0].len() < max_len && done.iter().any(|d| !d) {
            let log_probs = self.next_log_probs(&seqs, image.clone());
            for (i, lp) in log_probs.iter().enumerate() {
                let next = if done[i] { eos } else { argmax(lp) };
                done[i] |= next == eos;
                seqs[i].push(next);
            }
        }
        seqs.into_iter().map(|s| strip(&s, eos)).collect()
    }

    fn beam(&self, image: Tensor<3>, bos: u32, eos: u32, max_len: usize, opts: DecodeOptions) -> Vec<u32> {
        let [_, n, d] = image.dims();
        let penalty = |len: usize| ((5.0 + len as f32) / 6.0).powf(opts.length_penalty);
        let mut beams: Vec<(Vec<u32>, f32)> = vec![(vec![bos], 0.0)];
        let mut finished: Vec<(Vec<u32>, f32)> = Vec::new();
        while !beams.is_empty() && beams[0].0.len() < max_len {
            let prefixes: Vec<Vec<u32>> = beams.iter().map(|b| b.0.clone()).collect();
            let images = image.clone().expand([prefixes.len(), n, d]);
            let log_probs = self.next_log_probs(&prefixes, images);
            let mut candidates: Vec<(Vec<u32>, f32)> = Vec::new();
            for ((seq, score), lp) in beams.iter().zip(&log_probs) {
                for token in top_k(lp, opts.beam_size) {
                    let mut next = seq.clone();
                    next.push(token);
                    candidates.push((next, score + lp[token as usize]));
                }
            }
            candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
            beams.clear();
            for (seq, score) in candidates {
                if beams.len() >= opts.beam_size {
                    break;
                }
                if seq.last() == Some(&eos) {
                    let words = seq.len() - 2;
                    finished.push((seq, score / penalty(words)));
                } else {
                    beams.push((seq, score));
                }
            }
            let best_done = finished.iter().map(|f| f.1).fold(f32::NEG_INFINITY, f32::max);
            // No live beam can still beat the best finished one once the penalty stops helping.
            if finished.len() >= opts.beam_size && beams.iter().all(|b| b.1 / penalty(max_len) < best_done) {
                break;
            }
        }
        for (seq, score) in beams {
            let words = seq.len() - 1;
            finished.push((seq, score / penalty(words)));
        }
        finished
            .into_iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(seq, _)| strip(&seq, eos))
            .unwrap_or_default()
    }
}

fn argmax(values: &[f32]) -> u32 {
    values
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i as u32)
        .unwrap_or(0)
}

fn top_k(values: &[f32], k: usize) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..values.len() as u32).collect();
    idx.sort_by(|&a, &b| values[b as usize].total_cmp(&values[a as usize]));
    idx.truncate(k);
    idx
}

/// Drops the leading [CLS] and everything from the first [SEP].
fn strip(seq: &[u32], eos: u32) -> Vec<u32> {
    seq.iter().skip(1).take_while(|&&t| t != eos).copied().collect()
}

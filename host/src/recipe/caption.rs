//! Caption-decoder fine-tuning on the cached image tokens: every caption of every
//! image of a batch is a teacher-forced sequence (the image tokens are projected
//! once per image), and dev CIDEr-D after each epoch drives early stopping.

use burn::tensor::{Device, Int, Tensor, TensorData};
use edgevlm_shared::TextTokenizer;

use super::cache::ImageFeatures;
use crate::eval::metrics;
use crate::model::photo::PhotoVlm;
use crate::model::DecodeOptions;
use crate::train::error::{Result, TrainError};
use crate::train::objectives::smoothed_sequence_cross_entropy;
use crate::train::trainer::Losses;

/// Each image's captions, tokenized with the decoder's vocabulary.
pub struct CaptionSet<'a> {
    pub images: &'a ImageFeatures,
    pub captions: Vec<Vec<Vec<u32>>>,
    pub pad: u32,
}

impl<'a> CaptionSet<'a> {
    pub fn new(images: &'a ImageFeatures, texts: &[Vec<String>], tokenizer: &TextTokenizer) -> Result<Self> {
        let captions = texts
            .iter()
            .map(|caps| {
                caps.iter()
                    .map(|c| tokenizer.encode(c))
                    .collect::<std::result::Result<Vec<_>, _>>()
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Self {
            images,
            captions,
            pad: tokenizer.special_ids().pad,
        })
    }
}

/// Length groups a batch's captions are split into, so that short captions are
/// not padded to the longest one of the whole batch.
const LENGTH_GROUPS: usize = 4;

/// Next-token cross-entropy (label-smoothed by `smoothing`) of all captions of the
/// images `batch`.
pub fn step(model: &PhotoVlm, set: &CaptionSet, batch: &[usize], smoothing: f32, device: &Device) -> Losses {
    let (tokens, width) = (set.images.header.tokens, set.images.header.width);
    let image = model.image_tokens(Tensor::<3>::from_data(
        TensorData::new(set.images.tokens(batch), [batch.len(), tokens, width]),
        device,
    ));
    let mut rows: Vec<(usize, &Vec<u32>)> = Vec::new();
    for (b, &i) in batch.iter().enumerate() {
        for caption in &set.captions[i] {
            rows.push((b, caption));
        }
    }
    rows.sort_by_key(|(_, r)| r.len());
    let per_group = rows.len().div_ceil(LENGTH_GROUPS);
    let predicted: usize = rows.iter().map(|(_, r)| r.len().saturating_sub(1)).sum();
    let mut total: Option<Tensor<1>> = None;
    for group in rows.chunks(per_group.max(1)) {
        let n = group.len();
        let len = group.iter().map(|(_, r)| r.len()).max().unwrap_or(2).max(2);
        let (mut inputs, mut targets, mut weights) = (Vec::new(), Vec::new(), Vec::new());
        for (_, row) in group {
            for p in 0..len - 1 {
                inputs.push(row.get(p).copied().unwrap_or(set.pad) as i64);
                let next = row.get(p + 1).copied();
                targets.push(next.unwrap_or(set.pad) as i64);
                weights.push(if next.is_some() { 1.0 } else { 0.0 });
            }
        }
        let group_tokens: f32 = weights.iter().sum();
        let owner: Vec<i64> = group.iter().map(|(b, _)| *b as i64).collect();
        let inputs = Tensor::<2, Int>::from_data(TensorData::new(inputs, [n, len - 1]), device);
        let owner = Tensor::<1, Int>::from_data(TensorData::new(owner, [n]), device);
        let logits = model.decoder.forward_shared(inputs, image.clone(), owner);
        // Each group's mean, weighted by its share of the predicted tokens.
        let loss = smoothed_sequence_cross_entropy(logits, &targets, &weights, smoothing)
            .mul_scalar(group_tokens / predicted.max(1) as f32);
        total = Some(match total {
            Some(t) => t + loss,
            None => loss,
        });
    }
    let loss = total.unwrap_or_else(|| Tensor::zeros([1], device));
    Losses {
        total: loss.clone(),
        parts: vec![("caption_loss", loss)],
    }
}

/// Captions for cached images, `batch` images at a time.
pub fn generate(
    model: &PhotoVlm,
    images: &ImageFeatures,
    indices: &[usize],
    tokenizer: &TextTokenizer,
    opts: DecodeOptions,
    device: &Device,
) -> Result<Vec<String>> {
    let (tokens, width) = (images.header.tokens, images.header.width);
    let special = tokenizer.special_ids();
    let mut out = Vec::with_capacity(indices.len());
    for chunk in indices.chunks(100) {
        let image = model.image_tokens(Tensor::<3>::from_data(
            TensorData::new(images.tokens(chunk), [chunk.len(), tokens, width]),
            device,
        ));
        for ids in model.decoder.generate(image, special.cls, special.sep, opts) {
            out.push(tokenizer.decode(&ids)?);
        }
    }
    Ok(out)
}

/// Corpus BLEU-4 and CIDEr-D (x100) of captions against references.
pub fn scores(captions: &[String], references: &[Vec<String>]) -> Result<(f64, f64)> {
    let err = |e: metrics::MetricsError| TrainError::Invalid(format!("metric: {e}"));
    let bleu = metrics::corpus_bleu_from_text(captions, references).map_err(err)?;
    let cider = metrics::cider_d_from_text(captions, references).map_err(err)?;
    Ok((bleu.corpus[3] * 100.0, cider.corpus * 100.0))
}

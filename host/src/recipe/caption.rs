//! Caption-decoder fine-tuning on the cached image tokens: every caption of every
//! image of a batch is a teacher-forced sequence (the image tokens are projected
//! once per image), and dev CIDEr-D after each epoch drives early stopping.
//!
//! Augmentation: a training photo may be shown mirrored, through the cached tower
//! features of the flipped photo, with "left" and "right" swapped in its captions.

use burn::tensor::{Device, Int, Tensor, TensorData};
use edgevlm_shared::rng::SplitMix64;
use edgevlm_shared::TextTokenizer;

use crate::error::{Error, Result};
use crate::eval::metrics;
use crate::features::cache::ImageFeatures;
use crate::model::DecodeOptions;
use crate::model::EdgeVlm;
use crate::train::objectives::smoothed_sequence_cross_entropy;
use crate::train::trainer::Losses;

/// Each image's captions, tokenized with the decoder's vocabulary.
pub struct CaptionSet<'a> {
    pub images: &'a ImageFeatures,
    pub captions: Vec<Vec<Vec<u32>>>,
    /// The photos mirrored, when augmenting.
    pub mirrored: Option<Mirrored<'a>>,
    pub pad: u32,
}

/// The mirrored photos of a caption set: the tower's features of the flipped photos
/// and the captions with "left" and "right" swapped.
pub struct Mirrored<'a> {
    pub images: &'a ImageFeatures,
    pub captions: Vec<Vec<Vec<u32>>>,
}

fn encode_all(
    texts: &[Vec<String>],
    tokenizer: &TextTokenizer,
    edit: fn(&str) -> String,
) -> Result<Vec<Vec<Vec<u32>>>> {
    texts
        .iter()
        .map(|caps| caps.iter().map(|c| Ok(tokenizer.encode(&edit(c))?)).collect())
        .collect()
}

impl<'a> CaptionSet<'a> {
    pub fn new(images: &'a ImageFeatures, texts: &[Vec<String>], tokenizer: &TextTokenizer) -> Result<Self> {
        Ok(Self {
            images,
            captions: encode_all(texts, tokenizer, str::to_string)?,
            mirrored: None,
            pad: tokenizer.special_ids().pad,
        })
    }

    /// Lets batches show photos mirrored: `images` holds the flipped photos'
    /// features, `texts` the same captions as [`Self::new`] got.
    pub fn with_mirrored(
        mut self,
        images: &'a ImageFeatures,
        texts: &[Vec<String>],
        tokenizer: &TextTokenizer,
    ) -> Result<Self> {
        let captions = encode_all(texts, tokenizer, mirror_caption)?;
        self.mirrored = Some(Mirrored { images, captions });
        Ok(self)
    }
}

/// A caption of the mirrored image: the words "left" and "right" swapped (any
/// case), everything else unchanged.
pub fn mirror_caption(caption: &str) -> String {
    let mut out = String::with_capacity(caption.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let swapped = match word.to_lowercase().as_str() {
            "left" => Some("right"),
            "right" => Some("left"),
            _ => None,
        };
        match swapped {
            Some(s) if word.starts_with(|c: char| c.is_uppercase()) => {
                out.push_str(&s[..1].to_uppercase());
                out.push_str(&s[1..]);
            }
            Some(s) => out.push_str(s),
            None => out.push_str(word),
        }
        word.clear();
    };
    for c in caption.chars() {
        if c.is_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// How the caption stage regularises its training.
#[derive(Debug, Clone, Copy, Default)]
pub struct Augment {
    /// Label smoothing of the cross-entropy.
    pub label_smoothing: f32,
    /// Chance that an image of a batch is seen mirrored (when the set has mirrored
    /// features).
    pub mirror: f64,
}

/// Length groups a batch's captions are split into, so that short captions are
/// not padded to the longest one of the whole batch.
const LENGTH_GROUPS: usize = 4;

/// Next-token cross-entropy (label-smoothed) of all captions of the images
/// `batch`, each image mirrored with the chance `augment.mirror` drawn from `rng`.
pub fn step(
    model: &EdgeVlm,
    set: &CaptionSet,
    batch: &[usize],
    augment: Augment,
    rng: &mut SplitMix64,
    device: &Device,
) -> Losses {
    let (tokens, width) = (set.images.header.tokens, set.images.header.width);
    let mirrored: Vec<Option<&Mirrored>> = batch
        .iter()
        .map(|_| set.mirrored.as_ref().filter(|_| rng.unit() < augment.mirror))
        .collect();
    let values: Vec<f32> = batch
        .iter()
        .zip(&mirrored)
        .flat_map(|(&i, m)| m.map_or(set.images, |m| m.images).tokens(&[i]))
        .collect();
    let image = model.image_tokens(Tensor::<3>::from_data(
        TensorData::new(values, [batch.len(), tokens, width]),
        device,
    ));
    let smoothing = augment.label_smoothing;
    let mut rows: Vec<(usize, &Vec<u32>)> = Vec::new();
    for (b, &i) in batch.iter().enumerate() {
        for caption in &mirrored[b].map_or(&set.captions, |m| &m.captions)[i] {
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
    model: &EdgeVlm,
    images: &ImageFeatures,
    indices: &[usize],
    tokenizer: &TextTokenizer,
    opts: DecodeOptions,
    device: &Device,
) -> Result<Vec<String>> {
    let special = tokenizer.special_ids();
    let mut out = Vec::with_capacity(indices.len());
    for chunk in indices.chunks(100) {
        let image = model.image_tokens(images.token_tensor(chunk, device));
        for ids in model.decoder.generate(image, special.cls, special.sep, opts) {
            out.push(tokenizer.decode(&ids)?);
        }
    }
    Ok(out)
}

/// Corpus BLEU-4 and CIDEr-D (x100) of captions against references.
pub fn scores(captions: &[String], references: &[Vec<String>]) -> Result<(f64, f64)> {
    let err = |e: metrics::MetricsError| Error::Invalid(format!("metric: {e}"));
    let bleu = metrics::corpus_bleu_from_text(captions, references).map_err(err)?;
    let cider = metrics::cider_d_from_text(captions, references).map_err(err)?;
    Ok((bleu.corpus[3] * 100.0, cider.corpus * 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrored_captions_swap_left_and_right_only() {
        assert_eq!(
            mirror_caption("A dog on the left jumps right over a Left-handed man ."),
            "A dog on the right jumps left over a Right-handed man ."
        );
        assert_eq!(mirror_caption("Right : bright lefty"), "Left : bright lefty");
        assert_eq!(mirror_caption(""), "");
    }
}

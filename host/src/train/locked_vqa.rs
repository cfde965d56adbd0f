//! VQA fine-tuning of a model whose towers are locked (the photo preset): what the
//! towers give (the image tower's tokens per photo, the text tower's states per
//! distinct question) is computed once and cached ([`crate::features`]), and each
//! step trains only what reads it: the image adapter, the fusion and the VQA head.
//! A CPU run takes minutes, not the hours that running EfficientNet and MiniLM on
//! every step would.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};

use super::objectives::{count_loss, weighted_cross_entropy};
use super::steps::weighted_parts;
use super::tasks::answer_classes;
use super::trainer::Losses;
use crate::data::batcher::Batcher;
use crate::data::VqaRecord;
use crate::error::Result;
use crate::features::cache::{ImageFeatures, TextFeatures};
use crate::features::towers::Towers;
use crate::model::count::stated_count;
use crate::model::EdgeVlm;

/// The training questions on cached features.
pub struct CachedQuestions {
    pub images: ImageFeatures,
    pub questions: TextFeatures,
    /// (photo, question, answer class) per training item.
    pub items: Vec<(usize, usize, i64)>,
    /// The count each item's question and answer state, for the counting read-out's loss.
    pub counts: Vec<Option<usize>>,
}

/// Items are indices into [`CachedQuestions::items`]; features stay in memory.
pub struct ItemIndices;

impl Batcher for ItemIndices {
    type Batch = Vec<usize>;
    fn batch(&self, indices: &[usize]) -> crate::data::Result<Vec<usize>> {
        Ok(indices.to_vec())
    }
}

/// Features of the photos and distinct questions of `records` whose answer is in
/// `answers`, from `cache` when computed before; also how many were dropped for an
/// answer outside the vocabulary.
pub fn prepare(
    towers: &Towers,
    records: &[VqaRecord],
    answers: &[String],
    cache: &Path,
    device: &Device,
) -> Result<(CachedQuestions, usize)> {
    let class = answer_classes(answers);
    let (mut photos, mut photo_of) = (Vec::<PathBuf>::new(), HashMap::<&Path, usize>::new());
    let (mut texts, mut text_of) = (Vec::<String>::new(), HashMap::<&str, usize>::new());
    let (mut items, mut counts) = (Vec::new(), Vec::new());
    let mut dropped = 0;
    for r in records {
        let Some(&answer) = class.get(r.answer.as_str()) else {
            dropped += 1;
            continue;
        };
        let photo = *photo_of.entry(&r.image).or_insert_with(|| {
            photos.push(r.image.clone());
            photos.len() - 1
        });
        let text = *text_of.entry(&r.question).or_insert_with(|| {
            texts.push(r.question.clone());
            texts.len() - 1
        });
        items.push((photo, text, answer));
        counts.push(stated_count(&r.question, &r.answer));
    }
    let images = towers.cached_images(&photos, cache, "vqa", device)?;
    let questions = towers.cached_texts(&texts, cache, "vqa-questions", device)?;
    Ok((
        CachedQuestions {
            images,
            questions,
            items,
            counts,
        },
        dropped,
    ))
}

/// One step over the items `batch`: cross-entropy of the answers, plus
/// `count_weight` times the counting read-out's loss ([`count_loss`]) where a model
/// has one and the batch has questions that state a count.
pub fn step(
    model: &EdgeVlm,
    set: &CachedQuestions,
    batch: &[usize],
    count_weight: f32,
    device: &Device,
) -> Losses {
    let items: Vec<(usize, usize, i64)> = batch.iter().map(|&i| set.items[i]).collect();
    let photos: Vec<usize> = items.iter().map(|x| x.0).collect();
    let texts: Vec<usize> = items.iter().map(|x| x.1).collect();
    let answers: Vec<i64> = items.iter().map(|x| x.2).collect();
    let image_tokens = model.vqa_image_tokens(set.images.token_tensor(&photos, device));
    let (states, mask, len) = set.questions.states(&texts);
    let (n, width) = (texts.len(), set.questions.header.width);
    let states = Tensor::<3>::from_data(TensorData::new(states, [n, len, width]), device);
    let mask = Tensor::<2>::from_data(TensorData::new(mask, [n, len]), device);
    let counts: Vec<Option<usize>> = batch.iter().map(|&i| set.counts[i]).collect();
    let count = match count_weight > 0.0 {
        true => count_loss(model, image_tokens.clone(), states.clone(), mask.clone(), &counts),
        false => None,
    };
    let logits = model.answer_logits(image_tokens, states, mask);
    let loss = weighted_cross_entropy(logits, &answers, &vec![1.0; n]);
    weighted_parts(loss, [("count", count, count_weight)])
}

//! Clip captioning's training set: every clip's frames decoded once into the image
//! store, each caption tokenized once; a batch holds whole clips, frames in order.

use std::path::PathBuf;
use std::sync::Arc;

use burn::tensor::Device;
use edgevlm_shared::{PreprocessConfig, TextTokenizer};

use super::objectives;
use super::tasks::{store_for, TextImageBatch};
use super::trainer::Losses;
use crate::data::batcher::Batcher;
use crate::data::clips::{sample_frames, ClipRecord};
use crate::data::store::ImageStore;
use crate::error::Result;
use crate::model::EdgeVlm;

/// One (clip, caption) pair: the store indices of the clip's frames, in order.
#[derive(Debug, Clone)]
pub struct ClipItem {
    pub frames: Vec<usize>,
    pub ids: Vec<u32>,
}

pub struct ClipSet {
    pub store: Arc<ImageStore>,
    pub items: Vec<ClipItem>,
    pub tokenizer: TextTokenizer,
    /// Unknown words the captions hold (their tokens are `[UNK]`).
    pub unknown_tokens: usize,
}

/// Every (clip, caption) pair, each clip read as `frames` frames ([`sample_frames`]).
pub fn clip_set(
    records: &[ClipRecord],
    frames: usize,
    tokenizer: &TextTokenizer,
    preprocess: &PreprocessConfig,
) -> Result<ClipSet> {
    let sampled: Vec<Vec<PathBuf>> = records.iter().map(|r| sample_frames(&r.frames, frames)).collect();
    let paths: Vec<PathBuf> = sampled.iter().flatten().cloned().collect();
    let (store, index) = store_for(&paths, preprocess)?;
    let unk = tokenizer.special_ids().unk;
    let mut items = Vec::new();
    let mut unknown_tokens = 0;
    for (record, frames) in records.iter().zip(&sampled) {
        let frames: Vec<usize> = frames.iter().map(|p| index[p]).collect();
        for caption in record.captions.iter().filter(|c| !c.trim().is_empty()) {
            let ids = tokenizer.encode(caption)?;
            unknown_tokens += ids.iter().filter(|&&id| id == unk).count();
            items.push(ClipItem {
                frames: frames.clone(),
                ids,
            });
        }
    }
    Ok(ClipSet {
        store,
        items,
        tokenizer: tokenizer.clone(),
        unknown_tokens,
    })
}

impl Batcher for ClipSet {
    type Batch = TextImageBatch;

    /// `image_index` holds every clip's frames in turn; row `r` is clip `r`.
    fn batch(&self, indices: &[usize]) -> crate::data::Result<TextImageBatch> {
        let frames: Vec<usize> = indices
            .iter()
            .flat_map(|&i| self.items[i].frames.iter().copied())
            .collect();
        let rows: Vec<Vec<u32>> = indices.iter().map(|&i| self.items[i].ids.clone()).collect();
        let padded = self.tokenizer.pad(&rows, None);
        Ok(TextImageBatch {
            images: self.store.batch(&frames),
            image_size: self.store.config().image_size as usize,
            image_index: frames,
            ids: padded.ids,
            mask: padded.mask,
            batch: padded.batch,
            len: padded.seq_len,
            row_image: (0..indices.len()).collect(),
            labels: vec![0; indices.len()],
            image_questions: Vec::new(),
            focus: Vec::new(),
            counts: Vec::new(),
        })
    }
}

/// Next-token cross-entropy of each clip's caption over the clip's memory.
pub fn step(model: &EdgeVlm, batch: &TextImageBatch, device: &Device) -> Losses {
    let memory = model.encode_clip(batch.images(device));
    let loss = objectives::caption_loss_from(model, memory, &batch.ids, &batch.mask, batch.batch, batch.len);
    Losses {
        total: loss.clone(),
        parts: vec![("loss", loss)],
    }
}

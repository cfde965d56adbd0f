//! `edgevlm eval clip-caption`: captions of clips against their references (BLEU,
//! CIDEr-D), whether each caption tells what happened, and whether order matters:
//! every clip whose event reads differently backwards is captioned reversed too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use edgevlm_shared::synth::ClipEvent;
use serde::Serialize;

use super::metrics;
use super::predict::{no_clip_model, Predictor};
use super::tasks::metric_err;
use crate::data::clips::{self, sample_frames, ClipRecord};
use crate::data::store::store_for;
use crate::data::store::ImageStore;
use crate::error::Result;
use crate::model::DecodeOptions;

#[derive(Debug, Serialize)]
pub struct ClipCaptionReport {
    pub clips: usize,
    pub frames: usize,
    pub bleu: [f64; 4],
    pub cider_d: f64,
    pub beam_size: usize,
    /// Clips whose caption tells their event (object and what it did), in %, by event.
    pub event_told: BTreeMap<String, f64>,
    pub reversed: Option<ReversalReport>,
    pub examples: Vec<ClipExample>,
}

/// Clips played backwards, over those whose event depends on the direction.
#[derive(Debug, Serialize)]
pub struct ReversalReport {
    pub clips: usize,
    /// The caption of the reversed clip differs from the forward one, in %.
    pub changed: f64,
    /// The reversed clip's caption tells the opposite event, in %.
    pub opposite_told: f64,
}

#[derive(Debug, Serialize)]
pub struct ClipExample {
    pub clip: String,
    pub caption: String,
    pub reversed: Option<String>,
    pub references: Vec<String>,
}

/// Decodes each clip's frames (`frames` of them, spread over the clip) once.
fn decode_clips(
    records: &[ClipRecord],
    frames: usize,
    model: &dyn Predictor,
) -> Result<(ImageStore, Vec<Vec<usize>>)> {
    let sampled: Vec<Vec<PathBuf>> = records.iter().map(|r| sample_frames(&r.frames, frames)).collect();
    let paths: Vec<PathBuf> = sampled.iter().flatten().cloned().collect();
    let (store, index) = store_for(&paths, model.preprocess())?;
    let store = std::sync::Arc::try_unwrap(store)
        .ok()
        .expect("store not shared yet");
    let clips = sampled
        .iter()
        .map(|c| c.iter().map(|p| index[p]).collect())
        .collect();
    Ok((store, clips))
}

pub fn clip_caption(model: &dyn Predictor, data: &Path, opts: DecodeOptions) -> Result<ClipCaptionReport> {
    let frames = model.clip_frames().ok_or_else(no_clip_model)?;
    let records = clips::read(data)?;
    let (store, clips) = decode_clips(&records, frames, model)?;
    let generated = model.clip_captions(&store, &clips, opts)?;
    let references: Vec<Vec<String>> = records.iter().map(|r| r.captions.clone()).collect();
    let bleu = metrics::corpus_bleu_from_text(&generated, &references).map_err(metric_err)?;
    let cider = metrics::cider_d_from_text(&generated, &references).map_err(metric_err)?;

    let mut told: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (record, caption) in records.iter().zip(&generated) {
        if let Some(event) = &record.event {
            for key in [event.kind(), "all"] {
                let entry = told.entry(key.to_string()).or_default();
                entry.0 += usize::from(event.told_by(caption));
                entry.1 += 1;
            }
        }
    }
    let directed: Vec<usize> = (0..records.len())
        .filter(|&i| {
            records[i]
                .event
                .as_ref()
                .is_some_and(ClipEvent::depends_on_direction)
        })
        .collect();
    let mut reversed_captions: BTreeMap<usize, String> = BTreeMap::new();
    let reversed = if directed.is_empty() {
        None
    } else {
        let backwards: Vec<Vec<usize>> = directed
            .iter()
            .map(|&i| clips[i].iter().rev().copied().collect())
            .collect();
        let captions = model.clip_captions(&store, &backwards, opts)?;
        let (mut changed, mut opposite) = (0, 0);
        for (&i, caption) in directed.iter().zip(captions) {
            changed += usize::from(caption != generated[i]);
            if let Some(event) = &records[i].event {
                opposite += usize::from(event.opposite(frames).told_by(&caption));
            }
            reversed_captions.insert(i, caption);
        }
        let percent = |n: usize| 100.0 * n as f64 / directed.len() as f64;
        Some(ReversalReport {
            clips: directed.len(),
            changed: percent(changed),
            opposite_told: percent(opposite),
        })
    };
    Ok(ClipCaptionReport {
        clips: records.len(),
        frames,
        bleu: bleu.corpus.map(|b| b * 100.0),
        cider_d: cider.corpus * 100.0,
        beam_size: opts.beam_size,
        event_told: told
            .into_iter()
            .map(|(k, (hit, n))| (k, 100.0 * hit as f64 / n as f64))
            .collect(),
        reversed,
        examples: records
            .iter()
            .zip(&generated)
            .enumerate()
            .take(10)
            .map(|(i, (r, c))| ClipExample {
                clip: r.clip.clone(),
                caption: c.clone(),
                reversed: reversed_captions.get(&i).cloned(),
                references: r.captions.clone(),
            })
            .collect(),
    })
}

/// The caption of one clip given as frame files (a folder's, in name order, or
/// listed), read as the model's frame count spread over them.
pub fn caption_frames(
    model: &dyn Predictor,
    inputs: &[PathBuf],
    opts: DecodeOptions,
) -> Result<(String, usize)> {
    let frames = model.clip_frames().ok_or_else(no_clip_model)?;
    let given = clips::frame_paths(inputs)?;
    let record = ClipRecord {
        clip: String::new(),
        frames: given.clone(),
        captions: Vec::new(),
        event: None,
    };
    let (store, clips) = decode_clips(std::slice::from_ref(&record), frames, model)?;
    let caption = model
        .clip_captions(&store, &clips, opts)?
        .pop()
        .unwrap_or_default();
    Ok((caption, given.len()))
}

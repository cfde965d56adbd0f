//! The recipe's stages: resumable run folders, the dev judge that early-stops the
//! decoder stages, and the dev numbers each stage logs.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use edgevlm_shared::rng::SplitMix64;
use edgevlm_shared::TextTokenizer;
use serde::Serialize;

use super::{caption, RecipeArgs, CAPTION_MAX_LEN};
use crate::data::batcher::Batcher;
use crate::error::{Error, Result};
use crate::eval::metrics;
use crate::features::cache::{ImageFeatures, TextFeatures};
use crate::features::towers;
use crate::model::weights::load_model;
use crate::model::DecodeOptions;
use crate::model::{EdgeVlm, EdgeVlmConfig};
use crate::train::config::TrainConfig;
use crate::train::trainer::{fit, Fit, Flow};

/// Items are image indices; a batch is just their list (features are in memory).
pub(super) struct Indices;

impl Batcher for Indices {
    type Batch = Vec<usize>;
    fn batch(&self, indices: &[usize]) -> crate::data::Result<Vec<usize>> {
        Ok(indices.to_vec())
    }
}

/// Dev numbers of one stage.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct StageScores {
    pub stage: String,
    pub step: usize,
    pub image_to_text: [f64; 3],
    pub text_to_image: [f64; 3],
    pub bleu4: Option<f64>,
    pub cider_d: Option<f64>,
}

/// Image→text and text→image R@1/5/10 of the ITC embeddings of a cached split.
pub(super) fn retrieval(
    model: &EdgeVlm,
    images: &ImageFeatures,
    texts: &TextFeatures,
    owner: &[Vec<usize>],
    device: &Device,
) -> Result<([f64; 3], [f64; 3])> {
    use burn::tensor::{Tensor, TensorData};
    let all_images: Vec<usize> = (0..images.len()).collect();
    let all_texts: Vec<usize> = (0..texts.len()).collect();
    let dt = texts.header.width;
    let img = model.itc.embed_image(images.pooled_tensor(&all_images, device));
    let txt = model.itc.embed_text(Tensor::from_data(
        TensorData::new(texts.sentences(&all_texts), [all_texts.len(), dt]),
        device,
    ));
    let sims = towers::floats(img.matmul(txt.transpose()).into_data())?;
    let rows: Vec<Vec<f32>> = sims.chunks(texts.len()).map(<[f32]>::to_vec).collect();
    let mut text_owner = vec![0; texts.len()];
    for (i, caps) in owner.iter().enumerate() {
        for &t in caps {
            text_owner[t] = i;
        }
    }
    let r =
        metrics::retrieval_recall(&rows, &text_owner).map_err(|e| Error::Invalid(format!("metric: {e}")))?;
    Ok((
        [r.image_to_text.r1, r.image_to_text.r5, r.image_to_text.r10],
        [r.text_to_image.r1, r.text_to_image.r5, r.text_to_image.r10],
    ))
}

pub(super) fn append_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    writeln!(f, "{}", serde_json::to_string(value).expect("plain data")).map_err(|e| Error::io(path, e))
}

pub(super) fn read_scores(path: &Path) -> Vec<StageScores> {
    std::fs::read_to_string(path)
        .map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A resumable stage's run folder, training settings and progress-bar label.
pub(super) struct Stage {
    pub dir: PathBuf,
    pub cfg: TrainConfig,
    pub label: &'static str,
}

impl Stage {
    /// A decoder stage in `OUT/label/`: the fusion stays frozen, a checkpoint and a
    /// dev judgement after every epoch of `images / batch` steps.
    pub fn decoder(
        args: &RecipeArgs,
        label: &'static str,
        images: usize,
        batch: usize,
        epochs: usize,
    ) -> Self {
        let cfg = TrainConfig::new()
            .with_batch_size(batch)
            .with_epochs(epochs)
            .with_seed(args.seed)
            .with_checkpoint_every((images / batch).max(1))
            .with_weight_decay(0.01)
            .with_freeze(vec!["fusion".into()]);
        Self {
            dir: args.out.join(label),
            cfg,
            label,
        }
    }

    /// Peak learning rate and warm-up share.
    pub fn lr(mut self, lr: f64, warmup: f64) -> Self {
        self.cfg = self.cfg.with_lr(lr).with_warmup(warmup);
        self
    }
}

/// Dev captioning: greedy captions of the dev images scored against their references.
pub(super) struct DevJudge<'a> {
    pub images: &'a ImageFeatures,
    pub references: &'a [Vec<String>],
    pub tokenizer: &'a TextTokenizer,
    pub patience: usize,
    pub quiet: bool,
}

impl DevJudge<'_> {
    /// Dev BLEU-4 and CIDEr-D of greedy captions, and the first caption.
    fn score(&self, model: &EdgeVlm, device: &Device) -> Result<(f64, f64, String)> {
        let greedy = DecodeOptions {
            beam_size: 1,
            max_len: CAPTION_MAX_LEN,
            ..Default::default()
        };
        let indices: Vec<usize> = (0..self.images.len()).collect();
        let captions = caption::generate(model, self.images, &indices, self.tokenizer, greedy, device)?;
        let (bleu4, cider) = caption::scores(&captions, self.references)?;
        Ok((bleu4, cider, captions.into_iter().next().unwrap_or_default()))
    }
}

/// Runs a caption stage from `start`: dev CIDEr-D after every epoch (logged to
/// `DIR/dev.jsonl`), weights that beat `floor` and every earlier epoch kept in
/// `DIR/best.bpk`, stopped after `patience` epochs without a better one. Returns the
/// best weights and their dev CIDEr-D, or `None` when no epoch beat `floor`.
#[allow(clippy::too_many_arguments)]
pub(super) fn caption_stage<F>(
    stage: &Stage,
    start: EdgeVlm,
    floor: f64,
    judge: &DevJudge,
    args: &RecipeArgs,
    config: &EdgeVlmConfig,
    items: usize,
    step: F,
    device: &Device,
) -> Result<Option<(EdgeVlm, f64)>>
where
    F: FnMut(&EdgeVlm, &Vec<usize>, &mut SplitMix64) -> crate::train::trainer::Losses,
{
    let dir = &stage.dir;
    let (best_path, log) = (dir.join("best.bpk"), dir.join("dev.jsonl"));
    let per_epoch = (items / stage.cfg.batch_size).max(1);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    // A fresh stage forgets an earlier run's log and best weights.
    if !args.resume || crate::train::checkpoint::latest(dir).is_none() {
        let _ = std::fs::remove_file(&log);
        let _ = std::fs::remove_file(&best_path);
    }
    let logged_best = || {
        read_scores(&log)
            .into_iter()
            .map(|s| (s.cider_d.unwrap_or(f64::MIN), s.step))
            .fold((floor, 0), |a, b| if b.0 > a.0 { b } else { a })
    };
    if !(args.resume && dir.join("model.bpk").is_file()) {
        let best = std::cell::RefCell::new(logged_best());
        let report = |model: &EdgeVlm, step: usize| -> Result<Flow> {
            let (bleu4, cider, first) = judge.score(&model.valid(), &device.clone().inner())?;
            if !judge.quiet {
                eprintln!(
                    "{} step {step}: dev BLEU-4 {bleu4:.1} CIDEr-D {cider:.1} (greedy) | {first}",
                    stage.label
                );
            }
            append_json(
                &log,
                &StageScores {
                    stage: stage.label.into(),
                    step,
                    image_to_text: [0.0; 3],
                    text_to_image: [0.0; 3],
                    bleu4: Some(bleu4),
                    cider_d: Some(cider),
                },
            )?;
            let mut best = best.borrow_mut();
            if cider > best.0 {
                *best = (cider, step);
                crate::model::weights::save_model_atomic(model, &best_path)?;
            }
            let epochs_since = (step - best.1) / per_epoch;
            Ok(if epochs_since >= judge.patience {
                Flow::Stop
            } else {
                Flow::Continue
            })
        };
        let fit_args = Fit {
            dir,
            cfg: &stage.cfg,
            resume: args.resume,
            label: stage.label,
            device,
            quiet: args.quiet,
        };
        fit(fit_args, start, Indices, items, step, report)?;
    }
    if !best_path.is_file() {
        return Ok(None);
    }
    let model = load_model(&best_path, config.init(device))?;
    Ok(Some((model, logged_best().0)))
}

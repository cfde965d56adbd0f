//! `edgevlm finetune caption|vqa|retrieval`: continue from a pretrained model folder
//! (or, with `scratch`, from freshly initialised weights of the same architecture, for
//! measuring what pretraining is worth).

use std::path::PathBuf;

use burn::config::Config;
use burn::tensor::Device;

use super::calibration::recalibrate_grid;
use super::clips;
use super::config::TrainConfig;
use super::locked_vqa;
use super::steps;
use super::tasks::{answer_vocabulary, pair_set, question_set};
use super::trainer::{fit, fit_then, Fit, Flow};
use crate::data::{self, Format};
use crate::data::{datasets, dialogs};
use crate::error::{Error, Result};
use crate::features::towers::Towers;
use crate::model::saved::{save_meta, ModelMeta, SavedModel};
use crate::model::{EdgeVlm, VqaHeadKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Task {
    Caption,
    Vqa,
    /// Statements judged true or false (a VQA head with the two verdicts as answers).
    Reasoning,
    /// Dialog rounds: each question read with the dialog's earlier rounds.
    Dialog,
    Retrieval,
    /// Clips (`clips.jsonl`): a temporal encoder over the frames' image tokens,
    /// read by the caption decoder.
    ClipCaption,
}

pub struct FinetuneJob {
    pub task: Task,
    pub from: PathBuf,
    pub data: PathBuf,
    pub format: Option<Format>,
    pub split: Option<String>,
    pub out: PathBuf,
    /// Same architecture, fresh weights (the from-scratch baseline).
    pub scratch: bool,
    /// The head a VQA fine-tuning adds.
    pub vqa_head: VqaHeadKind,
    /// The VQA head reads zeros for the image (the question-only baseline).
    pub question_only: bool,
    /// The fused VQA head's counting read-out ([`crate::model::EdgeVlmConfig::vqa_count`]); a model
    /// that counts already keeps counting.
    pub count: bool,
    /// Feature cache for models whose towers are locked.
    pub cache: PathBuf,
    pub train: TrainConfig,
    pub resume: bool,
    pub quiet: bool,
}

pub fn run(job: &FinetuneJob, device: &Device) -> Result<EdgeVlm> {
    let meta = SavedModel::load_meta(&job.from)?;
    let (mut config, preprocess, tokenizer, mut answers) = (
        meta.config.clone(),
        meta.preprocess.clone(),
        meta.tokenizer.clone(),
        meta.answers.clone(),
    );
    let saved_meta = |config: &crate::model::EdgeVlmConfig, answers: &[String]| ModelMeta {
        config: config.clone(),
        answers: answers.to_vec(),
        ..meta.clone()
    };
    let train_path = job.out.join("train.json");
    let label = match job.task {
        Task::Caption => "caption",
        Task::Vqa => "vqa",
        Task::Reasoning => "reasoning",
        Task::Dialog => "dialog",
        Task::Retrieval => "retrieval",
        Task::ClipCaption => "clip-caption",
    };
    // Fresh weights (a scratch model, a new head) come from the seed.
    device.seed(job.train.seed);
    let start = |config: &crate::model::EdgeVlmConfig| -> Result<EdgeVlm> {
        let fresh = config.init(device);
        if job.scratch {
            Ok(fresh)
        } else {
            Ok(crate::model::weights::load_model(&job.from.join("model.bpk"), fresh)?.locked(config))
        }
    };
    let fit_args = |label| Fit {
        dir: &job.out,
        cfg: &job.train,
        resume: job.resume,
        label,
        device,
        quiet: job.quiet,
    };
    match job.task {
        Task::ClipCaption => {
            let records = data::clips::read(&job.data)?;
            // A clip model keeps its frame count; a new one reads clips as the data has them.
            let frames = config
                .temporal
                .as_ref()
                .map_or(records[0].frames.len(), |temporal| temporal.frames);
            if config.temporal.is_none() {
                config.temporal = Some(config.default_temporal(frames));
            }
            let model = start(&meta.config)?.with_temporal(&config, device);
            let set = clips::clip_set(&records, frames, meta.caption_tokenizer(), &preprocess)?;
            if set.unknown_tokens > 0 {
                eprintln!(
                    "warning: the captions hold {} word(s) the model's vocabulary lacks ([UNK]); \
                     pretrain on data with the clips beside it (`data synth --clips`)",
                    set.unknown_tokens
                );
            }
            save_meta(&job.out, &saved_meta(&config, &answers))?;
            job.train
                .save(&train_path)
                .map_err(|e| Error::io(&train_path, e))?;
            let len = set.items.len();
            fit(
                fit_args(label),
                model,
                set,
                len,
                |m, b, _| clips::step(m, b, device),
                |_, _| Ok(Flow::Continue),
            )
        }
        Task::Vqa | Task::Reasoning | Task::Dialog => {
            let records = match job.task {
                Task::Reasoning => datasets::statements(&job.data, job.split.as_deref())?.records,
                Task::Dialog => dialogs::rounds(&job.data, true)?
                    .into_iter()
                    .map(|r| r.record)
                    .collect(),
                _ => datasets::questions(&job.data, job.format, job.split.as_deref())?.records,
            };
            let mut base = config.clone();
            base.answers = answers.len();
            let model = start(&base)?;
            let wanted = if job.task == Task::Reasoning {
                datasets::VERDICTS.map(String::from).to_vec()
            } else {
                answer_vocabulary(&records)
            };
            // A model that answers already (VQA, then dialogs) keeps its head, and its
            // classes when they cover every new answer.
            let classes_kept =
                !job.scratch && !answers.is_empty() && wanted.iter().all(|a| answers.contains(a));
            if !classes_kept {
                answers = wanted;
            }
            config.answers = answers.len();
            let mut config = config.with_vqa_head_kind(job.vqa_head);
            // The VQA head takes over from the spatial MLM head; the model keeps no copy.
            config.spatial_mlm = false;
            if job.question_only && job.vqa_head == VqaHeadKind::Spatial {
                return Err(Error::Invalid(
                    "--question-only is a baseline of the fused VQA head, not the spatial one".into(),
                ));
            }
            if job.count && job.vqa_head == VqaHeadKind::Spatial {
                return Err(Error::Invalid(
                    "--count is a read-out of the fused VQA head; the spatial one counts over its cells"
                        .into(),
                ));
            }
            config.vqa_question_only = job.question_only;
            config.vqa_count |= job.count;
            let model = model.with_vqa_heads_keeping(&config, classes_kept, device);
            // Once the questions are ready: the run's folder is written only then.
            let prepared = |dropped: usize| -> Result<()> {
                if dropped > 0 {
                    eprintln!("warning: {dropped} question(s) have answers outside the vocabulary");
                }
                save_meta(&job.out, &saved_meta(&config, &answers))?;
                job.train.save(&train_path).map_err(|e| Error::io(&train_path, e))
            };
            if let Some(towers) = Towers::of_model(&model, &meta, &job.from)? {
                if job.vqa_head == VqaHeadKind::Spatial {
                    return Err(Error::Invalid(
                        "a model with locked pretrained towers answers with the fused VQA head \
                         (--vqa-head fused)"
                            .into(),
                    ));
                }
                let (set, dropped) = locked_vqa::prepare(&towers, &records, &answers, &job.cache, device)?;
                drop(towers);
                prepared(dropped)?;
                let len = set.items.len();
                return fit(
                    fit_args(label),
                    model,
                    locked_vqa::ItemIndices,
                    len,
                    |m, b, _| locked_vqa::step(m, &set, b, job.train.count_weight, device),
                    |_, _| Ok(Flow::Continue),
                );
            }
            let (set, dropped) = question_set(
                &records,
                &answers,
                &tokenizer,
                &preprocess,
                job.train.questions_per_image,
                job.train.seed,
            )?;
            prepared(dropped)?;
            let len = set.items.len();
            let store = set.store.clone();
            fit_then(
                fit_args(label),
                model,
                set,
                len,
                |m, b, _| {
                    let weights = (job.train.focus_weight, job.train.count_weight);
                    steps::vqa(m, b, weights, device)
                },
                |_, _| Ok(Flow::Continue),
                |m| Ok(recalibrate_grid(m, &store, device)),
            )
        }
        Task::Caption | Task::Retrieval => {
            let records = datasets::captions(&job.data, job.format, job.split.as_deref())?;
            let model = start(&config)?;
            let set = pair_set(&records.records, &tokenizer, &preprocess)?;
            save_meta(&job.out, &saved_meta(&config, &answers))?;
            job.train
                .save(&train_path)
                .map_err(|e| Error::io(&train_path, e))?;
            let len = set.items.len();
            if job.task == Task::Caption {
                fit(
                    fit_args(label),
                    model,
                    set,
                    len,
                    |m, b, _| steps::caption(m, b, device),
                    |_, _| Ok(Flow::Continue),
                )
            } else {
                let special = tokenizer.special_ids();
                let cfg = job.train.clone().with_mlm_weight(0.0).with_mim_weight(0.0);
                let store = set.store.clone();
                fit_then(
                    fit_args(label),
                    model,
                    set,
                    len,
                    |m, b, rng| steps::pretrain(m, b, rng, &cfg, special, device),
                    |_, _| Ok(Flow::Continue),
                    |m| Ok(recalibrate_grid(m, &store, device)),
                )
            }
        }
    }
}

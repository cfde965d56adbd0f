//! `edgevlm pretrain`: image-text pretraining with ITC, ITM, MLM and masked image
//! features on a caption dataset, from scratch.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use edgevlm_shared::rng::SplitMix64;
use edgevlm_shared::{PreprocessConfig, TextTokenizer, TokenizerConfig};

use super::calibration::recalibrate_grid;
use super::config::TrainConfig;
use super::steps;
use super::tasks::{pair_set, PairSet};
use super::trainer::{fit_then, Fit, Flow};
use crate::data::batcher::Batcher;
use crate::data::datasets;
use crate::data::{Format, VqaRecord};
use crate::error::{Error, Result};
use crate::model::saved::{save_meta, ModelMeta, SavedModel};
use crate::model::{EdgeVlm, EdgeVlmConfig, FusionKind};

pub struct PretrainJob {
    pub data: PathBuf,
    pub format: Option<Format>,
    pub split: Option<String>,
    /// Held-out captions whose objective losses are logged at every checkpoint.
    pub heldout: Option<PathBuf>,
    pub out: PathBuf,
    pub image_size: usize,
    pub patch_size: usize,
    pub fusion: FusionKind,
    pub tiny: bool,
    /// Add a grid encoder and a spatial MLM head over its cells.
    pub grid: bool,
    pub tokenizer: TokenizerConfig,
    pub train: TrainConfig,
    pub resume: bool,
    pub quiet: bool,
}

/// The questions of a VQA set stored beside the captions (`questions.jsonl`), if any:
/// their words go into the tokenizer (so fine-tuning for VQA later has them) and
/// their text into MLM (see [`TrainConfig::question_mlm`]).
fn questions_beside(data: &Path) -> Result<Vec<VqaRecord>> {
    if !data.join("questions.jsonl").is_file() {
        return Ok(Vec::new());
    }
    Ok(datasets::questions(data, Some(Format::Jsonl), None)?.records)
}

/// The captions of clips stored beside the scenes (`clips.jsonl`), if any: their
/// words go into the tokenizer, so the model can later learn to caption clips.
fn clip_captions_beside(data: &Path) -> Result<Vec<String>> {
    if !data.join("clips.jsonl").is_file() {
        return Ok(Vec::new());
    }
    Ok(crate::data::clips::read(data)?
        .into_iter()
        .flat_map(|clip| clip.captions)
        .collect())
}

/// Pairs with the questions about their images attached, when MLM reads questions.
fn with_questions(set: PairSet, questions: &[VqaRecord], cfg: &TrainConfig, quiet: bool) -> Result<PairSet> {
    if questions.is_empty() || cfg.question_mlm <= 0.0 {
        return Ok(set);
    }
    let (set, matched) = set.with_questions(questions)?;
    if !quiet {
        eprintln!(
            "MLM reads {matched} questions about these images ({:.0} % of its rows)",
            100.0 * cfg.question_mlm
        );
    }
    Ok(set)
}

pub fn run(job: &PretrainJob, device: &Device) -> Result<EdgeVlm> {
    let train = datasets::captions(&job.data, job.format, job.split.as_deref())?;
    let questions = questions_beside(&job.data)?;
    let resuming = job.resume && job.out.join("config.json").is_file();
    let (config, preprocess, tokenizer) = if resuming {
        let meta = SavedModel::load_meta(&job.out)?;
        (meta.config, meta.preprocess, meta.tokenizer)
    } else {
        let mut corpus: Vec<String> = train.records.iter().flat_map(|r| r.captions.clone()).collect();
        corpus.extend(questions.iter().map(|r| r.question.clone()));
        corpus.extend(clip_captions_beside(&job.data)?);
        let tokenizer = TextTokenizer::train(corpus.iter(), &job.tokenizer)?;
        let vocab = tokenizer.vocab_size();
        let mut config = if job.tiny {
            EdgeVlmConfig::tiny(vocab)
        } else {
            EdgeVlmConfig::small(vocab, job.image_size, job.patch_size, job.fusion)
        };
        config.fusion.kind = job.fusion;
        if job.grid {
            config.grid = Some(config.default_grid());
            config.spatial_mlm = true;
        }
        config.decoder.max_len = job.tokenizer.max_len;
        let preprocess = PreprocessConfig::symmetric(config.vision.image_size() as u32);
        (config, preprocess, tokenizer)
    };
    let mut set = with_questions(
        pair_set(&train.records, &tokenizer, &preprocess)?,
        &questions,
        &job.train,
        job.quiet,
    )?;
    let preprocess = if resuming {
        preprocess
    } else {
        // Trained from scratch, the encoder sees inputs normalised with the data's own
        // statistics (the synthetic scenes are mostly white: a fixed mean of 0.5 would
        // leave every background patch saturated and the objects faint).
        let (mean, std) = set.store.channel_stats(2000);
        let stats = PreprocessConfig {
            mean,
            std,
            ..preprocess
        };
        let store = std::sync::Arc::try_unwrap(set.store)
            .ok()
            .expect("store not shared yet");
        set.store = std::sync::Arc::new(store.with_config(stats.clone()));
        stats
    };
    let meta = ModelMeta {
        config,
        preprocess,
        tokenizer,
        decoder_tokenizer: None,
        answers: Vec::new(),
    };
    save_meta(&job.out, &meta)?;
    let ModelMeta {
        config,
        preprocess,
        tokenizer,
        ..
    } = meta;
    let train_path = job.out.join("train.json");
    job.train
        .save(&train_path)
        .map_err(|e| Error::io(&train_path, e))?;
    let heldout = match &job.heldout {
        Some(path) => {
            let records = datasets::captions(path, job.format, None)?;
            let set = pair_set(&records.records, &tokenizer, &preprocess)?;
            Some(with_questions(set, &questions_beside(path)?, &job.train, true)?)
        }
        None => None,
    };
    let special = tokenizer.special_ids();
    let heldout_log = job.out.join("heldout.jsonl");
    let evaluate = |model: &EdgeVlm, step: usize| -> Result<Flow> {
        let Some(heldout) = &heldout else {
            return Ok(Flow::Continue);
        };
        let losses = heldout_losses(model, heldout, &job.train, special, device);
        let mut line = serde_json::json!({ "step": step });
        for (name, value) in &losses {
            line[*name] = serde_json::json!(value);
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&heldout_log)
            .map_err(|e| Error::io(&heldout_log, e))?;
        writeln!(f, "{line}").map_err(|e| Error::io(&heldout_log, e))?;
        Ok(Flow::Continue)
    };
    // Initial weights come from the seed too, so a run is reproducible end to end.
    device.seed(job.train.seed);
    let model = config.init(device);
    if !resuming {
        let _ = std::fs::remove_file(&heldout_log);
        evaluate(&model, 0)?;
    }
    let len = set.items.len();
    let fit_args = Fit {
        dir: &job.out,
        cfg: &job.train,
        resume: job.resume,
        label: "pretrain",
        device,
        quiet: job.quiet,
    };
    let store = set.store.clone();
    fit_then(
        fit_args,
        model,
        set,
        len,
        |model, batch, rng| steps::pretrain(model, batch, rng, &job.train, special, device),
        evaluate,
        |model| Ok(recalibrate_grid(model, &store, device)),
    )
}

/// Mean objective losses on (up to) the first 256 held-out pairs, with fixed randomness.
/// When ITM draws some negatives at random, `itm_hard_loss` is its loss against hard
/// negatives only, the harder test that says whether matching itself is learnt.
pub fn heldout_losses(
    model: &EdgeVlm,
    heldout: &PairSet,
    cfg: &TrainConfig,
    special: edgevlm_shared::tokenizer::SpecialIds,
    device: &Device,
) -> Vec<(&'static str, f32)> {
    let model = model.valid();
    let hard_only = (cfg.itm_weight > 0.0 && cfg.itm_random_negatives > 0.0).then(|| {
        cfg.clone()
            .with_itc_weight(0.0)
            .with_mlm_weight(0.0)
            .with_mim_weight(0.0)
            .with_spatial_mlm_weight(0.0)
            .with_itm_random_negatives(0.0)
    });
    let n = heldout.items.len().min(256);
    let batch_size = cfg.batch_size.min(n).max(2);
    let mut sums: Vec<(&'static str, f32)> = Vec::new();
    let mut add = |name: &'static str, value: Tensor<1>| {
        let value = value.into_scalar::<f32>();
        match sums.iter_mut().find(|(n, _)| *n == name) {
            Some((_, sum)) => *sum += value,
            None => sums.push((name, value)),
        }
    };
    let mut batches = 0;
    for (k, start) in (0..n).step_by(batch_size).enumerate() {
        let indices: Vec<usize> = (start..(start + batch_size).min(n)).collect();
        if indices.len() < 2 {
            continue;
        }
        let Ok(batch) = heldout.batch(&indices) else {
            continue;
        };
        let mut rng = SplitMix64::fork(0xE7A1, k as u64);
        let losses = steps::pretrain(&model, &batch, &mut rng, cfg, special, device);
        for (name, value) in losses.parts {
            add(name, value);
        }
        if let Some(hard_cfg) = &hard_only {
            let mut rng = SplitMix64::fork(0xE7A1, k as u64);
            let losses = steps::pretrain(&model, &batch, &mut rng, hard_cfg, special, device);
            if let Some((_, itm)) = losses.parts.into_iter().find(|(n, _)| *n == "itm_loss") {
                add("itm_hard_loss", itm);
            }
        }
        batches += 1;
    }
    sums.into_iter()
        .map(|(n, v)| (n, v / batches.max(1) as f32))
        .collect()
}

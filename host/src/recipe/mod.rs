//! `edgevlm train --recipe flickr8k`: real-photo captioning and retrieval from the
//! pretrained towers. Stages, each a resumable run folder under `OUT/`:
//!
//! 1. features: EfficientNet-Lite0 grid tokens of every image and MiniLM states of
//!    every caption, cached in `--cache` (reused across epochs and runs);
//! 2. `align/`: ITC + ITM + MLM of the trained heads on the frozen towers;
//! 3. `caption/`: the caption decoder (own small WordPiece vocabulary) on the
//!    aligned image projection, early-stopped on dev CIDEr-D;
//! 4. `scst/`: self-critical training of the decoder with a CIDEr-D reward, from the
//!    best caption weights, also early-stopped on dev CIDEr-D;
//!
//! then `OUT` is a model folder ([`crate::model::saved`]) of the photo preset
//! ([`EdgeVlmConfig::photo`]): `model.bpk` holds the best weights with the locked
//! towers, `caption_memory.bin` the training captions' ITC embeddings for consensus
//! reranking of the final beam, `decoding.json` the decoding the final numbers
//! used, and `OUT/report.json` every stage's dev numbers.

pub mod align;
pub mod caption;
pub mod consensus;
mod report;
pub mod scst;
mod stages;

pub use report::RecipeReport;

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use edgevlm_shared::rng::SplitMix64;
use edgevlm_shared::{TextTokenizer, TokenizerConfig};

use self::align::{AlignSizes, Pairs};
use self::caption::CaptionSet;
use self::stages::{
    append_json, caption_stage, read_scores, retrieval, DevJudge, Indices, Stage, StageScores,
};
use crate::data::flickr8k;
use crate::data::LoadOptions;
use crate::error::{Error, Result};
use crate::eval::metrics::CiderReward;
use crate::features::towers::{self, Towers};
use crate::model::consensus::Consensus;
use crate::model::decoder::CaptionDecoderConfig;
use crate::model::saved::{self, ModelMeta};
use crate::model::weights::load_model;
use crate::model::{EdgeVlm, EdgeVlmConfig};
use crate::train::config::TrainConfig;
use crate::train::trainer::{fit, Fit, Flow};

/// Longest caption the decoder learns and writes, [CLS] and [SEP] included (longer
/// training captions, about 3% of Flickr8k's, are cut).
const CAPTION_MAX_LEN: usize = 24;

/// Everything `edgevlm train --recipe flickr8k` can be told.
#[derive(Debug, Clone)]
pub struct RecipeArgs {
    pub data: PathBuf,
    pub out: PathBuf,
    /// Folder holding `efficientnet-lite0/` and `minilm-l6/`.
    pub towers: PathBuf,
    /// Another HF BERT-family folder as the text tower (instead of `towers/minilm-l6`).
    pub text_tower: Option<PathBuf>,
    pub cache: PathBuf,
    pub resume: bool,
    pub seed: u64,
    pub align_epochs: usize,
    pub caption_epochs: usize,
    /// Caption-decoder dropout while training.
    pub dropout: f64,
    /// Label smoothing of the caption stage's cross-entropy.
    pub label_smoothing: f32,
    /// Chance that the caption stage sees a training image mirrored.
    pub mirror: f64,
    /// Self-critical (CIDEr-D reward) epochs after the caption stage; 0 skips it.
    pub scst_epochs: usize,
    /// Epochs without a better dev CIDEr-D before the caption stage stops.
    pub patience: usize,
    /// Only the first N training images (quick checks); all when `None`.
    pub limit: Option<usize>,
    /// Beam size of the final evaluation (and of the folder's `decoding.json`).
    pub beam: usize,
    /// Consensus reranking of the beam's captions; `None` keeps the beam's best.
    pub consensus: Option<Consensus>,
    pub quiet: bool,
}

/// One split: image paths, their captions, and the flat caption list.
pub(super) struct Split {
    pub paths: Vec<PathBuf>,
    pub captions: Vec<Vec<String>>,
    pub flat: Vec<String>,
    /// For each image, its captions' indices into `flat`.
    pub owner: Vec<Vec<usize>>,
}

fn load_split(dir: &Path, split: &str, limit: Option<usize>) -> Result<Split> {
    let mut set = flickr8k::load(
        dir,
        Some(split),
        LoadOptions {
            strict: false,
            skip_decode_check: true,
        },
    )?;
    if let Some(w) = set.skipped.warning() {
        eprintln!("{w}");
    }
    if let Some(n) = limit {
        set.records.truncate(n);
    }
    if set.records.is_empty() {
        return Err(Error::record(
            flickr8k::split_file(dir, split),
            "lists no captioned image",
        ));
    }
    let (mut flat, mut owner) = (Vec::new(), Vec::new());
    for r in &set.records {
        owner.push((flat.len()..flat.len() + r.captions.len()).collect());
        flat.extend(r.captions.iter().cloned());
    }
    Ok(Split {
        paths: set.records.iter().map(|r| r.image.clone()).collect(),
        captions: set.records.iter().map(|r| r.captions.clone()).collect(),
        flat,
        owner,
    })
}

pub fn run(args: &RecipeArgs, device: &Device) -> Result<RecipeReport> {
    let clock = std::time::Instant::now();
    for (flag, value) in [
        ("--dropout", args.dropout),
        ("--label-smoothing", args.label_smoothing as f64),
    ] {
        if !(0.0..1.0).contains(&value) {
            return Err(Error::Invalid(format!(
                "{flag} {value}: expected a probability in [0, 1)"
            )));
        }
    }
    if !(0.0..=1.0).contains(&args.mirror) {
        return Err(Error::Invalid(format!(
            "--mirror {}: expected a probability in [0, 1]",
            args.mirror
        )));
    }
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    let train = load_split(&args.data, "train", args.limit)?;
    let dev = load_split(&args.data, "dev", args.limit.map(|n| n / 4))?;
    eprintln!(
        "flickr8k: {} train images ({} captions), {} dev images ({} captions)",
        train.paths.len(),
        train.flat.len(),
        dev.paths.len(),
        dev.flat.len()
    );
    let text_dir = args
        .text_tower
        .clone()
        .unwrap_or_else(|| args.towers.join(towers::TEXT_TOWER));
    let towers = Towers::load_from(&args.towers.join(towers::IMAGE_TOWER), &text_dir, device)?;
    let train_images = towers.cached_images(&train.paths, &args.cache, "train", device)?;
    let dev_images = towers.cached_images(&dev.paths, &args.cache, "dev", device)?;
    let train_texts = towers.cached_texts(&train.flat, &args.cache, "train", device)?;
    let dev_texts = towers.cached_texts(&dev.flat, &args.cache, "dev", device)?;

    // The decoder's vocabulary comes from the training captions only.
    let tokenizer_path = args.out.join(saved::DECODER_TOKENIZER_FILE);
    let tokenizer = if args.resume && tokenizer_path.is_file() {
        TextTokenizer::from_file(&tokenizer_path, CAPTION_MAX_LEN)?
    } else {
        let cfg = TokenizerConfig {
            vocab_size: 3000,
            min_frequency: 3,
            max_len: CAPTION_MAX_LEN,
            lowercase: true,
        };
        TextTokenizer::train(train.flat.iter(), &cfg)?
    };
    let config = EdgeVlmConfig::photo(
        towers.text.config.clone(),
        towers::TEXT_MAX_LEN,
        CaptionDecoderConfig::new(tokenizer.vocab_size(), 256)
            .with_d_model(256)
            .with_layers(2)
            .with_heads(4)
            .with_d_intermediate(1024)
            .with_max_len(CAPTION_MAX_LEN)
            .with_dropout((args.dropout > 0.0).then_some(args.dropout)),
    );
    saved::save_meta(
        &args.out,
        &ModelMeta {
            config: config.clone(),
            preprocess: Towers::preprocess(),
            tokenizer: towers.text.tokenizer.clone(),
            decoder_tokenizer: Some(tokenizer.clone()),
            answers: Vec::new(),
        },
    )?;

    let stages_path = args.out.join("stages.jsonl");
    let align_dir = args.out.join("align");
    if !args.resume {
        // A fresh run's logs start empty (its checkpoints are overwritten as it goes).
        for log in [stages_path.clone(), align_dir.join("dev.jsonl")] {
            let _ = std::fs::remove_file(log);
        }
    }
    let mut stages = read_scores(&stages_path);

    // Stage 2: alignment.
    let images = train.paths.len();
    let align_batch = images.min(256);
    let align_cfg = TrainConfig::new()
        .with_batch_size(align_batch)
        .with_epochs(args.align_epochs)
        .with_lr(1e-3)
        .with_warmup(0.05)
        .with_seed(args.seed)
        .with_checkpoint_every((images / align_batch).max(1))
        .with_weight_decay(0.05);
    let sizes = AlignSizes {
        itm: 32,
        mlm: 16,
        itc_weight: align_cfg.itc_weight,
        itm_weight: align_cfg.itm_weight,
        mlm_weight: align_cfg.mlm_weight,
    };
    let aligned = if align_dir.join("model.bpk").is_file() && args.resume {
        load_model(&align_dir.join("model.bpk"), config.init(device))?
    } else {
        device.seed(args.seed);
        let model = towers.install(config.init(device));
        let pairs = Pairs {
            images: &train_images,
            texts: &train_texts,
            captions: &train.owner,
        };
        let report = |model: &EdgeVlm, step: usize| -> Result<Flow> {
            let inner = device.clone().inner();
            let (i2t, t2i) = retrieval(&model.valid(), &dev_images, &dev_texts, &dev.owner, &inner)?;
            if !args.quiet {
                eprintln!("align step {step}: dev image→text R@1/5/10 {i2t:.1?}, text→image {t2i:.1?}");
            }
            append_json(
                &align_dir.join("dev.jsonl"),
                &StageScores {
                    stage: "align".into(),
                    step,
                    image_to_text: i2t,
                    text_to_image: t2i,
                    bleu4: None,
                    cider_d: None,
                },
            )?;
            Ok(Flow::Continue)
        };
        let fit_args = Fit {
            dir: &align_dir,
            cfg: &align_cfg,
            resume: args.resume,
            label: "align",
            device,
            quiet: args.quiet,
        };
        let model = fit(
            fit_args,
            model,
            Indices,
            train.paths.len(),
            |model, batch, rng| align::step(model, &towers.text.tokenizer, &pairs, batch, sizes, rng, device),
            report,
        )?;
        let inner = device.clone().inner();
        let (i2t, t2i) = retrieval(&model.valid(), &dev_images, &dev_texts, &dev.owner, &inner)?;
        let scores = StageScores {
            stage: "after alignment".into(),
            step: 0,
            image_to_text: i2t,
            text_to_image: t2i,
            bleu4: None,
            cider_d: None,
        };
        append_json(&stages_path, &scores)?;
        stages.push(scores);
        model
    };

    // Stage 3: captioning with teacher forcing; stage 4: self-critical training from
    // its best weights. Both are early-stopped on dev CIDEr-D (greedy decoding).
    // Mirrored photos' features are computed (and cached) only when they are used.
    let mirrored_images = (args.mirror > 0.0)
        .then(|| towers.cached_view(&train.paths, &args.cache, "train", towers::View::Mirrored, device))
        .transpose()?;
    let mut train_set = CaptionSet::new(&train_images, &train.captions, &tokenizer)?;
    if let Some(mirrored) = &mirrored_images {
        train_set = train_set.with_mirrored(mirrored, &train.captions, &tokenizer)?;
    }
    let judge = DevJudge {
        images: &dev_images,
        references: &dev.captions,
        tokenizer: &tokenizer,
        patience: args.patience,
        quiet: args.quiet,
    };
    let caption_batch = images.min(32);
    let augment = caption::Augment {
        label_smoothing: args.label_smoothing,
        mirror: args.mirror,
    };
    let stage = Stage::decoder(args, "caption", images, caption_batch, args.caption_epochs).lr(5e-4, 0.03);
    let (mut best, mut best_cider) = caption_stage(
        &stage,
        aligned,
        f64::MIN,
        &judge,
        args,
        &config,
        train.paths.len(),
        |model, batch, rng| caption::step(model, &train_set, batch, augment, rng, device),
        device,
    )?
    .ok_or_else(|| Error::Invalid("the caption stage kept no weights".into()))?;

    if args.scst_epochs > 0 {
        let train_refs = CiderReward::new(&train.captions)
            .map_err(|e| Error::Invalid(format!("training captions: {e}")))?;
        let critic = scst::Critic {
            set: &train_set,
            reward: &train_refs,
            tokenizer: &tokenizer,
            samples: 5,
            max_len: CAPTION_MAX_LEN,
        };
        let scst_batch = images.min(16);
        let stage = Stage::decoder(args, "scst", images, scst_batch, args.scst_epochs).lr(2e-5, 0.0);
        let step = |model: &EdgeVlm, batch: &Vec<usize>, rng: &mut SplitMix64| {
            scst::step(model, &critic, batch, rng, device)
        };
        if let Some((model, cider)) = caption_stage(
            &stage,
            best.clone(),
            best_cider,
            &judge,
            args,
            &config,
            train.paths.len(),
            step,
            device,
        )? {
            (best, best_cider) = (model, cider);
        }
    }
    if !args.quiet {
        eprintln!("best dev CIDEr-D (greedy) {best_cider:.1}");
    }
    crate::model::weights::save_model_atomic(&best, &args.out.join("model.bpk"))?;

    report::finish(
        args,
        &best,
        report::Final {
            train: &train,
            dev: &dev,
            train_texts: &train_texts,
            dev_images: &dev_images,
            dev_texts: &dev_texts,
            tokenizer: &tokenizer,
            stages,
            clock,
        },
        device,
    )
}

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
pub mod cache;
pub mod caption;
pub mod consensus;
pub mod scst;
pub mod towers;

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use edgevlm_shared::rng::SplitMix64;
use edgevlm_shared::{TextTokenizer, TokenizerConfig};
use serde::Serialize;

use self::align::{AlignSizes, Pairs};
use self::cache::{ImageFeatures, TextFeatures};
use self::caption::CaptionSet;
use self::towers::Towers;
use crate::data::batcher::Batcher;
use crate::data::flickr8k;
use crate::data::LoadOptions;
use crate::error::{Error, Result};
use crate::eval::metrics::{self, CiderReward};
use crate::model::consensus::{Consensus, Decoding};
use crate::model::decoder::CaptionDecoderConfig;
use crate::model::saved::{self, ModelMeta};
use crate::model::weights::load_model;
use crate::model::DecodeOptions;
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

/// Items are image indices; a batch is just their list (features are in memory).
struct Indices;

impl Batcher for Indices {
    type Batch = Vec<usize>;
    fn batch(&self, indices: &[usize]) -> crate::data::Result<Vec<usize>> {
        Ok(indices.to_vec())
    }
}

/// One split: image paths, their captions, and the flat caption list.
struct Split {
    paths: Vec<PathBuf>,
    captions: Vec<Vec<String>>,
    flat: Vec<String>,
    /// For each image, its captions' indices into `flat`.
    owner: Vec<Vec<usize>>,
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
fn retrieval(
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

fn append_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    writeln!(f, "{}", serde_json::to_string(value).expect("plain data")).map_err(|e| Error::io(path, e))
}

fn read_scores(path: &Path) -> Vec<StageScores> {
    std::fs::read_to_string(path)
        .map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The whole recipe report, written as `OUT/report.json`.
#[derive(Debug, Serialize)]
pub struct RecipeReport {
    pub train_images: usize,
    pub dev_images: usize,
    pub stages: Vec<StageScores>,
    pub final_dev: StageScores,
    pub decoding: Decoding,
    pub examples: Vec<crate::eval::tasks::CaptionExample>,
    pub minutes: f64,
}

/// A resumable stage's run folder, training settings and progress-bar label.
struct Stage {
    dir: PathBuf,
    cfg: TrainConfig,
    label: &'static str,
}

impl Stage {
    /// A decoder stage in `OUT/label/`: the fusion stays frozen, a checkpoint and a
    /// dev judgement after every epoch of `images / batch` steps.
    fn decoder(args: &RecipeArgs, label: &'static str, images: usize, batch: usize, epochs: usize) -> Self {
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
    fn lr(mut self, lr: f64, warmup: f64) -> Self {
        self.cfg = self.cfg.with_lr(lr).with_warmup(warmup);
        self
    }
}

/// Dev captioning: greedy captions of the dev images scored against their references.
struct DevJudge<'a> {
    images: &'a ImageFeatures,
    references: &'a [Vec<String>],
    tokenizer: &'a TextTokenizer,
    patience: usize,
    quiet: bool,
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
fn caption_stage<F>(
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

    // Final dev numbers: the beam's captions, then the same candidates reranked
    // against the training captions (`edgevlm eval` on the folder gives the same; the
    // recipe test runs it).
    let model = best.valid();
    let inner = device.clone().inner();
    let decoding = Decoding {
        beam_size: args.beam.max(1),
        length_penalty: DecodeOptions::default().length_penalty,
        consensus: args.consensus,
    };
    let search = decoding.search(CAPTION_MAX_LEN);
    let memory = consensus::build_memory(&model, train.captions.clone(), &train_texts, &inner)?;
    saved::save_memory(&memory, &args.out)?;
    saved::save_decoding(&decoding, &args.out)?;
    let (beam_captions, reranked) = match decoding.consensus {
        Some(settings) => {
            let r = consensus::cached_captions(
                &model,
                &dev_images,
                &tokenizer,
                search,
                &memory,
                settings,
                &inner,
            )?;
            (r.beam, Some(r.chosen))
        }
        None => {
            let dev_indices: Vec<usize> = (0..dev_images.len()).collect();
            let beam = caption::generate(&model, &dev_images, &dev_indices, &tokenizer, search, &inner)?;
            (beam, None)
        }
    };
    let (i2t, t2i) = retrieval(&model, &dev_images, &dev_texts, &dev.owner, &inner)?;
    let scored = |stage: &str, captions: &[String]| -> Result<StageScores> {
        let (bleu4, cider) = caption::scores(captions, &dev.captions)?;
        Ok(StageScores {
            stage: stage.into(),
            step: 0,
            image_to_text: i2t,
            text_to_image: t2i,
            bleu4: Some(bleu4),
            cider_d: Some(cider),
        })
    };
    let after_beam = scored("after captioning", &beam_captions)?;
    let (final_dev, captions) = match reranked {
        Some(chosen) => {
            stages.push(after_beam);
            (scored("after reranking", &chosen)?, chosen)
        }
        None => (after_beam, beam_captions),
    };
    let examples = dev
        .paths
        .iter()
        .zip(&captions)
        .zip(&dev.captions)
        .take(10)
        .map(|((p, c), refs)| crate::eval::tasks::CaptionExample {
            image: p.clone(),
            caption: c.clone(),
            references: refs.clone(),
        })
        .collect();
    let report = RecipeReport {
        train_images: train.paths.len(),
        dev_images: dev.paths.len(),
        stages,
        final_dev,
        decoding,
        examples,
        minutes: clock.elapsed().as_secs_f64() / 60.0,
    };
    let report_path = args.out.join("report.json");
    std::fs::write(
        &report_path,
        serde_json::to_string_pretty(&report).expect("plain data"),
    )
    .map_err(|e| Error::io(&report_path, e))?;
    Ok(report)
}

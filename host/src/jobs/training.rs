//! `edgevlm pretrain`, `finetune`, `join`, `train --recipe` and `bench train`: the
//! jobs that train (or time training), and the device and config they train with.

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::tensor::Device;
use edgevlm::model::consensus::Consensus;
use edgevlm::model::{FusionKind, VqaHeadKind};
use edgevlm::train::finetune::{self, FinetuneJob};
use edgevlm::train::pretrain::{self, PretrainJob};
use edgevlm::train::TrainConfig;
use edgevlm_shared::TokenizerConfig;

use crate::cli::{
    self, FinetuneArgs, FusionArg, JoinArgs, PretrainArgs, RecipeCliArgs, TrainArgs, VqaHeadArg,
};

pub fn pretrain(a: PretrainArgs) -> Result<()> {
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
    Ok(())
}

pub fn finetune(a: FinetuneArgs) -> Result<()> {
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
        question_only: a.question_only,
        count: a.count,
        cache: a.cache,
        train: train_config(&a.train)?,
        resume: a.train.resume,
        quiet: a.train.quiet,
    };
    finetune::run(&job, &training_device()?).context("fine-tuning")?;
    println!("fine-tuned model written to {}", a.out.display());
    Ok(())
}

pub fn join(a: JoinArgs) -> Result<()> {
    edgevlm::model::join::join(&a.model, &a.from, &a.parts, &a.out, &Device::flex())
        .context("joining model folders")?;
    println!("joined model written to {}", a.out.display());
    Ok(())
}

pub fn bench(steps: usize, report: PathBuf) -> Result<()> {
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
    Ok(())
}

pub fn recipe(a: RecipeCliArgs) -> Result<()> {
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
        print!(
            "{:<18} image→text R@1/5/10 {i1:.1}/{i5:.1}/{i10:.1}  text→image {t1:.1}/{t5:.1}/{t10:.1}",
            s.stage
        );
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

fn train_config(a: &TrainArgs) -> Result<TrainConfig> {
    let mut cfg = match &a.config {
        Some(path) => TrainConfig::read(path)
            .map_err(|e| anyhow::anyhow!("{}: not a training config: {e}", path.display()))?,
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
        focus_weight,
        count_weight,
        slow_lr_ratio
    );
    for (name, weight) in [
        ("focus_weight", cfg.focus_weight),
        ("count_weight", cfg.count_weight),
    ] {
        if !(weight >= 0.0 && weight.is_finite()) {
            anyhow::bail!("{name} {weight}: expected a finite weight ≥ 0");
        }
    }
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

//! The training loop shared by every task: seeded batches, warm-up + cosine AdamW,
//! gradient clipping, frozen parts, progress, per-step metrics, checkpoints and
//! exact resumption.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use edgevlm_shared::rng::SplitMix64;
use indicatif::{ProgressBar, ProgressStyle};

use super::checkpoint::{self, TrainState};
use super::config::TrainConfig;
use super::plot;
use super::schedule::learning_rate;
use crate::data::batcher::{Batcher, Loader, LoaderConfig};
use crate::error::{Error, Result};
pub use crate::model::freeze::Freeze;

/// A step's losses: the weighted total to minimise and its parts, for logging.
pub struct Losses {
    pub total: Tensor<1>,
    pub parts: Vec<(&'static str, Tensor<1>)>,
}

/// What a run needs besides the model and the data.
pub struct Fit<'a> {
    /// Run folder: checkpoints, `metrics.jsonl`, `loss.png`, `model.bpk`.
    pub dir: &'a Path,
    pub cfg: &'a TrainConfig,
    /// Continue from the folder's checkpoint instead of starting over.
    pub resume: bool,
    /// Shown in the progress bar.
    pub label: &'a str,
    pub device: &'a Device,
    pub quiet: bool,
}

/// What a checkpoint callback tells the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Stop now (early stopping); the run ends as if its schedule were done.
    Stop,
}

pub fn optimizer(cfg: &TrainConfig) -> ModuleOptimizer {
    let mut adam = AdamWConfig::new().with_weight_decay(cfg.weight_decay as f32);
    if cfg.grad_clip > 0.0 {
        adam = adam.with_grad_clipping(Some(burn::grad_clipping::GradientClippingConfig::Norm(
            cfg.grad_clip,
        )));
    }
    adam.init()
}

/// Trains `model` on `set` (of `len` items) with `step_fn`, returning the trained model,
/// also saved as `dir/model.bpk`. `on_checkpoint` runs after each checkpoint (held-out
/// evaluation, say).
pub fn fit<M, S, F>(
    fit: Fit,
    model: M,
    set: S,
    len: usize,
    step_fn: F,
    on_checkpoint: impl FnMut(&M, usize) -> Result<Flow>,
) -> Result<M>
where
    M: Freeze,
    S: Batcher,
    F: FnMut(&M, &S::Batch, &mut SplitMix64) -> Losses,
{
    fit_then(fit, model, set, len, step_fn, on_checkpoint, Ok)
}

/// [`fit`], with `finish` applied to the trained model before it is saved as
/// `dir/model.bpk` (not at a pause: a resumed run finishes it).
pub fn fit_then<M, S, F>(
    fit: Fit,
    model: M,
    set: S,
    len: usize,
    mut step_fn: F,
    mut on_checkpoint: impl FnMut(&M, usize) -> Result<Flow>,
    finish: impl FnOnce(M) -> Result<M>,
) -> Result<M>
where
    M: Freeze,
    S: Batcher,
    F: FnMut(&M, &S::Batch, &mut SplitMix64) -> Losses,
{
    let cfg = fit.cfg;
    std::fs::create_dir_all(fit.dir).map_err(|e| Error::io(fit.dir, e))?;
    if len < cfg.batch_size {
        return Err(Error::Invalid(format!(
            "{} items cannot fill one batch of {}",
            len, cfg.batch_size
        )));
    }
    let loader = Loader::new(
        set,
        len,
        LoaderConfig {
            batch_size: cfg.batch_size,
            seed: cfg.seed,
            shuffle: true,
            drop_last: true,
            prefetch: 4,
        },
    );
    let per_epoch = loader.batches_per_epoch();
    let total = (per_epoch * cfg.epochs).min(cfg.max_steps.unwrap_or(usize::MAX));
    let warmup = (total as f64 * cfg.warmup).round() as usize;

    let mut model = model.freeze_parts(&cfg.freeze)?;
    let slow = model.part_params(&cfg.slow)?;
    let mut optim = optimizer(cfg);
    let mut start = 0;
    match (fit.resume, checkpoint::latest(fit.dir)) {
        (true, Some(dir)) => {
            let (m, o, state) = checkpoint::load(&dir, model, optim)?;
            model = m.freeze_parts(&cfg.freeze)?;
            optim = o;
            start = state.step;
            if !fit.quiet {
                eprintln!("resuming {} from step {start} ({})", fit.label, dir.display());
            }
        }
        (true, None) if !fit.quiet => eprintln!(
            "no checkpoint in {}: starting {} from scratch",
            fit.dir.display(),
            fit.label
        ),
        _ => {}
    }
    let metrics_path = fit.dir.join("metrics.jsonl");
    let mut history = read_history(&metrics_path, start);
    let mut log = rewrite_history(&metrics_path, &history)?;

    let bar = if fit.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total as u64)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}<{eta_precise}] {wide_bar} {pos}/{len} {msg}",
        )
        .expect("static template"),
    );
    bar.set_prefix(fit.label.to_string());
    bar.set_position(start as u64);

    let mut step = start;
    let clock = Instant::now();
    let mut samples = 0usize;
    'train: while step < total {
        let epoch = step / per_epoch;
        for batch in loader.epoch(epoch as u64, step % per_epoch) {
            if step >= total {
                break;
            }
            let batch = batch?;
            let mut rng = SplitMix64::fork(cfg.seed ^ 0x5EED, step as u64);
            // Random tensors drawn inside a step (dropout masks) come from the device's
            // generator: reseeding it per step makes a resumed run draw the same ones.
            fit.device
                .seed(SplitMix64::fork(cfg.seed ^ 0xD409, step as u64).next_u64());
            let losses = step_fn(&model, &batch, &mut rng);
            let mut parts = Vec::with_capacity(losses.parts.len());
            for (name, value) in losses.parts {
                let value = value.into_scalar::<f32>();
                if !value.is_finite() {
                    return Err(Error::NonFinite {
                        step,
                        part: name.into(),
                        value,
                        dir: fit.dir.to_path_buf(),
                    });
                }
                parts.push((name, value));
            }
            let lr = learning_rate(step, total, warmup, cfg.lr, cfg.min_lr_ratio);
            let mut grads = losses.total.backward();
            if !slow.is_empty() {
                let slow_grads = GradientsParams::from_params(&mut grads, &model, &slow);
                model = optim.step(lr * cfg.slow_lr_ratio, model, slow_grads);
            }
            let grads = GradientsParams::from_grads(grads, &model);
            model = optim.step(lr, model, grads);
            step += 1;
            samples += cfg.batch_size;

            let throughput = samples as f64 / clock.elapsed().as_secs_f64().max(1e-9);
            let mut line =
                serde_json::json!({ "step": step, "epoch": epoch, "lr": lr, "samples_per_s": throughput });
            for (name, value) in &parts {
                line[*name] = serde_json::json!(value);
            }
            writeln!(log, "{line}").map_err(|e| Error::io(&metrics_path, e))?;
            history.push(line);
            let shown: Vec<String> = parts.iter().map(|(n, v)| format!("{n} {v:.3}")).collect();
            bar.set_message(format!("{} | {throughput:.0}/s", shown.join(" ")));
            bar.inc(1);

            let pausing = cfg.stop_after == Some(step);
            if step % cfg.checkpoint_every == 0 || step == total || pausing {
                log.flush().map_err(|e| Error::io(&metrics_path, e))?;
                checkpoint::save(fit.dir, &model, &optim, TrainState { step })?;
                let flow = on_checkpoint(&model, step)?;
                draw_curves(fit.dir, &history);
                if flow == Flow::Stop {
                    bar.abandon_with_message(format!("stopped early at step {step}"));
                    break 'train;
                }
            }
            if pausing {
                bar.abandon_with_message(format!("paused at step {step}; --resume continues"));
                return Ok(model);
            }
        }
    }
    bar.finish();
    let model = finish(model)?;
    let final_path = fit.dir.join("model.bpk");
    checkpoint::save_model_atomic(&model, &final_path)?;
    draw_curves(fit.dir, &history);
    Ok(model)
}

fn read_history(path: &Path, before: usize) -> Vec<serde_json::Value> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["step"].as_u64().is_some_and(|s| (s as usize) <= before))
        .collect()
}

/// Rewrites the metrics log to the resumed step, so it never holds a step twice.
fn rewrite_history(path: &Path, history: &[serde_json::Value]) -> Result<std::io::BufWriter<std::fs::File>> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| Error::io(path, e))?);
    for line in history {
        writeln!(f, "{line}").map_err(|e| Error::io(path, e))?;
    }
    Ok(f)
}

fn draw_curves(dir: &Path, history: &[serde_json::Value]) {
    let mut names: Vec<String> = history
        .first()
        .and_then(|v| v.as_object())
        .map(|o| o.keys().filter(|k| k.contains("loss")).cloned().collect())
        .unwrap_or_default();
    names.sort();
    let series: Vec<(String, Vec<(f64, f64)>)> = names
        .into_iter()
        .map(|name| {
            let points = history
                .iter()
                .filter_map(|v| Some((v["step"].as_f64()?, v[&name].as_f64()?)))
                .collect();
            (name, points)
        })
        .collect();
    // A missing chart is not worth failing a run over.
    let _ = plot::loss_curves(&dir.join("loss.png"), &series, 640, 360);
}

//! `edgevlm export`, `quantize`, `keygen`, `sign` and `flash`: from a model folder
//! to a device bundle and onto the device.

use std::path::Path;

use anyhow::{Context, Result};
use burn::tensor::Device;
use edgevlm::data::datasets;
use edgevlm::eval::predict::BundlePredictor;
use edgevlm::eval::predict::Predictor;
use edgevlm::eval::tasks;
use edgevlm::export::ModelSource;
use edgevlm::export::{self, ExportOptions, WeightFormat};
use edgevlm::model::saved::SavedModel;
use edgevlm_device::runtime::Runtime;
use edgevlm_shared::bundle::signature;
use edgevlm_shared::bundle::Bundle;
use serde::Serialize;

use crate::cli::{ExportArgs, QuantizeArgs};

fn options(a: &ExportArgs, weights: WeightFormat) -> Result<ExportOptions> {
    let selftest_image = match &a.selftest_image {
        Some(path) => {
            let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "selftest-image".into());
            Some((name, bytes))
        }
        None => None,
    };
    let name = a.name.clone().unwrap_or_else(|| {
        a.out
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "edgevlm".into())
    });
    let firmware = match &a.firmware {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("reading firmware {}", path.display()))?)
        }
        None => None,
    };
    Ok(ExportOptions {
        name,
        model_version: a.model_version,
        weights,
        selftest_image,
        firmware,
        ..Default::default()
    })
}

fn load(dir: &Path) -> Result<SavedModel> {
    Ok(SavedModel::load(dir, &Device::flex())?)
}

fn write(model: &SavedModel, a: &ExportArgs, weights: WeightFormat, out: &Path) -> Result<Bundle> {
    let source = ModelSource::try_from(model)?;
    let bundle = export::export(&source, &options(a, weights)?).context("exporting")?;
    bundle.write(out)?;
    let size = std::fs::metadata(out)?.len();
    let test = bundle.manifest.selftest.as_ref();
    println!(
        "{}: {} graphs, {:.2} MB, weights {:?}; self-test caption {:?}{}",
        out.display(),
        bundle
            .manifest
            .files
            .iter()
            .filter(|f| f.name.ends_with(".onnx"))
            .count(),
        size as f64 / 1e6,
        bundle.manifest.weights,
        test.map(|t| t.caption.as_str()).unwrap_or(""),
        test.and_then(|t| t.vqa.as_ref())
            .map(|(q, a)| format!(", {q:?} -> {a:?}"))
            .unwrap_or_default()
    );
    Ok(bundle)
}

pub fn export(a: ExportArgs) -> Result<()> {
    let model = load(&a.model)?;
    let weights = if a.int8 {
        WeightFormat::Int8
    } else {
        WeightFormat::F32
    };
    write(&model, &a, weights, &a.out)?;
    Ok(())
}

#[derive(Serialize, Default)]
struct Quality {
    bytes: u64,
    vqa_accuracy: Option<f64>,
    bleu4: Option<f64>,
    cider_d: Option<f64>,
    /// Image→text recall@1 (real-photo bundles).
    image_to_text_r1: Option<f64>,
}

fn quality(bundle: &Path, data: Option<&Path>, split: Option<&str>) -> Result<Quality> {
    let mut q = Quality {
        bytes: std::fs::metadata(bundle)?.len(),
        ..Default::default()
    };
    let Some(data) = data else { return Ok(q) };
    let predictor = BundlePredictor::new(Runtime::load(bundle)?);
    if !predictor.runtime.manifest.answers.is_empty() {
        if let Ok(r) = tasks::vqa(&predictor, data, None, split) {
            q.vqa_accuracy = Some(r.accuracy);
        }
    }
    if datasets::questions_only(data) {
        return Ok(q);
    }
    // The bundle's own decoding (beam and reranking), greedy without one.
    let opts = predictor.decoding().unwrap_or_default();
    let r = tasks::caption(&predictor, data, None, split, opts)?;
    q.bleu4 = Some(r.bleu[3]);
    q.cider_d = Some(r.cider_d);
    if predictor.runtime.manifest.answers.is_empty() {
        q.image_to_text_r1 = Some(tasks::retrieval(&predictor, data, None, split)?.image_to_text[0]);
    }
    Ok(q)
}

/// Writes the int8 bundle to `--out` and an f32 one beside it, then compares them.
pub fn quantize(a: QuantizeArgs) -> Result<()> {
    let model = load(&a.export.model)?;
    let f32_path = a.export.out.with_extension("f32.bundle");
    write(&model, &a.export, WeightFormat::F32, &f32_path)?;
    write(&model, &a.export, WeightFormat::Int8, &a.export.out)?;
    let split = a.split.as_deref();
    let full = quality(&f32_path, a.data.as_deref(), split)?;
    let int8 = quality(&a.export.out, a.data.as_deref(), split)?;
    println!("{:<14} {:>12} {:>12} {:>8}", "", "f32", "int8", "change");
    println!(
        "{:<14} {:>12} {:>12} {:>7.1}%",
        "bytes",
        full.bytes,
        int8.bytes,
        100.0 * int8.bytes as f64 / full.bytes as f64
    );
    let row = |name: &str, a: Option<f64>, b: Option<f64>| {
        if let (Some(a), Some(b)) = (a, b) {
            println!("{name:<14} {a:>12.2} {b:>12.2} {:>+8.2}", b - a);
        }
    };
    row("VQA accuracy", full.vqa_accuracy, int8.vqa_accuracy);
    row("BLEU-4", full.bleu4, int8.bleu4);
    row("CIDEr-D", full.cider_d, int8.cider_d);
    row("image→text R@1", full.image_to_text_r1, int8.image_to_text_r1);
    // How each layer computes on the device: measured here, one thread, M = 1.
    let layers = export::choice::measure(&model, 100)?;
    println!(
        "\n{:<14} {:>6} {:>12} {:>12}  choice",
        "matrix", "layers", "f32 ms", "int8 ms"
    );
    for l in &layers {
        println!(
            "{:<14} {:>6} {:>12.4} {:>12.4}  {}",
            format!("{}x{}", l.shape[0], l.shape[1]),
            l.layers,
            l.f32_ms,
            l.int8_ms,
            l.choice
        );
    }
    let report = a.export.out.with_extension("quantize.json");
    let json = serde_json::json!({
        "f32": full,
        "int8": int8,
        "weights": "int8 per output channel",
        "layers": layers,
    });
    std::fs::write(&report, serde_json::to_string_pretty(&json)?)?;
    println!("report: {}", report.display());
    Ok(())
}

pub fn keygen(out: &Path, name: &str) -> Result<()> {
    let key = signature::generate()?;
    let (secret, public) = signature::save(&key, out, name)?;
    println!(
        "secret key {} (keep it off devices), public key {} (copy to each device's trusted/)",
        secret.display(),
        public.display()
    );
    Ok(())
}

pub fn sign(bundle: &Path, key: &Path) -> Result<()> {
    // Refuse to sign something that is not a valid bundle; one read, so the bytes
    // signed are the bytes checked.
    let bytes = std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?;
    let parsed = Bundle::from_bytes(&bytes, &bundle.display().to_string())?;
    let sig = signature::sign(&bytes, &signature::load_signing_key(key)?);
    let out = sig_path(bundle);
    std::fs::write(&out, sig).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "{}: {} version {} signed",
        out.display(),
        parsed.manifest.name,
        parsed.manifest.model_version
    );
    Ok(())
}

fn sig_path(bundle: &Path) -> std::path::PathBuf {
    let mut name = bundle.as_os_str().to_owned();
    name.push(".sig");
    name.into()
}

pub fn flash(
    bundle: &Path,
    to: &str,
    token_file: Option<&Path>,
    baud: u32,
    retries: usize,
    board_arch: &str,
) -> Result<()> {
    let bytes = std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?;
    let sig_file = sig_path(bundle);
    let sig = std::fs::read(&sig_file).with_context(|| {
        format!(
            "reading {} (sign the bundle first: edgevlm sign)",
            sig_file.display()
        )
    })?;
    let target = edgevlm::flash::Target::parse(to)?;
    let done = if let edgevlm::flash::Target::Dir(dir) = &target {
        edgevlm::flash::flash_dir(dir, &bytes, &sig, board_arch)?
    } else {
        let token_file = token_file.context(
            "--token-file (or EDGEVLM_AGENT_TOKEN_FILE) is needed to flash over a link: the file holding the agent's token",
        )?;
        let token = edgevlm_shared::wire::Token::read(token_file)?;
        let bar = indicatif::ProgressBar::new(bytes.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let r = edgevlm::flash::flash_link(&target, baud, &token, &bytes, &sig, retries, |sent, _| {
            bar.set_position(sent)
        });
        bar.finish_and_clear();
        r?
    };
    println!(
        "installed {} version {} into slot {}{}; self-test caption {:?}",
        done.name,
        done.model_version,
        done.slot,
        if done.resumed_from > 0 {
            format!(" (resumed at byte {})", done.resumed_from)
        } else {
            String::new()
        },
        done.selftest_caption
    );
    Ok(())
}

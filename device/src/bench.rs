//! `edgevlm-device bench`: latency per stage (preprocess, image encoder, one
//! decode step, a whole caption, a VQA answer) as p50/p95, and peak RSS.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use edgevlm_device::runtime::Runtime;
use edgevlm_shared::preprocess::{decode_image, load_image};
use edgevlm_shared::preprocess_image;
use edgevlm_shared::search::DecodeOptions;
use serde::Serialize;

#[derive(Serialize)]
pub struct Stage {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub runs: usize,
}

#[derive(Serialize)]
pub struct BenchReport {
    pub bundle: String,
    pub weights: String,
    pub threads: usize,
    pub preprocess: Stage,
    pub image_encoder: Stage,
    pub caption: Stage,
    pub caption_tokens: f64,
    pub per_token_ms: f64,
    pub vqa: Option<Stage>,
    pub peak_rss_mib: Option<f64>,
}

fn stage(mut samples: Vec<f64>) -> Stage {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Stage {
        p50_ms: at(0.5),
        p95_ms: at(0.95),
        runs: samples.len(),
    }
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed().as_secs_f64() * 1e3)
}

/// Peak resident set size of this process (Linux), MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub fn run(
    runtime: &Runtime,
    paths: &[PathBuf],
    runs: usize,
    opts: DecodeOptions,
    threads: usize,
) -> Result<BenchReport> {
    let images = if paths.is_empty() {
        let bytes = runtime
            .selftest_image_bytes()
            .ok_or_else(|| anyhow::anyhow!("the bundle has no self-test image: name images to benchmark"))?;
        vec![decode_image(bytes, std::path::Path::new("selftest"))?]
    } else {
        paths.iter().map(|p| load_image(p)).collect::<Result<_, _>>()?
    };
    let question = runtime
        .manifest
        .selftest
        .as_ref()
        .and_then(|t| t.vqa.as_ref().map(|v| v.0.clone()));
    let (mut pre, mut enc, mut cap, mut vqa, mut tokens) = (vec![], vec![], vec![], vec![], 0usize);
    // One warm-up pass, then the timed runs.
    for round in 0..=runs {
        for image in &images {
            let (pixels, t_pre) = timed(|| preprocess_image(image, &runtime.manifest.preprocess));
            let (encoded, t_enc) = timed(|| runtime.encode_pixels(&pixels.data));
            let encoded = encoded?;
            let (ids, t_cap) = timed(|| runtime.caption_ids(&encoded, opts));
            let ids = ids?;
            let t_vqa = question.as_ref().map(|q| timed(|| runtime.answer(&encoded, q)).1);
            if round > 0 {
                pre.push(t_pre);
                enc.push(t_enc);
                cap.push(t_cap);
                tokens += ids.len() + 1;
                vqa.extend(t_vqa);
            }
        }
    }
    let caption_tokens = tokens as f64 / cap.len() as f64;
    let caption = stage(cap);
    Ok(BenchReport {
        bundle: runtime.manifest.name.clone(),
        weights: format!("{:?}", runtime.manifest.weights),
        threads,
        preprocess: stage(pre),
        image_encoder: stage(enc),
        per_token_ms: caption.p50_ms / caption_tokens,
        caption,
        caption_tokens,
        vqa: (!vqa.is_empty()).then(|| stage(vqa)),
        peak_rss_mib: peak_rss_mib(),
    })
}

//! `edgevlm-device bench`: the bundle's load time, latency per stage (preprocess,
//! image encoder, the caption search, consensus reranking, the whole caption from
//! pixels to text, a VQA answer) as p50/p95, and peak RSS.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use edgevlm_device::runtime::Runtime;
use edgevlm_shared::caption::Decoding;
use edgevlm_shared::preprocess::{decode_image, load_image};
use edgevlm_shared::preprocess_image;
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
    /// Loading the bundle (parse, check, optimise into plans): the process's first
    /// load and a second one, ms.
    pub load_ms: [f64; 2],
    pub weights: String,
    pub threads: usize,
    pub preprocess: Stage,
    pub image_encoder: Stage,
    /// Greedy or beam search (every candidate, for reranking).
    pub decoding: Stage,
    /// Choosing among the candidates against the caption memory.
    pub reranking: Option<Stage>,
    /// Preprocess + image encoder + decoding + reranking + detokenizing.
    pub caption: Stage,
    pub beam: usize,
    pub consensus: Option<usize>,
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

pub fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
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
    decoding: Decoding,
    threads: usize,
) -> Result<BenchReport> {
    edgevlm_device::runtime::keep_blocks_for_reuse();
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
    let opts = decoding.search(runtime.manifest.decoder.max_len);
    let memory = runtime.memory.as_ref().filter(|_| opts.beam_size > 1);
    let consensus = decoding.consensus.filter(|_| memory.is_some());
    let (mut pre, mut enc, mut dec, mut rerank, mut cap, mut vqa) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut tokens = 0usize;
    // One warm-up pass, then the timed runs.
    for round in 0..=runs {
        for image in &images {
            let start = Instant::now();
            let (pixels, t_pre) = timed(|| preprocess_image(image, &runtime.manifest.preprocess));
            let (encoded, t_enc) = timed(|| runtime.encode_pixels(&pixels.data));
            let encoded = encoded?;
            let (found, t_dec) = timed(|| -> Result<Vec<(Vec<u32>, f32)>> {
                Ok(if opts.beam_size > 1 {
                    let found = runtime.candidates(&encoded, opts)?;
                    found.into_iter().map(|c| (c.tokens, c.score)).collect()
                } else {
                    vec![(runtime.caption_ids(&encoded, opts)?, 0.0)]
                })
            });
            let found = found?;
            let (chosen, t_rerank) = timed(|| -> Result<usize> {
                let Some(consensus) = consensus else {
                    return Ok(0);
                };
                let texts = found
                    .iter()
                    .map(|(ids, score)| Ok((runtime.decoder_tokenizer.decode(ids)?, *score)))
                    .collect::<Result<Vec<_>>>()?;
                Ok(runtime.rerank(&encoded, &texts, consensus)?)
            });
            let ids = &found.get(chosen?).map(|f| f.0.clone()).unwrap_or_default();
            runtime.decoder_tokenizer.decode(ids)?;
            let t_cap = start.elapsed().as_secs_f64() * 1e3;
            let t_vqa = question.as_ref().map(|q| timed(|| runtime.answer(&encoded, q)).1);
            if round > 0 {
                pre.push(t_pre);
                enc.push(t_enc);
                dec.push(t_dec);
                rerank.push(t_rerank);
                cap.push(t_cap);
                tokens += ids.len() + 1;
                vqa.extend(t_vqa);
            }
        }
    }
    let caption_tokens = tokens as f64 / cap.len() as f64;
    let decoding_stage = stage(dec);
    Ok(BenchReport {
        bundle: runtime.manifest.name.clone(),
        load_ms: [0.0; 2],
        weights: format!("{:?}", runtime.manifest.weights),
        threads,
        preprocess: stage(pre),
        image_encoder: stage(enc),
        per_token_ms: decoding_stage.p50_ms / caption_tokens,
        decoding: decoding_stage,
        reranking: consensus.map(|_| stage(rerank)),
        caption: stage(cap),
        beam: opts.beam_size,
        consensus: consensus.map(|c| c.neighbours),
        caption_tokens,
        vqa: (!vqa.is_empty()).then(|| stage(vqa)),
        peak_rss_mib: peak_rss_mib(),
    })
}

//! `edgevlm-device bench`: the bundle's load time, latency per stage (preprocess,
//! image encoder, the caption search, consensus reranking, the whole caption from
//! pixels to text, a VQA answer) as p50/p95, and peak RSS; with `--profile`, one
//! more pass timed node by node, against the core's measured peak.

pub mod peak;
pub mod profile;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use edgevlm_device::runtime::{profile as node_profile, EncodedImage, Runtime, TextTower};
use edgevlm_shared::bundle::io;
use edgevlm_shared::bundle::Bundle;
use edgevlm_shared::caption::{Consensus, Decoding};
use edgevlm_shared::preprocess::{decode_image, load_image};
use edgevlm_shared::preprocess_image;
use edgevlm_shared::search::DecodeOptions;
use image::RgbImage;
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
    /// Right after the load: the resident set, and the peak the load reached.
    pub loaded_rss_mib: Option<f64>,
    pub load_peak_rss_mib: Option<f64>,
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
    /// The self-test question about each image (encoded before): the text tower,
    /// then the VQA graph.
    pub vqa: Option<Stage>,
    /// Peak RSS while captioning, as a loop holds the model: the text tower not loaded.
    pub peak_rss_mib: Option<f64>,
    /// The text tower (loaded alone afterwards, as a text trigger does) embedding
    /// each caption, padded to `text_tokens`.
    pub text_encoder: Stage,
    pub text_tokens: f64,
    /// Peak RSS with the text tower loaded too.
    pub peak_rss_with_text_mib: Option<f64>,
    /// The profiled pass (`--profile`): one caption of each image.
    pub profile: Option<profile::ProfileReport>,
    /// GFLOP/s of the timed stages (p50), from the profiled pass's multiply-adds.
    pub stage_gflops: Option<StageRates>,
}

#[derive(Serialize)]
pub struct StageRates {
    pub image_encoder: f64,
    pub decoding: f64,
    pub caption: f64,
    pub peak: f64,
}

/// One caption's stages, ms, and the caption.
struct Times {
    preprocess: f64,
    encoder: f64,
    decoding: f64,
    reranking: f64,
    caption: f64,
    tokens: usize,
    text: String,
}

/// What each caption is asked to do.
struct Task {
    opts: DecodeOptions,
    consensus: Option<Consensus>,
}

/// How `bench` runs.
pub struct BenchOptions {
    pub runs: usize,
    pub threads: usize,
    /// One more pass timed node by node.
    pub profile: bool,
}

fn one_caption(runtime: &Runtime, image: &RgbImage, task: &Task) -> Result<Times> {
    let start = Instant::now();
    let (pixels, preprocess) = timed(|| preprocess_image(image, &runtime.manifest.preprocess));
    let (encoded, encoder) = timed(|| runtime.encode_pixels(&pixels.data));
    let encoded: EncodedImage = encoded?;
    let opts = task.opts;
    let (found, decoding) = timed(|| -> Result<Vec<(Vec<u32>, f32)>> {
        Ok(if opts.beam_size > 1 {
            let found = runtime.candidates(&encoded, opts)?;
            found.into_iter().map(|c| (c.tokens, c.score)).collect()
        } else {
            vec![(runtime.caption_ids(&encoded, opts)?, 0.0)]
        })
    });
    let found = found?;
    let (chosen, reranking) = timed(|| -> Result<usize> {
        let Some(consensus) = task.consensus else {
            return Ok(0);
        };
        let texts = found
            .iter()
            .map(|(ids, score)| Ok((runtime.decoder_tokenizer.decode(ids)?, *score)))
            .collect::<Result<Vec<_>>>()?;
        Ok(runtime.rerank(&encoded, &texts, consensus)?)
    });
    let ids = &found.get(chosen?).map(|f| f.0.clone()).unwrap_or_default();
    let text = runtime.decoder_tokenizer.decode(ids)?;
    let caption = start.elapsed().as_secs_f64() * 1e3;
    Ok(Times {
        preprocess,
        encoder,
        decoding,
        reranking,
        caption,
        tokens: ids.len() + 1,
        text,
    })
}

fn stage(mut samples: Vec<f64>) -> Stage {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| {
        samples
            .get(((samples.len().max(1) - 1) as f64 * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
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
    status_mib("VmHWM:")
}

/// Resident set size now (Linux), MiB.
pub fn rss_mib() -> Option<f64> {
    status_mib("VmRSS:")
}

fn status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Times `runtime` (loaded without its text tower) on `paths`, then the text tower
/// of the bundle at `bundle` on the captions it wrote.
pub fn run(
    runtime: &Runtime,
    bundle: &Path,
    paths: &[PathBuf],
    decoding: Decoding,
    options: &BenchOptions,
) -> Result<BenchReport> {
    edgevlm_device::runtime::keep_blocks_for_reuse();
    let runs = options.runs.max(1);
    let images = if paths.is_empty() {
        let bytes = runtime
            .selftest_image_bytes()
            .ok_or_else(|| anyhow::anyhow!("the bundle has no self-test image: name images to benchmark"))?;
        vec![decode_image(bytes, Path::new("selftest"))?]
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
    let task = Task { opts, consensus };
    let (mut pre, mut enc, mut dec, mut rerank, mut cap) = (vec![], vec![], vec![], vec![], vec![]);
    let mut tokens = 0usize;
    let mut captions = Vec::new();
    // One warm-up pass, then the timed runs.
    for round in 0..=runs {
        for image in &images {
            let t = one_caption(runtime, image, &task)?;
            if round > 0 {
                pre.push(t.preprocess);
                enc.push(t.encoder);
                dec.push(t.decoding);
                rerank.push(t.reranking);
                cap.push(t.caption);
                tokens += t.tokens;
            } else {
                captions.push(t.text);
            }
        }
    }
    let peak_rss = peak_rss_mib();

    let tower = TextTower::from_owned(Bundle::read_only(
        bundle,
        &TextTower::files().each_ref().map(String::as_str),
    )?)?;
    let mut text = Vec::new();
    for round in 0..=runs {
        for caption in &captions {
            let (embedded, ms) = timed(|| tower.embed(&[caption.as_str()]));
            embedded?;
            if round > 0 {
                text.push(ms);
            }
        }
    }
    let text_tokens = captions
        .iter()
        .map(|c| Ok(runtime.tokenizer.encode_batch(&[c.as_str()])?.seq_len))
        .sum::<Result<usize>>()? as f64
        / captions.len().max(1) as f64;
    // Answering runs the text tower too: the VQA graph reads its states.
    if runtime.answers_questions() {
        runtime.use_text_tower(&tower);
    }
    let encoded = match &question {
        Some(_) => images
            .iter()
            .map(|image| runtime.encode_image(image))
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    let answer = |image: &EncodedImage, q: &str| runtime.answer(image, q).map(|_| ());
    let mut vqa = Vec::new();
    if let Some(q) = &question {
        for round in 0..=runs {
            for image in &encoded {
                let (answered, ms) = timed(|| answer(image, q));
                answered?;
                if round > 0 {
                    vqa.push(ms);
                }
            }
        }
    }

    let caption_tokens = tokens as f64 / cap.len().max(1) as f64;
    let (image_stage, decoding_stage, caption_stage) = (stage(enc), stage(dec), stage(cap));
    let profiled = if options.profile {
        let peak = peak::peak_gflops();
        node_profile::start();
        for (image, caption) in images.iter().zip(&captions) {
            one_caption(runtime, image, &task)?;
            tower.embed(&[caption.as_str()])?;
        }
        if let Some(q) = &question {
            for image in &encoded {
                answer(image, q)?;
            }
        }
        node_profile::finish().map(|p| profile::summarise(&p, peak))
    } else {
        None
    };
    let stage_gflops = profiled.as_ref().map(|p| {
        let mfma = |graphs: &[&str]| {
            p.graphs
                .iter()
                .filter(|g| graphs.contains(&g.graph.as_str()))
                .map(|g| g.mfma_per_call * g.calls as f64)
                .sum::<f64>()
                / images.len() as f64
        };
        let (image, decoding) = (
            mfma(&[io::IMAGE_ENCODER]),
            mfma(&[io::CAPTION_DECODER, io::CAPTION_STEP]),
        );
        let rate = |mfma: f64, ms: f64| 2.0 * mfma / ms.max(1e-9);
        StageRates {
            image_encoder: rate(image, image_stage.p50_ms),
            decoding: rate(decoding, decoding_stage.p50_ms),
            caption: rate(image + decoding, caption_stage.p50_ms),
            peak: p.peak_gflops,
        }
    });
    Ok(BenchReport {
        bundle: runtime.manifest.name.clone(),
        load_ms: [0.0; 2],
        loaded_rss_mib: None,
        load_peak_rss_mib: None,
        weights: format!("{:?}", runtime.manifest.weights),
        threads: options.threads,
        preprocess: stage(pre),
        image_encoder: image_stage,
        per_token_ms: decoding_stage.p50_ms / caption_tokens.max(1.0),
        decoding: decoding_stage,
        reranking: consensus.map(|_| stage(rerank)),
        caption: caption_stage,
        beam: opts.beam_size,
        consensus: consensus.map(|c| c.neighbours),
        caption_tokens,
        vqa: (!vqa.is_empty()).then(|| stage(vqa)),
        peak_rss_mib: peak_rss,
        text_encoder: stage(text),
        text_tokens,
        peak_rss_with_text_mib: peak_rss_mib(),
        profile: profiled,
        stage_gflops,
    })
}

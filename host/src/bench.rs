//! `edgevlm bench train`: training throughput and peak memory of the default
//! configurations on generated scenes, written as a JSON report. Speed targets live
//! here, never in tests.

use std::path::Path;
use std::time::Instant;

use burn::optim::GradientsParams;
use burn::tensor::Device;
use edgevlm_shared::rng::SplitMix64;
use edgevlm_shared::{PreprocessConfig, TextTokenizer, TokenizerConfig};
use serde::Serialize;

use crate::data::batcher::Batcher;
use crate::data::datasets;
use crate::data::synth::{self, SynthOptions};
use crate::error::Result;
use crate::model::{EdgeVlmConfig, VqaHeadKind};
use crate::train::tasks::{answer_vocabulary, pair_set, question_set, TextImageBatch};
use crate::train::trainer::{optimizer, Losses};
use crate::train::{steps, TrainConfig};

#[derive(Debug, Serialize)]
pub struct StepBench {
    pub task: &'static str,
    pub images_per_step: usize,
    pub texts_per_step: usize,
    pub steps: usize,
    pub seconds_per_step: f64,
    pub images_per_s: f64,
    pub texts_per_s: f64,
}

#[derive(Debug, Serialize)]
pub struct TrainBench {
    /// The training device as burn names it (backend and index).
    pub backend: String,
    pub threads: usize,
    pub parameters: usize,
    pub steps: Vec<StepBench>,
    /// Peak resident memory of the process (VmHWM), MiB.
    pub peak_rss_mib: f64,
}

/// Peak resident set size of this process in MiB (Linux), 0 elsewhere.
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn time_steps(
    task: &'static str,
    batches: &[TextImageBatch],
    steps: usize,
    mut model: crate::model::EdgeVlm,
    step_fn: impl Fn(&crate::model::EdgeVlm, &TextImageBatch, &mut SplitMix64) -> Losses,
) -> StepBench {
    let mut optim = optimizer(&TrainConfig::new());
    let mut run = |model: crate::model::EdgeVlm, i: usize| {
        let batch = &batches[i % batches.len()];
        let mut rng = SplitMix64::new(i as u64);
        let losses = step_fn(&model, batch, &mut rng);
        let _ = losses.total.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(losses.total.backward(), &model);
        optim.step(1e-4, model, grads)
    };
    for i in 0..2 {
        model = run(model, i);
    }
    let clock = Instant::now();
    for i in 0..steps {
        model = run(model, i);
    }
    let per_step = clock.elapsed().as_secs_f64() / steps as f64;
    let (images, texts) = (batches[0].image_index.len(), batches[0].batch);
    StepBench {
        task,
        images_per_step: images,
        texts_per_step: texts,
        steps,
        seconds_per_step: per_step,
        images_per_s: images as f64 / per_step,
        texts_per_s: texts as f64 / per_step,
    }
}

/// Benchmarks pretraining, VQA (both heads) and caption steps of the synthetic preset.
pub fn train(work: &Path, steps: usize, device: &Device) -> Result<TrainBench> {
    let data = work.join("bench-scenes");
    synth::write(
        &data,
        &SynthOptions {
            count: 256,
            seed: 9,
            size: 64,
            questions_per_kind: 10,
            ..SynthOptions::default()
        },
    )?;
    let captions = datasets::captions(&data, None, None)?;
    let questions = datasets::questions(&data, None, None)?;
    let mut corpus: Vec<String> = captions.records.iter().flat_map(|r| r.captions.clone()).collect();
    corpus.extend(questions.records.iter().map(|r| r.question.clone()));
    let tokenizer = TextTokenizer::train(
        corpus.iter(),
        &TokenizerConfig {
            vocab_size: 1000,
            min_frequency: 1,
            max_len: 40,
            lowercase: true,
        },
    )?;
    let preprocess = PreprocessConfig::symmetric(64);
    let answers = answer_vocabulary(&questions.records);
    let mut config = EdgeVlmConfig::synthetic(tokenizer.vocab_size());
    config.answers = answers.len();
    device.seed(0);
    let model = config.init(device);
    let spatial = model
        .clone()
        .with_vqa_heads(&config.clone().with_vqa_head_kind(VqaHeadKind::Spatial), device);
    let parameters = crate::model::params::named_parameters(&model)
        .iter()
        .map(|p| p.values.len())
        .sum();
    let pairs = pair_set(&captions.records, &tokenizer, &preprocess)?;
    let (qset, _) = question_set(&questions.records, &answers, &tokenizer, &preprocess, 8, 0)?;
    let pair_batches: Vec<TextImageBatch> = (0..4)
        .map(|k| pairs.batch(&(k * 32..k * 32 + 32).collect::<Vec<_>>()))
        .collect::<crate::data::Result<_>>()?;
    let question_batches: Vec<TextImageBatch> = (0..4)
        .map(|k| qset.batch(&(k * 16..k * 16 + 16).collect::<Vec<_>>()))
        .collect::<crate::data::Result<_>>()?;
    // The spatial head's settings in scripts/synthetic.sh: 16 images x 16 questions.
    let (qset16, _) = question_set(&questions.records, &answers, &tokenizer, &preprocess, 16, 0)?;
    let spatial_batches: Vec<TextImageBatch> = (0..4)
        .map(|k| qset16.batch(&(k * 16..k * 16 + 16).collect::<Vec<_>>()))
        .collect::<crate::data::Result<_>>()?;
    let cfg = TrainConfig::new();
    let special = tokenizer.special_ids();
    let results = vec![
        time_steps("pretrain", &pair_batches, steps, model.clone(), |m, b, rng| {
            steps::pretrain(m, b, rng, &cfg, special, device)
        }),
        time_steps("vqa", &question_batches, steps, model.clone(), |m, b, _| {
            steps::vqa(m, b, (cfg.focus_weight, cfg.count_weight), device)
        }),
        time_steps("vqa-spatial", &spatial_batches, steps, spatial, |m, b, _| {
            steps::vqa(m, b, (cfg.focus_weight, cfg.count_weight), device)
        }),
        time_steps("caption", &pair_batches, steps, model, |m, b, _| {
            steps::caption(m, b, device)
        }),
    ];
    Ok(TrainBench {
        backend: format!("burn {device:?}"),
        threads: rayon::current_num_threads(),
        parameters,
        steps: results,
        peak_rss_mib: peak_rss_mib(),
    })
}

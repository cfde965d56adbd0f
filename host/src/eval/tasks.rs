//! `edgevlm eval caption|vqa|retrieval` (reasoning: [`super::reasoning`]): run a saved model over a dataset split,
//! print a table and return a JSON report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::metrics;
use super::predict::{self, Predictor};
use crate::data::datasets;
use crate::data::store::store_for;
use crate::data::store::ImageStore;
use crate::data::{Format, Record, VqaRecord};
use crate::error::{Error, Result};
use crate::model::DecodeOptions;

/// Decodes a dataset's images once; returns the store and each record's image index.
pub(super) fn decode_images<R: Record>(
    records: &[R],
    model: &dyn Predictor,
) -> Result<(ImageStore, Vec<usize>)> {
    let paths: Vec<PathBuf> = records.iter().map(|r| r.image().to_path_buf()).collect();
    let (store, index) = store_for(&paths, model.preprocess())?;
    let store = std::sync::Arc::try_unwrap(store)
        .ok()
        .expect("store not shared yet");
    Ok((store, paths.iter().map(|p| index[p]).collect()))
}

pub(super) fn metric_err(e: metrics::MetricsError) -> Error {
    Error::Invalid(format!("metric: {e}"))
}

#[derive(Debug, Serialize)]
pub struct CaptionReport {
    pub images: usize,
    pub bleu: [f64; 4],
    pub cider_d: f64,
    pub beam_size: usize,
    pub length_penalty: f32,
    /// Consensus reranking of the beam's captions, when the model applied it.
    pub consensus: Option<edgevlm_shared::caption::Consensus>,
    pub examples: Vec<CaptionExample>,
    /// Every image's caption, in the data's order (to compare two models photo by photo).
    pub captions: Vec<(PathBuf, String)>,
}

#[derive(Debug, Serialize)]
pub struct CaptionExample {
    pub image: PathBuf,
    pub caption: String,
    pub references: Vec<String>,
}

/// BLEU-1..4 and CIDEr-D, both ×100 as papers report them (CIDEr-D 0.55 from the
/// COCO toolkit is reported as 55).
pub fn caption(
    model: &dyn Predictor,
    data: &Path,
    format: Option<Format>,
    split: Option<&str>,
    opts: DecodeOptions,
) -> Result<CaptionReport> {
    let set = datasets::captions(data, format, split)?;
    let (store, indices) = decode_images(&set.records, model)?;
    let generated = model.captions(&store, &indices, opts)?;
    let references: Vec<Vec<String>> = set.records.iter().map(|r| r.captions.clone()).collect();
    let bleu = metrics::corpus_bleu_from_text(&generated, &references).map_err(metric_err)?;
    let cider = metrics::cider_d_from_text(&generated, &references).map_err(metric_err)?;
    let examples = set
        .records
        .iter()
        .zip(&generated)
        .take(10)
        .map(|(r, c)| CaptionExample {
            image: r.image.clone(),
            caption: c.clone(),
            references: r.captions.clone(),
        })
        .collect();
    Ok(CaptionReport {
        images: set.records.len(),
        bleu: bleu.corpus.map(|b| b * 100.0),
        cider_d: cider.corpus * 100.0,
        beam_size: opts.beam_size,
        length_penalty: opts.length_penalty,
        consensus: model.consensus(),
        examples,
        captions: set
            .records
            .iter()
            .map(|r| r.image.clone())
            .zip(generated)
            .collect(),
    })
}

#[derive(Debug, Serialize)]
pub struct VqaReport {
    pub questions: usize,
    /// Exact-match accuracy in percent (VQA soft accuracy when each question has 3+ human answers).
    pub accuracy: f64,
    pub metric: &'static str,
    pub per_type: BTreeMap<String, f64>,
    /// Exact-match accuracy per question family, when the data names families.
    pub per_family: BTreeMap<String, f64>,
    pub macro_precision: f64,
    pub macro_recall: f64,
    pub macro_f1: f64,
}

pub fn vqa(
    model: &dyn Predictor,
    data: &Path,
    format: Option<Format>,
    split: Option<&str>,
) -> Result<VqaReport> {
    if !model.has_vqa() {
        return Err(Error::Invalid(
            "the model has no VQA head; fine-tune it with `edgevlm finetune vqa`".into(),
        ));
    }
    let set = datasets::questions(data, format, split)?;
    let predicted = predicted_answers(model, &set.records)?;
    let truth: Vec<String> = set.records.iter().map(|r| r.answer.clone()).collect();
    let soft = set.records.iter().all(|r| r.answers.len() >= 3);
    let (accuracy, per_type) = if soft {
        let qs: Vec<metrics::VqaQuestion> = set
            .records
            .iter()
            .zip(&predicted)
            .map(|(r, p)| metrics::VqaQuestion {
                question_type: r.question_type.clone().unwrap_or_else(|| "all".into()),
                predicted_answer: p.clone(),
                human_answers: r.answers.clone(),
            })
            .collect();
        let acc = metrics::vqa_accuracy(&qs).map_err(metric_err)?;
        (acc.overall, acc.per_question_type)
    } else {
        let correct = predicted.iter().zip(&truth).filter(|(p, t)| p == t).count();
        (
            100.0 * correct as f64 / truth.len() as f64,
            accuracy_by(&set.records, &predicted, |r| {
                Some(r.question_type.clone().unwrap_or_else(|| "all".into()))
            }),
        )
    };
    let per_family = accuracy_by(&set.records, &predicted, |r| r.family.clone());
    let macro_scores = metrics::macro_precision_recall_f1(&truth, &predicted).map_err(metric_err)?;
    Ok(VqaReport {
        questions: truth.len(),
        accuracy,
        metric: if soft { "vqa-soft-accuracy" } else { "exact-match" },
        per_type,
        per_family,
        macro_precision: macro_scores.precision * 100.0,
        macro_recall: macro_scores.recall * 100.0,
        macro_f1: macro_scores.f1 * 100.0,
    })
}

/// The model's answer to each record's question.
pub(super) fn predicted_answers(model: &dyn Predictor, records: &[VqaRecord]) -> Result<Vec<String>> {
    let (store, indices) = decode_images(records, model)?;
    let questions: Vec<(usize, String)> = records
        .iter()
        .zip(&indices)
        .map(|(r, &i)| (i, r.question.clone()))
        .collect();
    Ok(model
        .answers(&store, &questions)?
        .into_iter()
        .map(|p| p.0)
        .collect())
}

/// Exact-match accuracy in percent per group (records without a group are left out).
pub(super) fn accuracy_by(
    records: &[VqaRecord],
    predicted: &[String],
    group: impl Fn(&VqaRecord) -> Option<String>,
) -> BTreeMap<String, f64> {
    let mut groups: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (r, p) in records.iter().zip(predicted) {
        if let Some(g) = group(r) {
            let entry = groups.entry(g).or_default();
            entry.0 += (p == &r.answer) as usize;
            entry.1 += 1;
        }
    }
    groups
        .into_iter()
        .map(|(k, (c, n))| (k, 100.0 * c as f64 / n as f64))
        .collect()
}

#[derive(Debug, Serialize)]
pub struct RetrievalReport {
    pub images: usize,
    pub texts: usize,
    pub image_to_text: [f64; 3],
    pub text_to_image: [f64; 3],
}

pub fn retrieval(
    model: &dyn Predictor,
    data: &Path,
    format: Option<Format>,
    split: Option<&str>,
) -> Result<RetrievalReport> {
    let set = datasets::captions(data, format, split)?;
    let (store, image_idx) = decode_images(&set.records, model)?;
    let mut texts = Vec::new();
    let mut owner = Vec::new();
    for (i, r) in set.records.iter().enumerate() {
        for c in &r.captions {
            texts.push(c.clone());
            owner.push(i);
        }
    }
    let image_emb = model.image_embeddings(&store, &image_idx)?;
    let text_emb = model.text_embeddings(&texts)?;
    let sims: Vec<Vec<f32>> = image_emb
        .iter()
        .map(|i| text_emb.iter().map(|t| predict::dot(i, t)).collect())
        .collect();
    let recall = metrics::retrieval_recall(&sims, &owner).map_err(metric_err)?;
    let r = |k: &metrics::RecallAtK| [k.r1, k.r5, k.r10];
    Ok(RetrievalReport {
        images: set.records.len(),
        texts: texts.len(),
        image_to_text: r(&recall.image_to_text),
        text_to_image: r(&recall.text_to_image),
    })
}

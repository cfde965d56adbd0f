//! `edgevlm eval reasoning`: statements judged true or false, scored by accuracy
//! (overall, per statement type and family: for caption-derived statements the
//! type is the edit that made a false one) and by precision, recall and F1 of
//! "true".

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use burn::tensor::Device;

use super::predict::{self, BurnPredictor, Predictor};
use super::tasks::{accuracy_by, decode_images, predicted_answers};
use crate::data::datasets::{self, VERDICTS};
use crate::data::VqaRecord;
use crate::error::{Error, Result};
use crate::model::saved::SavedModel;

#[derive(Debug, Serialize)]
pub struct ReasoningReport {
    pub statements: usize,
    /// Share of the statements that are true, in percent (50 for a balanced set).
    pub true_share: f64,
    pub accuracy: f64,
    pub per_type: BTreeMap<String, f64>,
    pub per_family: BTreeMap<String, f64>,
    /// "true" is the positive class.
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

pub fn reasoning(model: &dyn Predictor, data: &Path, split: Option<&str>) -> Result<ReasoningReport> {
    if !model.has_vqa() {
        return Err(not_a_verifier("has no answer head"));
    }
    let set = datasets::statements(data, split)?;
    let predicted = predicted_answers(model, &set.records)?;
    if let Some(other) = predicted.iter().find(|p| !VERDICTS.contains(&p.as_str())) {
        return Err(not_a_verifier(&format!("answered {other:?}")));
    }
    Ok(report(&set.records, &predicted))
}

/// The same statements judged by the ITM head instead (a model folder): true when
/// the image and the statement's match probability is at least the set's median.
/// The baseline a verifier trained on statements has to beat.
pub fn reasoning_by_itm(
    saved: &SavedModel,
    data: &Path,
    split: Option<&str>,
    device: &Device,
) -> Result<ReasoningReport> {
    let set = datasets::statements(data, split)?;
    let (store, indices) = decode_images(&set.records, &BurnPredictor::new(saved, device.clone()))?;
    let pairs: Vec<(usize, String)> = set
        .records
        .iter()
        .zip(&indices)
        .map(|(r, &i)| (i, r.question.clone()))
        .collect();
    let probabilities = predict::match_probabilities(saved, &store, &pairs, device)?;
    // The ITM head was trained on matched pairs and hard negatives, not on edited
    // sentences: its scores sit below 0.5 on both. The median splits the set in
    // halves (no label used), as a balanced set's verdicts are.
    let mut sorted = probabilities.clone();
    sorted.sort_by(f32::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.5);
    let predicted: Vec<String> = probabilities
        .into_iter()
        .map(|p| VERDICTS[(p >= median) as usize].to_string())
        .collect();
    Ok(report(&set.records, &predicted))
}

fn report(records: &[VqaRecord], predicted: &[String]) -> ReasoningReport {
    let count = |f: &dyn Fn(bool, bool) -> bool| {
        records
            .iter()
            .zip(predicted)
            .filter(|(r, p)| f(r.answer == "true", p.as_str() == "true"))
            .count() as f64
    };
    let n = records.len() as f64;
    let (tp, positive, predicted_positive) = (count(&|t, p| t && p), count(&|t, _| t), count(&|_, p| p));
    let correct = count(&|t, p| t == p);
    let ratio = |a: f64, b: f64| if b == 0.0 { 0.0 } else { 100.0 * a / b };
    ReasoningReport {
        statements: records.len(),
        true_share: ratio(positive, n),
        accuracy: ratio(correct, n),
        per_type: accuracy_by(records, predicted, |r| r.question_type.clone()),
        per_family: accuracy_by(records, predicted, |r| r.family.clone()),
        precision: ratio(tp, predicted_positive),
        recall: ratio(tp, positive),
        f1: ratio(2.0 * tp, positive + predicted_positive),
    }
}

fn not_a_verifier(what: &str) -> Error {
    Error::Invalid(format!(
        "the model {what}, not true or false: fine-tune it on statements with \
         `edgevlm finetune reasoning`"
    ))
}

//! `edgevlm eval reasoning`: statements judged true or false, scored by accuracy
//! (overall, per statement type and family: for caption-derived statements the
//! type is the edit that made a false one) and by precision, recall and F1 of
//! "true".

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::predict::Predictor;
use super::tasks::{accuracy_by, predicted_answers};
use crate::data::datasets::{self, VERDICTS};
use crate::error::{Error, Result};

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
    let count = |f: &dyn Fn(bool, bool) -> bool| {
        set.records
            .iter()
            .zip(&predicted)
            .filter(|(r, p)| f(r.answer == "true", p.as_str() == "true"))
            .count() as f64
    };
    let n = set.records.len() as f64;
    let (tp, positive, predicted_positive) = (count(&|t, p| t && p), count(&|t, _| t), count(&|_, p| p));
    let correct = count(&|t, p| t == p);
    let ratio = |a: f64, b: f64| if b == 0.0 { 0.0 } else { 100.0 * a / b };
    Ok(ReasoningReport {
        statements: set.records.len(),
        true_share: ratio(positive, n),
        accuracy: ratio(correct, n),
        per_type: accuracy_by(&set.records, &predicted, |r| r.question_type.clone()),
        per_family: accuracy_by(&set.records, &predicted, |r| r.family.clone()),
        precision: ratio(tp, predicted_positive),
        recall: ratio(tp, positive),
        f1: ratio(2.0 * tp, positive + predicted_positive),
    })
}

fn not_a_verifier(what: &str) -> Error {
    Error::Invalid(format!(
        "the model {what}, not true or false: fine-tune it on statements with \
         `edgevlm finetune reasoning`"
    ))
}

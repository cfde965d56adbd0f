//! `edgevlm eval dialog`: dialog rounds answered with the earlier rounds and with
//! the history blanked, so the report shows what the history adds: accuracy overall,
//! per round, on rounds that need the history (per coreference distance) and on
//! those that stand alone; and the VisDial protocol (Das et al. 2017) — the correct
//! answer's rank among the candidates, here every answer the model knows — as MRR,
//! R@1/5/10 and mean rank.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::predict::Predictor;
use super::tasks::decode_images;
use crate::data::dialogs::{self, DialogRound};
use crate::error::{Error, Result};

#[derive(Debug, Serialize)]
pub struct DialogReport {
    pub rounds: usize,
    pub history_rounds: usize,
    pub with_history: Scores,
    pub history_blanked: Scores,
    /// Answer candidates each round is ranked among (the model's answers).
    pub candidates: usize,
}

#[derive(Debug, Serialize)]
pub struct Scores {
    pub accuracy: f64,
    /// On the rounds that need the history, and on those that do not.
    pub accuracy_history_rounds: f64,
    pub accuracy_standalone_rounds: f64,
    pub per_round: BTreeMap<usize, f64>,
    /// Rounds that need the history, by how many rounds back their referent is.
    pub per_distance: BTreeMap<usize, f64>,
    pub per_family: BTreeMap<String, f64>,
    pub mrr: f64,
    pub recall_at: [f64; 3],
    pub mean_rank: f64,
}

pub fn dialog(model: &dyn Predictor, data: &Path) -> Result<DialogReport> {
    if !model.has_vqa() {
        return Err(Error::Invalid(
            "the model has no answer head; fine-tune it with `edgevlm finetune dialog`".into(),
        ));
    }
    let with = dialogs::rounds(data, true)?;
    let without = dialogs::rounds(data, false)?;
    Ok(DialogReport {
        rounds: with.len(),
        history_rounds: with.iter().filter(|r| r.distance.is_some()).count(),
        with_history: scores(model, &with)?,
        history_blanked: scores(model, &without)?,
        candidates: model.answer_names().len(),
    })
}

fn scores(model: &dyn Predictor, rounds: &[DialogRound]) -> Result<Scores> {
    let records: Vec<_> = rounds.iter().map(|r| r.record.clone()).collect();
    let (store, indices) = decode_images(&records, model)?;
    let questions: Vec<(usize, String)> = records
        .iter()
        .zip(&indices)
        .map(|(r, &i)| (i, r.question.clone()))
        .collect();
    let probabilities = model.answer_probabilities(&store, &questions)?;
    let names = model.answer_names();
    // 1 for the most likely answer; an answer the model does not know ranks last.
    let ranks: Vec<usize> = records
        .iter()
        .zip(&probabilities)
        .map(|(r, p)| match names.iter().position(|n| *n == r.answer) {
            Some(truth) => 1 + p.iter().filter(|&&q| q > p[truth]).count(),
            None => names.len() + 1,
        })
        .collect();
    let mean = |of: &mut dyn Iterator<Item = f64>| {
        let (sum, n) = of.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
        if n == 0 {
            0.0
        } else {
            sum / n as f64
        }
    };
    let correct = |i: usize| 100.0 * (ranks[i] == 1) as u8 as f64;
    let grouped = |key: &dyn Fn(&DialogRound) -> Option<String>| {
        let mut groups: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for (i, r) in rounds.iter().enumerate() {
            if let Some(k) = key(r) {
                groups.entry(k).or_default().push(correct(i));
            }
        }
        groups
            .into_iter()
            .map(|(k, v)| (k, mean(&mut v.into_iter())))
            .collect::<BTreeMap<String, f64>>()
    };
    let numbered = |m: BTreeMap<String, f64>| -> BTreeMap<usize, f64> {
        m.into_iter()
            .filter_map(|(k, v)| Some((k.parse().ok()?, v)))
            .collect()
    };
    let n = rounds.len();
    Ok(Scores {
        accuracy: mean(&mut (0..n).map(correct)),
        accuracy_history_rounds: mean(&mut (0..n).filter(|&i| rounds[i].distance.is_some()).map(correct)),
        accuracy_standalone_rounds: mean(&mut (0..n).filter(|&i| rounds[i].distance.is_none()).map(correct)),
        per_round: numbered(grouped(&|r| Some(r.round.to_string()))),
        per_distance: numbered(grouped(&|r| r.distance.map(|d| d.to_string()))),
        per_family: grouped(&|r| r.record.family.clone()),
        mrr: mean(&mut ranks.iter().map(|&r| 1.0 / r as f64)),
        recall_at: [1, 5, 10].map(|k| mean(&mut ranks.iter().map(|&r| 100.0 * (r <= k) as u8 as f64))),
        mean_rank: mean(&mut ranks.iter().map(|&r| r as f64)),
    })
}

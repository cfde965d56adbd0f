//! Macro-averaged precision, recall and F1 over answer classes, as scikit-learn's
//! `precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0)`.
//!
//! Classes are the union of true and predicted labels (compared as given: normalise answers first,
//! e.g. with [`normalize_answer`](super::normalize_answer)). Per class, with tp/fp/fn counts:
//! precision `tp / (tp + fp)`, recall `tp / (tp + fn)`, F1 `2 tp / (2 tp + fp + fn)`, each 0 when its
//! denominator is 0. So a class that is never predicted has precision 0 (and recall 0 if it has
//! true examples); a class that is predicted but never true has recall 0. The macro scores are the
//! unweighted means over classes (the mean of per-class F1, not the F1 of the means).

use std::collections::BTreeMap;

use super::error::{check_parallel, Result};

/// Macro-averaged scores in 0..=1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MacroScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Number of classes averaged over.
    pub classes: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct ClassCounts {
    true_positives: usize,
    predicted: usize,
    actual: usize,
}

/// Macro precision, recall and F1 of `predicted_labels` against `true_labels` (parallel lists).
pub fn macro_precision_recall_f1<S: AsRef<str>>(
    true_labels: &[S],
    predicted_labels: &[S],
) -> Result<MacroScores> {
    check_parallel(
        "true labels vs predicted labels",
        true_labels.len(),
        predicted_labels.len(),
    )?;
    // Sorted like sklearn's labels, so the means add up in the same order.
    let mut classes: BTreeMap<&str, ClassCounts> = BTreeMap::new();
    for (truth, prediction) in true_labels.iter().zip(predicted_labels) {
        let (truth, prediction) = (truth.as_ref(), prediction.as_ref());
        classes.entry(truth).or_default().actual += 1;
        classes.entry(prediction).or_default().predicted += 1;
        if truth == prediction {
            classes.entry(truth).or_default().true_positives += 1;
        }
    }
    let ratio = |numerator: usize, denominator: usize| {
        if denominator == 0 {
            0.0
        } else {
            numerator as f64 / denominator as f64
        }
    };
    let (mut precision, mut recall, mut f1) = (0.0, 0.0, 0.0);
    for counts in classes.values() {
        precision += ratio(counts.true_positives, counts.predicted);
        recall += ratio(counts.true_positives, counts.actual);
        f1 += ratio(2 * counts.true_positives, counts.actual + counts.predicted);
    }
    let count = classes.len() as f64;
    Ok(MacroScores {
        precision: precision / count,
        recall: recall / count,
        f1: f1 / count,
        classes: classes.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::error::MetricsError;
    use super::super::test_fixtures::assert_close;
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Fixture {
        cases: BTreeMap<String, Case>,
    }

    #[derive(Deserialize)]
    struct Case {
        #[serde(rename = "true")]
        true_labels: Vec<String>,
        predicted: Vec<String>,
        precision: f64,
        recall: f64,
        f1: f64,
    }

    #[test]
    fn matches_sklearn_macro_average() {
        let fixture: Fixture = serde_json::from_str(include_str!("fixtures/classification.json"))
            .expect("classification.json parses");
        for (name, case) in fixture.cases {
            let scores =
                macro_precision_recall_f1(&case.true_labels, &case.predicted).expect("parallel lists");
            assert_close(
                scores.precision,
                case.precision,
                1e-12,
                &format!("{name} precision"),
            );
            assert_close(scores.recall, case.recall, 1e-12, &format!("{name} recall"));
            assert_close(scores.f1, case.f1, 1e-12, &format!("{name} F1"));
        }
    }

    #[test]
    fn classes_are_the_union_of_true_and_predicted_labels() {
        let scores = macro_precision_recall_f1(&["a", "a", "b"], &["a", "c", "c"]).expect("parallel lists");
        assert_eq!(scores.classes, 3);
    }

    #[test]
    fn rejects_mismatched_lengths() {
        assert_eq!(
            macro_precision_recall_f1(&["a"], &["a", "b"]),
            Err(MetricsError::LengthMismatch {
                what: "true labels vs predicted labels",
                left: 1,
                right: 2
            })
        );
    }
}

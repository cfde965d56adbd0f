//! VQA accuracy: the official VQA v2 soft accuracy (Antol et al., 2015; evaluation code VQAEval in
//! GT-Vision-Lab/VQA, PythonEvaluationTools/vqaEvaluation/vqaEval.py, commit c4e6a0e4) and plain
//! exact match.
//!
//! Soft accuracy of one question with n human answers (10 in VQA v2): for each human answer, the
//! prediction scores `min(1, matches among the other n - 1 humans / 3)`; the question's accuracy is
//! the mean of these n scores, i.e. `min(1, #humans that gave the answer / 3)` averaged over the
//! subsets of n - 1 humans. As upstream does:
//! - the prediction goes through [`normalize_answer`];
//! - human answers are compared as given, except that when the humans disagree they go through
//!   [`normalize_punctuation`] only. VQA v2 annotations are already lower case with digits, so
//!   human answers from elsewhere should be brought into that form first.
//!
//! Accuracies are percentages (0..=100) like upstream's, but not rounded to two decimals.

use std::collections::{BTreeMap, HashSet};

use super::error::{check_parallel, MetricsError, Result};
use super::vqa_normalize::{normalize_answer, normalize_punctuation};

/// One answered question.
#[derive(Debug, Clone, PartialEq)]
pub struct VqaQuestion {
    /// Upstream's `question_type` (e.g. "what color is the"); any grouping label works.
    pub question_type: String,
    pub predicted_answer: String,
    /// The human answers (10 per question in VQA v2).
    pub human_answers: Vec<String>,
}

/// Soft accuracies in percent.
#[derive(Debug, Clone, PartialEq)]
pub struct VqaAccuracy {
    pub overall: f64,
    pub per_question_type: BTreeMap<String, f64>,
    /// In input order.
    pub per_question: Vec<f64>,
}

/// Official VQA soft accuracy of one question, in 0..=1.
pub fn question_soft_accuracy<S: AsRef<str>>(predicted_answer: &str, human_answers: &[S]) -> Result<f64> {
    if human_answers.is_empty() {
        return Err(MetricsError::Empty {
            what: "human answers",
        });
    }
    let predicted = normalize_answer(predicted_answer);
    let distinct: HashSet<&str> = human_answers.iter().map(AsRef::as_ref).collect();
    let matches: Vec<bool> = human_answers
        .iter()
        .map(|answer| {
            let answer = answer.as_ref();
            if distinct.len() > 1 {
                normalize_punctuation(answer) == predicted
            } else {
                answer == predicted
            }
        })
        .collect();
    let total_matches = matches.iter().filter(|&&m| m).count();
    let leave_one_out_sum: f64 = matches
        .iter()
        .map(|&left_out_matches| {
            let others_matching = total_matches - usize::from(left_out_matches);
            (others_matching as f64 / 3.0).min(1.0)
        })
        .sum();
    Ok(leave_one_out_sum / human_answers.len() as f64)
}

/// Official VQA soft accuracy over a question set: overall, per question type and per question.
pub fn vqa_accuracy(questions: &[VqaQuestion]) -> Result<VqaAccuracy> {
    if questions.is_empty() {
        return Err(MetricsError::Empty { what: "questions" });
    }
    let mut accuracies = Vec::with_capacity(questions.len());
    let mut by_type: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (index, question) in questions.iter().enumerate() {
        let accuracy =
            question_soft_accuracy(&question.predicted_answer, &question.human_answers).map_err(|_| {
                MetricsError::EmptyItem {
                    what: "question",
                    index,
                    missing: "human answers",
                }
            })?;
        accuracies.push(accuracy);
        by_type.entry(&question.question_type).or_default().push(accuracy);
    }
    // Percentages formed as upstream's setAccuracy and setEvalQA form them.
    let percent_of_mean = |values: &[f64]| 100.0 * values.iter().sum::<f64>() / values.len() as f64;
    Ok(VqaAccuracy {
        overall: percent_of_mean(&accuracies),
        per_question_type: by_type
            .into_iter()
            .map(|(question_type, values)| (question_type.to_string(), percent_of_mean(&values)))
            .collect(),
        per_question: accuracies.iter().map(|accuracy| 100.0 * accuracy).collect(),
    })
}

/// Percentage of predictions equal to their single reference answer after both went through
/// [`normalize_answer`].
pub fn exact_match_accuracy<S: AsRef<str>>(predicted_answers: &[S], answers: &[S]) -> Result<f64> {
    check_parallel(
        "predicted answers vs answers",
        predicted_answers.len(),
        answers.len(),
    )?;
    let matches = predicted_answers
        .iter()
        .zip(answers)
        .filter(|(predicted, answer)| {
            normalize_answer(predicted.as_ref()) == normalize_answer(answer.as_ref())
        })
        .count();
    Ok(100.0 * matches as f64 / answers.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::super::test_fixtures::assert_close;
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Fixture {
        questions: Vec<FixtureQuestion>,
        per_question_accuracy: Vec<f64>,
        overall_accuracy: f64,
        per_question_type_accuracy: BTreeMap<String, f64>,
        exact_match: ExactMatch,
    }

    #[derive(Deserialize)]
    struct FixtureQuestion {
        question_type: String,
        prediction: String,
        human_answers: Vec<String>,
    }

    #[derive(Deserialize)]
    struct ExactMatch {
        predictions: Vec<String>,
        answers: Vec<String>,
        accuracy: f64,
    }

    fn fixture() -> Fixture {
        serde_json::from_str(include_str!("fixtures/vqa.json")).expect("vqa.json parses")
    }

    #[test]
    fn soft_accuracy_matches_the_official_evaluation() {
        let fixture = fixture();
        let questions: Vec<VqaQuestion> = fixture
            .questions
            .into_iter()
            .map(|q| VqaQuestion {
                question_type: q.question_type,
                predicted_answer: q.prediction,
                human_answers: q.human_answers,
            })
            .collect();
        let accuracy = vqa_accuracy(&questions).expect("valid questions");
        assert_close(accuracy.overall, fixture.overall_accuracy, 1e-12, "overall");
        assert_eq!(accuracy.per_question.len(), fixture.per_question_accuracy.len());
        for (index, (ours, theirs)) in accuracy
            .per_question
            .iter()
            .zip(&fixture.per_question_accuracy)
            .enumerate()
        {
            assert_close(*ours, *theirs, 1e-12, &format!("question {index}"));
        }
        assert_eq!(
            accuracy.per_question_type.keys().collect::<Vec<_>>(),
            fixture.per_question_type_accuracy.keys().collect::<Vec<_>>()
        );
        for (question_type, theirs) in &fixture.per_question_type_accuracy {
            assert_close(
                accuracy.per_question_type[question_type],
                *theirs,
                1e-12,
                question_type,
            );
        }
    }

    #[test]
    fn exact_match_matches_the_fixture() {
        let fixture = fixture().exact_match;
        let accuracy = exact_match_accuracy(&fixture.predictions, &fixture.answers).expect("parallel lists");
        assert_close(accuracy, fixture.accuracy, 1e-12, "exact match");
    }

    #[test]
    fn rejects_questions_without_human_answers() {
        let no_answers: [&str; 0] = [];
        assert_eq!(
            question_soft_accuracy("yes", &no_answers),
            Err(MetricsError::Empty {
                what: "human answers"
            })
        );
        let question = VqaQuestion {
            question_type: "is the".into(),
            predicted_answer: "yes".into(),
            human_answers: vec![],
        };
        assert_eq!(
            vqa_accuracy(&[question]),
            Err(MetricsError::EmptyItem {
                what: "question",
                index: 0,
                missing: "human answers"
            })
        );
        assert_eq!(vqa_accuracy(&[]), Err(MetricsError::Empty { what: "questions" }));
    }
}

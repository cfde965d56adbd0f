//! Dialogs (`dialogs.jsonl`, one dialog per line: `{"image", "rounds": [{"question",
//! "answer", "family"?, "distance"?}]}`, as `edgevlm data synth` writes them) read
//! as rounds, each a question the VQA head answers: the round's question composed
//! with the dialog's earlier rounds ([`edgevlm_shared::dialog::compose`]), or
//! alone when the history is blanked.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use edgevlm_shared::dialog;
use serde::Deserialize;

use super::{DataError, Result, VqaRecord};

/// Longest line read (a dialog of tens of rounds is a few kB).
const MAX_LINE: usize = 64 * 1024;
/// Most rounds one dialog may have.
const MAX_ROUNDS: usize = 64;

#[derive(Deserialize)]
struct Line {
    image: String,
    rounds: Vec<RoundLine>,
}

#[derive(Deserialize)]
struct RoundLine {
    question: String,
    answer: String,
    #[serde(default)]
    family: Option<String>,
    #[serde(default)]
    distance: Option<usize>,
}

/// One round as the model reads it.
#[derive(Debug, Clone)]
pub struct DialogRound {
    /// The composed question (or the question alone), its answer; `question_type`
    /// is `history` for rounds that need the history, else `standalone`.
    pub record: VqaRecord,
    /// 1 for the first round.
    pub round: usize,
    /// Rounds back to the referent, for rounds that need the history.
    pub distance: Option<usize>,
}

/// Every round of every dialog in `path` (a file, or a folder's `dialogs.jsonl`);
/// with `history` false, each round's question stands alone.
pub fn rounds(path: &Path, history: bool) -> Result<Vec<DialogRound>> {
    let file = if path.is_dir() {
        path.join("dialogs.jsonl")
    } else {
        path.to_path_buf()
    };
    let base = file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut reader =
        std::io::BufReader::new(std::fs::File::open(&file).map_err(|e| DataError::io(&file, e))?);
    let mut out = Vec::new();
    let mut bytes = Vec::new();
    for i in 0.. {
        // Read in bounded memory: a line longer than a dialog may be is refused
        // before it is all in memory.
        bytes.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut bytes)
            .map_err(|e| DataError::io(&file, e))?;
        if n == 0 {
            break;
        }
        let at = |reason: String| DataError::layout(&file, format!("line {}: {reason}", i + 1));
        if bytes.len() > MAX_LINE && bytes.last() != Some(&b'\n') {
            return Err(at(format!("longer than the {MAX_LINE} bytes a dialog may take")));
        }
        let line = std::str::from_utf8(&bytes).map_err(|_| at("not UTF-8 text".into()))?;
        if line.trim().is_empty() {
            continue;
        }
        let dialog: Line = serde_json::from_str(line).map_err(|e| {
            at(format!(
                "expected {{\"image\", \"rounds\": [{{\"question\", \"answer\"}}]}}: {e}"
            ))
        })?;
        if dialog.rounds.is_empty() || dialog.rounds.len() > MAX_ROUNDS {
            return Err(at(format!(
                "{} rounds; a dialog has 1 to {MAX_ROUNDS}",
                dialog.rounds.len()
            )));
        }
        let image: PathBuf = base.join(&dialog.image);
        let mut earlier: Vec<(&str, &str)> = Vec::new();
        for (k, r) in dialog.rounds.iter().enumerate() {
            if r.question.trim().is_empty() || r.answer.trim().is_empty() {
                return Err(at(format!("round {}: empty question or answer", k + 1)));
            }
            let question = if history {
                dialog::compose(&r.question, &earlier)
            } else {
                r.question.trim().to_string()
            };
            let answer = r.answer.trim().to_string();
            out.push(DialogRound {
                record: VqaRecord {
                    image: image.clone(),
                    question,
                    answers: vec![answer.clone()],
                    answer,
                    question_type: Some(
                        if r.distance.is_some() {
                            "history"
                        } else {
                            "standalone"
                        }
                        .into(),
                    ),
                    family: r.family.clone(),
                    focus: None,
                },
                round: k + 1,
                distance: r.distance,
            });
            earlier.push((&r.question, &r.answer));
        }
    }
    if out.is_empty() {
        return Err(DataError::layout(&file, "no dialogs"));
    }
    Ok(out)
}

#[derive(serde::Serialize)]
struct DialogOut<'a> {
    image: &'a str,
    rounds: Vec<RoundOut<'a>>,
}

#[derive(serde::Serialize)]
struct RoundOut<'a> {
    question: &'a str,
    answer: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    family: Option<&'a str>,
}

/// Dialogs made of a question set's questions (any JSONL of `{"image", "question",
/// "answer"}`): each photo's questions in the file's order, `rounds` to a dialog.
/// Nothing in them refers back, so they measure what a history of unrelated
/// questions does to the answers. Returns (dialogs, rounds) written to `out`.
pub fn from_questions(records: &[VqaRecord], rounds: usize, out: &Path) -> Result<(usize, usize)> {
    let rounds = rounds.clamp(1, MAX_ROUNDS);
    let mut by_image: Vec<(&Path, Vec<&VqaRecord>)> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for r in records {
        let at = *index.entry(r.image.as_path()).or_insert_with(|| {
            by_image.push((r.image.as_path(), Vec::new()));
            by_image.len() - 1
        });
        by_image[at].1.push(r);
    }
    let mut text = String::new();
    let (mut dialogs, mut written) = (0, 0);
    for (image, questions) in &by_image {
        let image = image.to_string_lossy();
        for chunk in questions.chunks(rounds) {
            let dialog = DialogOut {
                image: &image,
                rounds: chunk
                    .iter()
                    .map(|r| RoundOut {
                        question: &r.question,
                        answer: &r.answer,
                        family: r.family.as_deref(),
                    })
                    .collect(),
            };
            text.push_str(
                &serde_json::to_string(&dialog).map_err(|e| DataError::layout(out, e.to_string()))?,
            );
            text.push('\n');
            dialogs += 1;
            written += chunk.len();
        }
    }
    std::fs::write(out, text).map_err(|e| DataError::io(out, e))?;
    Ok((dialogs, written))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_carry_their_history_and_refuse_malformed_dialogs() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dialogs.jsonl");
        std::fs::write(
            &file,
            r#"{"image": "a.png", "rounds": [{"question": "what colour is the leftmost object?", "answer": "red", "family": "intro-extreme"}, {"question": "what shape is it?", "answer": "circle", "distance": 1}]}"#,
        )
        .unwrap();
        let with = rounds(dir.path(), true).unwrap();
        assert_eq!(with.len(), 2);
        assert_eq!(
            with[1].record.question,
            "what shape is it? | what colour is the leftmost object? red"
        );
        assert_eq!(with[1].record.question_type.as_deref(), Some("history"));
        assert_eq!((with[1].round, with[1].distance), (2, Some(1)));
        let without = rounds(&file, false).unwrap();
        assert_eq!(without[1].record.question, "what shape is it?");
        assert_eq!(without[0].record.image, dir.path().join("a.png"));

        std::fs::write(&file, "{\"image\": \"a.png\", \"rounds\": []}\n").unwrap();
        let err = rounds(&file, true).unwrap_err().to_string();
        assert!(
            err.contains("dialogs.jsonl") && err.contains("line 1") && err.contains("0 rounds"),
            "{err}"
        );
        std::fs::write(&file, "{\"image\": 3}\n").unwrap();
        let err = rounds(&file, true).unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("expected"), "{err}");
        std::fs::write(&file, "x".repeat(10 * MAX_LINE)).unwrap();
        let err = rounds(&file, true).unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("longer than"), "{err}");
    }

    #[test]
    fn a_question_set_becomes_dialogs_per_photo() {
        let dir = tempfile::tempdir().unwrap();
        let q = |image: &str, question: &str| VqaRecord {
            image: dir.path().join(image),
            question: question.into(),
            answer: "yes".into(),
            answers: vec!["yes".into()],
            question_type: None,
            family: Some("exists".into()),
            focus: None,
        };
        let records = vec![
            q("a.jpg", "q1"),
            q("b.jpg", "q2"),
            q("a.jpg", "q3"),
            q("a.jpg", "q4"),
        ];
        let out = dir.path().join("dialogs.jsonl");
        assert_eq!(from_questions(&records, 2, &out).unwrap(), (3, 4));
        let read = rounds(&out, true).unwrap();
        assert_eq!(read.len(), 4);
        assert_eq!(read[1].record.question, "q3 | q1 yes");
        assert_eq!(read[1].round, 2);
        assert!(read.iter().all(|r| r.distance.is_none()));
    }
}

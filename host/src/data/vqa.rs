//! Question answering sets: VQA v2 (`*questions*.json` + `*annotations*.json` over
//! COCO images) and a simple JSONL form, one `{"image", "question", "answer"}` per
//! line (optional `answers` list and `type`), images relative to the file.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::coco::find_image_dir;
use super::error::{read_json, DataError, Result};
use super::record::{check_images, Dataset, LoadOptions, Pending, SkipLog, VqaRecord};

#[derive(Deserialize)]
struct V2Questions {
    #[serde(default)]
    data_subtype: Option<String>,
    questions: Vec<V2Question>,
}

#[derive(Deserialize)]
struct V2Question {
    image_id: u64,
    question: String,
    question_id: u64,
}

#[derive(Deserialize)]
struct V2Annotations {
    annotations: Vec<V2Annotation>,
}

#[derive(Deserialize)]
struct V2Annotation {
    question_id: u64,
    multiple_choice_answer: String,
    #[serde(default)]
    answers: Vec<V2Answer>,
    #[serde(default)]
    question_type: Option<String>,
}

#[derive(Deserialize)]
struct V2Answer {
    answer: String,
}

/// Loads VQA v2 from a folder holding one questions file and one annotations file
/// (directly or under `annotations/`/`questions/`).
pub fn load_v2(dir: &Path, opts: LoadOptions) -> Result<Dataset<VqaRecord>> {
    let questions_file = find_one(dir, "questions")?;
    let annotations_file = find_one(dir, "annotations")?;
    let questions: V2Questions = read_json(&questions_file)?;
    let annotations: V2Annotations = read_json(&annotations_file)?;
    let subset = questions.data_subtype.clone().unwrap_or_default();
    let by_id: HashMap<u64, &V2Annotation> = annotations
        .annotations
        .iter()
        .map(|a| (a.question_id, a))
        .collect();

    let file_name = |id: u64| format!("COCO_{subset}_{id:012}.jpg");
    let probe = questions.questions.first().map(|q| file_name(q.image_id));
    let image_dir = find_image_dir(&questions_file, &subset, probe.as_deref())?;

    let mut skipped = SkipLog::default();
    let mut pending = Vec::new();
    for (i, q) in questions.questions.iter().enumerate() {
        let location = format!("questions[{i}] (question_id {})", q.question_id);
        let Some(ann) = by_id.get(&q.question_id) else {
            skipped.skip(
                opts,
                &annotations_file,
                &location,
                "no annotation for this question_id",
            )?;
            continue;
        };
        if q.question.trim().is_empty() || ann.multiple_choice_answer.trim().is_empty() {
            skipped.skip(opts, &questions_file, &location, "empty question or answer")?;
            continue;
        }
        let mut answers: Vec<String> = ann.answers.iter().map(|a| a.answer.trim().to_string()).collect();
        if answers.is_empty() {
            answers.push(ann.multiple_choice_answer.trim().to_string());
        }
        pending.push(Pending {
            record: VqaRecord {
                image: image_dir.join(file_name(q.image_id)),
                question: q.question.trim().to_string(),
                answer: ann.multiple_choice_answer.trim().to_string(),
                answers,
                question_type: ann.question_type.clone(),
                family: None,
                focus: None,
            },
            source: questions_file.clone(),
            location,
        });
    }
    check_images(dir, pending, skipped, opts)
}

fn find_one(dir: &Path, kind: &str) -> Result<PathBuf> {
    let mut found = Vec::new();
    for sub in [dir.to_path_buf(), dir.join("annotations"), dir.join("questions")] {
        let Ok(entries) = std::fs::read_dir(&sub) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_lowercase();
            if name.ends_with(".json") && name.contains(kind) {
                found.push(entry.path());
            }
        }
    }
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(DataError::layout(
            dir,
            format!("expected a VQA v2 *{kind}*.json file here or in a subfolder"),
        )),
        _ => Err(DataError::layout(
            dir,
            format!(
                "found {} *{kind}*.json files; point at a folder with one subset",
                found.len()
            ),
        )),
    }
}

#[derive(Deserialize)]
struct JsonlLine {
    image: String,
    /// A statement to verify (answer `true` or `false`) reads as a question.
    #[serde(alias = "statement")]
    question: String,
    answer: String,
    #[serde(default)]
    answers: Vec<String>,
    #[serde(default, rename = "type")]
    question_type: Option<String>,
    #[serde(default)]
    family: Option<String>,
    #[serde(default)]
    focus: Option<[f32; 2]>,
}

/// Loads the JSONL form; `path` is the file or a folder with `questions.jsonl`.
pub fn load_jsonl(path: &Path, opts: LoadOptions) -> Result<Dataset<VqaRecord>> {
    let file = if path.is_dir() {
        path.join("questions.jsonl")
    } else {
        path.to_path_buf()
    };
    let base = file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let reader = std::io::BufReader::new(std::fs::File::open(&file).map_err(|e| DataError::io(&file, e))?);
    let mut skipped = SkipLog::default();
    let mut pending = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| DataError::io(&file, e))?;
        let location = format!("line {}", i + 1);
        if line.trim().is_empty() {
            continue;
        }
        let rec: JsonlLine = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                skipped.skip(
                    opts,
                    &file,
                    &location,
                    format!("malformed JSON (expected {{\"image\", \"question\", \"answer\"}}): {e}"),
                )?;
                continue;
            }
        };
        if rec.question.trim().is_empty() || rec.answer.trim().is_empty() || rec.image.trim().is_empty() {
            skipped.skip(opts, &file, &location, "empty image, question or answer")?;
            continue;
        }
        if let Some(focus) = rec.focus {
            if !focus.iter().all(|v| (0.0..=1.0).contains(v)) {
                skipped.skip(
                    opts,
                    &file,
                    &location,
                    format!("focus {focus:?}: expected two fractions of the image's side in [0, 1]"),
                )?;
                continue;
            }
        }
        let answers = if rec.answers.is_empty() {
            vec![rec.answer.clone()]
        } else {
            rec.answers
        };
        pending.push(Pending {
            record: VqaRecord {
                image: base.join(&rec.image),
                question: rec.question.trim().to_string(),
                answer: rec.answer.trim().to_string(),
                answers,
                question_type: rec.question_type,
                family: rec.family,
                focus: rec.focus,
            },
            source: file.clone(),
            location,
        });
    }
    check_images(path, pending, skipped, opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::{write_jpeg, write_png, write_text};

    #[test]
    fn v2_joins_questions_and_annotations() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("val2014")).unwrap();
        write_jpeg(&root.join("val2014/COCO_val2014_000000000042.jpg"), 4, 4);
        write_text(
            &root.join("v2_OpenEnded_mscoco_val2014_questions.json"),
            r#"{"data_subtype":"val2014","questions":[
                {"image_id":42,"question":"What color is the cat?","question_id":420},
                {"image_id":42,"question":"Is it day?","question_id":421},
                {"image_id":7,"question":"Where?","question_id":70}]}"#,
        );
        write_text(
            &root.join("v2_mscoco_val2014_annotations.json"),
            r#"{"annotations":[
                {"question_id":420,"image_id":42,"multiple_choice_answer":"black","question_type":"what color is the",
                 "answers":[{"answer":"black","answer_id":1},{"answer":"dark","answer_id":2}]},
                {"question_id":70,"image_id":7,"multiple_choice_answer":"park"}]}"#,
        );
        let ds = load_v2(root, LoadOptions::default()).unwrap();
        assert_eq!(ds.records.len(), 1);
        let r = &ds.records[0];
        assert_eq!((r.answer.as_str(), r.answers.len()), ("black", 2));
        assert_eq!(r.question_type.as_deref(), Some("what color is the"));
        assert_eq!(ds.skipped.count, 2, "one unannotated question, one missing image");
    }

    #[test]
    fn jsonl_skips_malformed_lines_and_strict_names_them() {
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("images/0.png"), 4, 4);
        write_text(
            &dir.path().join("questions.jsonl"),
            "{\"image\":\"images/0.png\",\"question\":\"what shape?\",\"answer\":\"circle\",\"type\":\"relational\",\"family\":\"shape\",\"focus\":[0.25,0.75]}\n\
             {\"image\":\"images/0.png\",\"question\":\"oops\"\n\
             \n\
             {\"image\":\"images/1.png\",\"question\":\"q\",\"answer\":\"a\"}\n\
             {\"image\":\"images/0.png\",\"question\":\"where?\",\"answer\":\"left\",\"focus\":[1.5,0.2]}\n",
        );
        let ds = load_jsonl(dir.path(), LoadOptions::default()).unwrap();
        assert_eq!(ds.records.len(), 1);
        assert_eq!(ds.records[0].question_type.as_deref(), Some("relational"));
        assert_eq!(ds.records[0].family.as_deref(), Some("shape"));
        assert_eq!(ds.records[0].focus, Some([0.25, 0.75]));
        assert_eq!(ds.skipped.count, 3);
        assert!(
            ds.skipped
                .warning()
                .is_some_and(|w| w.contains("expected two fractions")),
            "{:?}",
            ds.skipped.warning()
        );
        let err = load_jsonl(
            dir.path(),
            LoadOptions {
                strict: true,
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("questions.jsonl, line 2") && err.contains("malformed JSON"),
            "{err}"
        );
    }
}

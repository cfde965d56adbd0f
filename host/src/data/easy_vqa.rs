//! easy-VQA (PyPI `easy-vqa==1.0`): `data/{train,test}/questions.json` holding
//! `[question, answer, image_id]` triples and `data/{train,test}/images/<id>.png`.

use std::path::Path;

use serde_json::Value;

use super::error::{read_json, DataError, Result};
use super::record::{check_images, Dataset, LoadOptions, Pending, SkipLog, VqaRecord};

/// `dir` is the `data` folder (holding `train/`, `test/`) or one split's folder.
pub fn load(dir: &Path, split: Option<&str>, opts: LoadOptions) -> Result<Dataset<VqaRecord>> {
    let split_dir = match split {
        Some(s) => dir.join(s),
        None if dir.join("questions.json").is_file() => dir.to_path_buf(),
        None => dir.join("train"),
    };
    let file = split_dir.join("questions.json");
    if !file.is_file() {
        return Err(DataError::layout(
            &file,
            "expected easy-VQA questions.json (try --split train|test)",
        ));
    }
    let triples: Vec<Value> = read_json(&file)?;
    let mut skipped = SkipLog::default();
    let mut pending = Vec::new();
    for (i, triple) in triples.iter().enumerate() {
        let location = format!("record {i}");
        let parsed = match triple.as_array().map(Vec::as_slice) {
            Some([Value::String(q), Value::String(a), id]) if id.is_u64() || id.is_string() => {
                let id = id
                    .as_u64()
                    .map(|n| n.to_string())
                    .or_else(|| id.as_str().map(String::from));
                Some((q.trim(), a.trim(), id.unwrap_or_default()))
            }
            _ => None,
        };
        let Some((question, answer, id)) = parsed else {
            skipped.skip(opts, &file, &location, "expected [question, answer, image_id]")?;
            continue;
        };
        if question.is_empty() || answer.is_empty() {
            skipped.skip(opts, &file, &location, "empty question or answer")?;
            continue;
        }
        pending.push(Pending {
            record: VqaRecord {
                image: split_dir.join("images").join(format!("{id}.png")),
                question: question.to_string(),
                answer: answer.to_string(),
                answers: vec![answer.to_string()],
                question_type: None,
                family: None,
                focus: None,
            },
            source: file.clone(),
            location,
        });
    }
    check_images(dir, pending, skipped, opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::{write_png, write_text};

    #[test]
    fn reads_triples_and_skips_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let train = dir.path().join("train");
        write_png(&train.join("images/0.png"), 4, 4);
        write_png(&train.join("images/1.png"), 4, 4);
        write_text(
            &train.join("questions.json"),
            r#"[["what color is the shape?","blue",0],["is there a circle?","yes",1],["bad"],["where?","",1],["what shape?","circle",5]]"#,
        );
        let ds = load(dir.path(), None, LoadOptions::default()).unwrap();
        assert_eq!(ds.records.len(), 2);
        assert_eq!(ds.records[1].answer, "yes");
        assert_eq!(ds.skipped.count, 3);
        let err = load(dir.path(), Some("test"), LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("test/questions.json"), "{err}");
    }
}

//! Finding and loading the training data a command points at.

use std::path::Path;

use crate::data::{self, AnyDataset, CaptionRecord, Dataset, Format, LoadOptions, VqaRecord};

use crate::error::{Error, Result};

/// Guesses a folder's format from the files it holds.
pub fn detect(path: &Path, want_questions: bool) -> Option<Format> {
    let has = |name: &str| path.join(name).exists();
    if path.is_file() {
        let name = path.file_name()?.to_string_lossy().to_string();
        return Some(if name.ends_with(".jsonl") {
            Format::Jsonl
        } else if name.starts_with("captions_") {
            Format::Coco
        } else {
            Format::TextImage
        });
    }
    if want_questions {
        if has("questions.jsonl") {
            return Some(Format::Jsonl);
        }
        if has("train/questions.json") || has("questions.json") {
            return Some(Format::EasyVqa);
        }
        return Some(Format::VqaV2);
    }
    if has("captions.txt") && has("Images") {
        Some(Format::Flickr8k)
    } else if has("text_image_data.json") || has("captions.json") {
        Some(Format::TextImage)
    } else {
        Some(Format::Coco)
    }
}

/// Whether `path` holds questions and no captions (a JSONL file, easy-VQA, VQA v2).
pub fn questions_only(path: &Path) -> bool {
    matches!(
        detect(path, false),
        Some(Format::Jsonl | Format::EasyVqa | Format::VqaV2)
    )
}

fn report(skipped: &data::SkipLog) {
    if let Some(w) = skipped.warning() {
        eprintln!("{w}");
    }
}

pub fn captions(path: &Path, format: Option<Format>, split: Option<&str>) -> Result<Dataset<CaptionRecord>> {
    let format = format
        .or_else(|| detect(path, false))
        .unwrap_or(Format::TextImage);
    match data::load(format, path, split, LoadOptions::default())? {
        AnyDataset::Captions(d) => {
            report(&d.skipped);
            Ok(d.non_empty()?)
        }
        AnyDataset::Questions(_) => Err(Error::Invalid(format!(
            "{}: {format:?} holds questions, but this command needs captions",
            path.display()
        ))),
    }
}

pub fn questions(path: &Path, format: Option<Format>, split: Option<&str>) -> Result<Dataset<VqaRecord>> {
    let format = format.or_else(|| detect(path, true)).unwrap_or(Format::Jsonl);
    match data::load(format, path, split, LoadOptions::default())? {
        AnyDataset::Questions(d) => {
            report(&d.skipped);
            Ok(d.non_empty()?)
        }
        AnyDataset::Captions(_) => Err(Error::Invalid(format!(
            "{}: {format:?} holds captions, but this command needs questions",
            path.display()
        ))),
    }
}

/// The answers of a statement set, in the order of a reasoning model's classes.
pub const VERDICTS: [&str; 2] = ["false", "true"];

/// Statements to judge: a JSONL file, or a folder's `statements.jsonl`
/// (`{"image", "statement", "answer": "true"|"false"}`; NLVR's `True`/`False` read too).
pub fn statements(path: &Path, split: Option<&str>) -> Result<Dataset<VqaRecord>> {
    let file = if path.is_dir() {
        path.join("statements.jsonl")
    } else {
        path.to_path_buf()
    };
    let mut set = questions(&file, Some(Format::Jsonl), split)?;
    for r in &mut set.records {
        let verdict = r.answer.to_ascii_lowercase();
        if !VERDICTS.contains(&verdict.as_str()) {
            return Err(Error::Invalid(format!(
                "{}: the statement {:?} about {} is marked {:?}; expected true or false",
                file.display(),
                r.question,
                r.image.display(),
                r.answer
            )));
        }
        r.answers = vec![verdict.clone()];
        r.answer = verdict;
    }
    Ok(set)
}

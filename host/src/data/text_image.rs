//! The plain `text_image_data.json` form: a JSON list of `{"text", "image"}`,
//! images relative to the file. Rows of the same image are grouped.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::error::{read_json, Result};
use super::record::{check_images, CaptionRecord, Dataset, LoadOptions, Pending, SkipLog};

/// `path` is the JSON file, or a folder holding `text_image_data.json` or `captions.json`.
pub fn load(path: &Path, opts: LoadOptions) -> Result<Dataset<CaptionRecord>> {
    let file = if path.is_dir() {
        let named = path.join("text_image_data.json");
        if named.is_file() {
            named
        } else {
            path.join("captions.json")
        }
    } else {
        path.to_path_buf()
    };
    let base = file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let rows: Vec<Value> = read_json(&file)?;
    let mut skipped = SkipLog::default();
    let mut grouped: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        let location = format!("record {i}");
        let (Some(text), Some(image)) = (
            row.get("text").and_then(Value::as_str),
            row.get("image").and_then(Value::as_str),
        ) else {
            skipped.skip(
                opts,
                &file,
                &location,
                "expected {\"text\": string, \"image\": string}",
            )?;
            continue;
        };
        if text.trim().is_empty() || image.trim().is_empty() {
            skipped.skip(opts, &file, &location, "empty text or image")?;
            continue;
        }
        grouped
            .entry(image.to_string())
            .or_insert((i, Vec::new()))
            .1
            .push(text.trim().to_string());
    }
    let mut ordered: Vec<(String, (usize, Vec<String>))> = grouped.into_iter().collect();
    ordered.sort_by_key(|(_, (first, _))| *first);
    let pending = ordered
        .into_iter()
        .map(|(image, (first, captions))| Pending {
            record: CaptionRecord {
                image: base.join(image),
                captions,
            },
            source: file.clone(),
            location: format!("record {first}"),
        })
        .collect();
    check_images(path, pending, skipped, opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::{write_png, write_text};

    #[test]
    fn groups_texts_per_image() {
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("a.png"), 4, 4);
        write_text(
            &dir.path().join("text_image_data.json"),
            r#"[{"text":"one","image":"a.png"},{"text":"two","image":"a.png"},{"text":"","image":"a.png"},{"image":"a.png"},{"text":"x","image":"gone.png"}]"#,
        );
        let ds = load(dir.path(), LoadOptions::default()).unwrap();
        assert_eq!(ds.records.len(), 1);
        assert_eq!(ds.records[0].captions, ["one", "two"]);
        assert_eq!(ds.skipped.count, 3);
    }
}

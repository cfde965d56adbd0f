//! COCO captions: `captions_<subset>.json` (`images[{id, file_name}]`,
//! `annotations[{image_id, caption}]`) beside or above an image folder.
//!
//! Accepts the JSON file itself, or a folder holding it directly or under
//! `annotations/`. Images are looked for in `<root>/<subset>/`, `<root>/images/<subset>/`,
//! `<root>/images/` and `<root>/`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::{read_json, DataError, Result};
use super::record::{check_images, CaptionRecord, Dataset, LoadOptions, Pending, SkipLog};

#[derive(Deserialize)]
struct CocoFile {
    images: Vec<CocoImage>,
    annotations: Vec<CocoCaption>,
}

#[derive(Deserialize)]
struct CocoImage {
    id: u64,
    file_name: String,
}

#[derive(Deserialize)]
struct CocoCaption {
    image_id: u64,
    caption: String,
}

/// Loads one captions file, or every `captions_*.json` of a folder (only
/// `captions_<split>.json` when a split is named).
pub fn load(path: &Path, split: Option<&str>, opts: LoadOptions) -> Result<Dataset<CaptionRecord>> {
    let files = caption_files(path, split)?;
    let mut pending = Vec::new();
    let mut skipped = SkipLog::default();
    for file in &files {
        read_file(file, opts, &mut pending, &mut skipped)?;
    }
    check_images(path, pending, skipped, opts)
}

/// The subsets a COCO captions folder holds (`captions_<subset>.json`).
pub fn splits(path: &Path) -> Result<Vec<String>> {
    Ok(caption_files(path, None)?
        .iter()
        .filter_map(|f| {
            f.file_stem()?
                .to_str()?
                .strip_prefix("captions_")
                .map(str::to_string)
        })
        .collect())
}

fn caption_files(path: &Path, split: Option<&str>) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for dir in [path.to_path_buf(), path.join("annotations")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let wanted = match split {
                Some(s) => name == format!("captions_{s}.json"),
                None => name.starts_with("captions_") && name.ends_with(".json"),
            };
            if wanted {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    if files.is_empty() {
        let what = split.map_or("captions_*.json".to_string(), |s| format!("captions_{s}.json"));
        return Err(DataError::layout(
            path,
            format!("expected {what} here or under annotations/"),
        ));
    }
    Ok(files)
}

fn read_file(
    file: &Path,
    opts: LoadOptions,
    pending: &mut Vec<Pending<CaptionRecord>>,
    skipped: &mut SkipLog,
) -> Result<()> {
    let coco: CocoFile = read_json(file)?;
    let subset = file
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.strip_prefix("captions_"))
        .unwrap_or("")
        .to_string();
    let image_dir = find_image_dir(file, &subset, coco.images.first().map(|i| i.file_name.as_str()))?;
    let names: HashMap<u64, &str> = coco.images.iter().map(|i| (i.id, i.file_name.as_str())).collect();
    let mut grouped: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (i, ann) in coco.annotations.iter().enumerate() {
        let location = format!("annotations[{i}]");
        if !names.contains_key(&ann.image_id) {
            skipped.skip(
                opts,
                file,
                &location,
                format!("unknown image_id {}", ann.image_id),
            )?;
        } else if ann.caption.trim().is_empty() {
            skipped.skip(opts, file, &location, "empty caption")?;
        } else {
            grouped
                .entry(ann.image_id)
                .or_default()
                .push(ann.caption.trim().to_string());
        }
    }
    for (id, captions) in grouped {
        pending.push(Pending {
            record: CaptionRecord {
                image: image_dir.join(names[&id]),
                captions,
            },
            source: file.to_path_buf(),
            location: format!("image_id {id}"),
        });
    }
    Ok(())
}

/// The first candidate folder that holds the file's first image.
pub(crate) fn find_image_dir(file: &Path, subset: &str, probe: Option<&str>) -> Result<PathBuf> {
    let parent = file.parent().unwrap_or(Path::new("."));
    let root = if parent.file_name().is_some_and(|n| n == "annotations") {
        parent.parent().unwrap_or(parent)
    } else {
        parent
    };
    let candidates = [
        root.join(subset),
        root.join("images").join(subset),
        root.join("images"),
        root.to_path_buf(),
    ];
    let Some(probe) = probe else {
        return Ok(root.to_path_buf());
    };
    candidates
        .iter()
        .find(|dir| dir.join(probe).is_file())
        .cloned()
        .ok_or_else(|| {
            let tried: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
            DataError::layout(
                file,
                format!("cannot find image {probe}; looked in {}", tried.join(", ")),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::{write_jpeg, write_text};

    #[test]
    fn loads_standard_layout_and_skips_bad_annotations() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("val2017")).unwrap();
        write_jpeg(&root.join("val2017/000000000001.jpg"), 4, 4);
        write_jpeg(&root.join("val2017/000000000002.jpg"), 4, 4);
        write_text(
            &root.join("annotations/captions_val2017.json"),
            r#"{"images":[{"id":1,"file_name":"000000000001.jpg"},{"id":2,"file_name":"000000000002.jpg"},{"id":3,"file_name":"000000000003.jpg"}],
               "annotations":[{"image_id":1,"id":10,"caption":"A cat."},{"image_id":1,"id":11,"caption":"A cat, sleeping."},
               {"image_id":2,"id":12,"caption":"  "},{"image_id":9,"id":13,"caption":"Ghost."},{"image_id":3,"id":14,"caption":"Lost."}]}"#,
        );
        let ds = load(root, None, LoadOptions::default()).unwrap();
        assert_eq!(ds.records.len(), 1);
        assert_eq!(ds.records[0].captions, ["A cat.", "A cat, sleeping."]);
        assert_eq!(ds.skipped.count, 3, "{:?}", ds.skipped.first);
        assert!(ds
            .skipped
            .first
            .iter()
            .any(|s| s.reason.contains("unknown image_id 9")));
        let same = load(
            &root.join("annotations/captions_val2017.json"),
            None,
            LoadOptions::default(),
        )
        .unwrap();
        assert_eq!(same.records, ds.records);
    }

    #[test]
    fn malformed_json_names_file_and_position() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("captions_x.json");
        write_text(&file, "{\"images\": [\n  {\"id\": 1,, }\n]}");
        let err = load(&file, None, LoadOptions::default()).unwrap_err().to_string();
        assert!(err.contains("captions_x.json") && err.contains("line 2"), "{err}");
    }
}

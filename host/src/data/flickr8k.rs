//! Flickr8k in the Kaggle layout: `Images/`, `captions.txt` (CSV with header
//! `image,caption`, quoted fields may hold commas) and the split lists
//! `Flickr_8k.{train,dev,test}Images.txt`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use super::error::{DataError, Result};
use super::record::{check_images, CaptionRecord, Dataset, LoadOptions, Pending, SkipLog};

pub const SPLITS: [&str; 3] = ["train", "dev", "test"];

pub fn split_file(dir: &Path, split: &str) -> PathBuf {
    dir.join(format!("Flickr_8k.{split}Images.txt"))
}

/// Loads every captioned image, or only those listed for `split`.
pub fn load(dir: &Path, split: Option<&str>, opts: LoadOptions) -> Result<Dataset<CaptionRecord>> {
    let wanted = split.map(|s| read_split(dir, s)).transpose()?;
    let csv_path = dir.join("captions.txt");
    let images = dir.join("Images");
    if !images.is_dir() {
        return Err(DataError::layout(
            &images,
            "expected the Flickr8k image folder `Images/`",
        ));
    }
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(&csv_path)
        .map_err(|e| csv_error(&csv_path, e))?;
    let header = reader.headers().map_err(|e| csv_error(&csv_path, e))?.clone();
    if header.len() != 2 || &header[0] != "image" || &header[1] != "caption" {
        return Err(DataError::layout(
            &csv_path,
            format!(
                "expected the header `image,caption`, found `{}`",
                header.iter().collect::<Vec<_>>().join(",")
            ),
        ));
    }

    let mut skipped = SkipLog::default();
    // Captions grouped per image, in file order of first appearance.
    let mut grouped: BTreeMap<usize, (String, Vec<String>, String)> = BTreeMap::new();
    let mut slot_of: std::collections::HashMap<String, usize> = Default::default();
    for row in reader.records() {
        let row = match row {
            Ok(row) => row,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                skipped.skip(
                    opts,
                    &csv_path,
                    format!("line {line}"),
                    format!("unreadable CSV row: {e}"),
                )?;
                continue;
            }
        };
        let line = row.position().map(|p| p.line()).unwrap_or(0);
        let location = format!("line {line}");
        if row.len() != 2 {
            skipped.skip(
                opts,
                &csv_path,
                &location,
                format!("expected 2 fields (image,caption), found {}", row.len()),
            )?;
            continue;
        }
        let (image, caption) = (row[0].trim(), row[1].trim());
        if wanted.as_ref().is_some_and(|w| !w.contains(image)) {
            continue;
        }
        if image.is_empty() || caption.is_empty() {
            skipped.skip(opts, &csv_path, &location, "empty image name or caption")?;
            continue;
        }
        let next = slot_of.len();
        let slot = *slot_of.entry(image.to_string()).or_insert(next);
        grouped
            .entry(slot)
            .or_insert_with(|| (image.to_string(), Vec::new(), location))
            .1
            .push(caption.to_string());
    }
    let pending = grouped
        .into_values()
        .map(|(image, captions, location)| Pending {
            record: CaptionRecord {
                image: images.join(image),
                captions,
            },
            source: csv_path.clone(),
            location,
        })
        .collect();
    check_images(dir, pending, skipped, opts)
}

/// Image names listed in a split file.
pub fn read_split(dir: &Path, split: &str) -> Result<HashSet<String>> {
    if !SPLITS.contains(&split) {
        return Err(DataError::layout(
            dir,
            format!("unknown split `{split}`: expected one of train, dev, test"),
        ));
    }
    let path = split_file(dir, split);
    let text = std::fs::read_to_string(&path).map_err(|e| DataError::io(&path, e))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

fn csv_error(path: &Path, e: csv::Error) -> DataError {
    match e.kind() {
        csv::ErrorKind::Io(_) => match e.into_kind() {
            csv::ErrorKind::Io(io) => DataError::io(path, io),
            _ => unreachable!("matched Io above"),
        },
        _ => DataError::layout(path, format!("unreadable CSV: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::{write_jpeg, write_text};

    fn fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("Images");
        std::fs::create_dir(&images).unwrap();
        write_jpeg(&images.join("a.jpg"), 8, 6);
        write_jpeg(&images.join("b.jpg"), 8, 6);
        std::fs::write(images.join("corrupt.jpg"), b"\xFF\xD8\xFF\xE0garbage").unwrap();
        write_text(
            &dir.path().join("captions.txt"),
            "image,caption\n\
             a.jpg,A dog runs .\n\
             a.jpg,\"A dog, brown and small, runs .\"\n\
             b.jpg,Two people .\n\
             corrupt.jpg,Broken picture .\n\
             missing.jpg,Nobody here .\n\
             b.jpg,\n",
        );
        write_text(
            &dir.path().join("Flickr_8k.trainImages.txt"),
            "a.jpg\ncorrupt.jpg\n",
        );
        write_text(&dir.path().join("Flickr_8k.devImages.txt"), "b.jpg\n");
        dir
    }

    #[test]
    fn loads_groups_and_skips_with_counts() {
        let dir = fixture();
        let ds = load(dir.path(), None, LoadOptions::default()).unwrap();
        assert_eq!(ds.records.len(), 2);
        assert_eq!(
            ds.records[0].captions,
            ["A dog runs .", "A dog, brown and small, runs ."]
        );
        assert_eq!(ds.records[1].captions, ["Two people ."]);
        // empty caption, corrupt image, missing image
        assert_eq!(ds.skipped.count, 3);
        let reasons: Vec<String> = ds.skipped.first.iter().map(|s| s.to_string()).collect();
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("line 7") && r.contains("empty")),
            "{reasons:?}"
        );
        assert!(reasons.iter().any(|r| r.contains("corrupt.jpg")), "{reasons:?}");
        assert!(
            reasons
                .iter()
                .any(|r| r.contains("missing.jpg") && r.contains("does not exist")),
            "{reasons:?}"
        );
    }

    #[test]
    fn splits_select_their_images() {
        let dir = fixture();
        let train = load(dir.path(), Some("train"), LoadOptions::default()).unwrap();
        assert_eq!(train.records.len(), 1);
        assert_eq!(train.skipped.count, 1, "the corrupt image is in train");
        let dev = load(dir.path(), Some("dev"), LoadOptions::default()).unwrap();
        assert_eq!(dev.records.len(), 1);
        let err = load(dir.path(), Some("test"), LoadOptions::default()).unwrap_err();
        assert!(err.to_string().contains("Flickr_8k.testImages.txt"), "{err}");
    }

    #[test]
    fn strict_mode_names_the_first_bad_record() {
        let dir = fixture();
        let opts = LoadOptions {
            strict: true,
            ..Default::default()
        };
        let err = load(dir.path(), None, opts).unwrap_err().to_string();
        assert!(err.contains("captions.txt") && err.contains("line 7"), "{err}");
    }

    #[test]
    fn wrong_header_is_a_layout_error() {
        let dir = fixture();
        write_text(&dir.path().join("captions.txt"), "file,text\na.jpg,hi\n");
        let err = load(dir.path(), None, LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("image,caption") && err.contains("file,text"),
            "{err}"
        );
    }
}

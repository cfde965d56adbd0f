//! What every loader yields, and the bookkeeping of what it had to skip.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::error::{DataError, Result};

/// An image and its reference captions.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptionRecord {
    pub image: PathBuf,
    pub captions: Vec<String>,
}

/// A question about an image and its answer.
#[derive(Debug, Clone, PartialEq)]
pub struct VqaRecord {
    pub image: PathBuf,
    pub question: String,
    /// The answer to train on (VQA v2: the most common human answer).
    pub answer: String,
    /// Every human answer when the source has several (VQA v2 has ten), for the
    /// soft VQA accuracy; otherwise just `answer`.
    pub answers: Vec<String>,
    /// Question type when the source gives one (VQA v2 `question_type`, the
    /// synthetic scenes' `type`).
    pub question_type: Option<String>,
    /// A finer grouping when the source has one (the synthetic scenes' `family`,
    /// e.g. `shape`, `closest-colour`), reported separately by `edgevlm eval vqa`.
    pub family: Option<String>,
    /// Where the object the answer is about lies, as fractions (x, y) of the image
    /// as the model sees it (the centre-cropped square), when the source says.
    pub focus: Option<[f32; 2]>,
}

/// Records are either captions or questions.
pub trait Record {
    fn image(&self) -> &Path;
}

impl Record for CaptionRecord {
    fn image(&self) -> &Path {
        &self.image
    }
}

impl Record for VqaRecord {
    fn image(&self) -> &Path {
        &self.image
    }
}

/// How strictly a loader treats bad records.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Fail on the first bad record instead of skipping it.
    pub strict: bool,
    /// Decode every image to prove it is readable (the default). Turning it off
    /// only checks that the files exist.
    pub skip_decode_check: bool,
}

/// One skipped record: where it was and what was wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct Skip {
    pub path: PathBuf,
    pub location: String,
    pub reason: String,
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, {}: {}", self.path.display(), self.location, self.reason)
    }
}

/// Counts skipped records and keeps the first few to name in a warning.
#[derive(Debug, Clone, Default)]
pub struct SkipLog {
    pub count: usize,
    pub first: Vec<Skip>,
}

impl SkipLog {
    pub const KEEP: usize = 5;

    /// Records a bad record, or turns it into an error under `--strict`.
    pub fn skip(
        &mut self,
        opts: LoadOptions,
        path: &Path,
        location: impl Into<String>,
        reason: impl Into<String>,
    ) -> Result<()> {
        let skip = Skip {
            path: path.to_path_buf(),
            location: location.into(),
            reason: reason.into(),
        };
        if opts.strict {
            return Err(DataError::BadRecord {
                path: skip.path,
                location: skip.location,
                reason: skip.reason,
            });
        }
        self.count += 1;
        if self.first.len() < Self::KEEP {
            self.first.push(skip);
        }
        Ok(())
    }

    /// A multi-line warning naming the first skipped records, or `None`.
    pub fn warning(&self) -> Option<String> {
        if self.count == 0 {
            return None;
        }
        let mut text = format!("warning: skipped {} bad record(s); first:", self.count);
        for s in &self.first {
            text.push_str(&format!("\n  - {s}"));
        }
        Some(text)
    }
}

/// Records that survived loading, with the log of those that did not.
#[derive(Debug, Clone)]
pub struct Dataset<R> {
    pub root: PathBuf,
    pub records: Vec<R>,
    pub skipped: SkipLog,
}

impl<R: Record> Dataset<R> {
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Distinct images, in first-seen order.
    pub fn images(&self) -> Vec<&Path> {
        let mut seen = std::collections::HashSet::new();
        self.records
            .iter()
            .map(|r| r.image())
            .filter(|p| seen.insert(*p))
            .collect()
    }

    /// Errors when nothing usable is left, which always means a wrong path or format.
    pub fn non_empty(self) -> Result<Self> {
        if self.records.is_empty() {
            return Err(DataError::Empty {
                path: self.root,
                skipped: self.skipped.count,
            });
        }
        Ok(self)
    }
}

/// A record waiting for its image check, with where it came from.
pub struct Pending<R> {
    pub record: R,
    pub source: PathBuf,
    pub location: String,
}

/// Drops records whose image is missing or undecodable (decoding images in
/// parallel, each once), logging one skip per dropped record.
pub fn check_images<R: Record + Send>(
    root: &Path,
    pending: Vec<Pending<R>>,
    mut skipped: SkipLog,
    opts: LoadOptions,
) -> Result<Dataset<R>> {
    let mut unique: Vec<PathBuf> = pending.iter().map(|p| p.record.image().to_path_buf()).collect();
    unique.sort();
    unique.dedup();
    let verdicts: HashMap<PathBuf, Option<String>> = unique
        .into_par_iter()
        .map(|path| {
            let problem = image_problem(&path, opts);
            (path, problem)
        })
        .collect();
    let mut records = Vec::with_capacity(pending.len());
    for p in pending {
        match &verdicts[p.record.image()] {
            None => records.push(p.record),
            Some(problem) => skipped.skip(opts, &p.source, &p.location, problem.clone())?,
        }
    }
    Ok(Dataset {
        root: root.to_path_buf(),
        records,
        skipped,
    })
}

fn image_problem(path: &Path, opts: LoadOptions) -> Option<String> {
    if !path.is_file() {
        return Some(format!("image file {} does not exist", path.display()));
    }
    if opts.skip_decode_check {
        return None;
    }
    edgevlm_shared::preprocess::load_image(path)
        .err()
        .map(|e| e.to_string())
}

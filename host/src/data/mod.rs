//! Datasets: loaders for the formats people already have, the synthetic scene
//! writer, and the batcher that feeds training.
//!
//! Every loader yields [`CaptionRecord`]s or [`VqaRecord`]s. Bad records (missing
//! or undecodable image, empty text, unknown image id, malformed line) are skipped
//! and counted in a [`SkipLog`]; with [`LoadOptions::strict`] the first one is an
//! error naming the file, the record and what was expected.

pub mod batcher;
pub mod clips;
pub mod coco;
pub mod datasets;
pub mod dialogs;
pub mod easy_vqa;
mod error;
pub mod flickr8k;
pub mod qa;
mod record;
pub mod stats;
pub mod store;
pub mod synth;
pub mod text_image;
pub mod vqa;

#[cfg(test)]
pub(crate) mod testutil;

use std::path::Path;

pub use error::{DataError, Result};
pub use record::{CaptionRecord, Dataset, LoadOptions, Record, Skip, SkipLog, VqaRecord};
pub use stats::Stats;

/// The dataset formats `edgevlm` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Flickr8k, Kaggle layout (`Images/`, `captions.txt`, split lists).
    Flickr8k,
    /// COCO captions (`captions_*.json` + images).
    Coco,
    /// VQA v2 (questions + annotations JSON + COCO images).
    VqaV2,
    /// JSONL, one `{"image", "question", "answer"}` per line (synthetic scenes too).
    Jsonl,
    /// easy-VQA (`questions.json` triples + `images/N.png`).
    EasyVqa,
    /// `text_image_data.json`: a list of `{"text", "image"}`.
    TextImage,
}

/// Captions or questions, whichever the format holds.
pub enum AnyDataset {
    Captions(Dataset<CaptionRecord>),
    Questions(Dataset<VqaRecord>),
}

impl AnyDataset {
    pub fn skipped(&self) -> &SkipLog {
        match self {
            AnyDataset::Captions(d) => &d.skipped,
            AnyDataset::Questions(d) => &d.skipped,
        }
    }
}

/// Loads `path` in `format`; `split` selects a split where the format has them.
pub fn load(format: Format, path: &Path, split: Option<&str>, opts: LoadOptions) -> Result<AnyDataset> {
    Ok(match format {
        Format::Flickr8k => AnyDataset::Captions(flickr8k::load(path, split, opts)?),
        Format::Coco => AnyDataset::Captions(coco::load(path, split, opts)?),
        Format::TextImage => AnyDataset::Captions(text_image::load(path, opts)?),
        Format::VqaV2 => AnyDataset::Questions(vqa::load_v2(path, opts)?),
        Format::Jsonl => AnyDataset::Questions(vqa::load_jsonl(path, opts)?),
        Format::EasyVqa => AnyDataset::Questions(easy_vqa::load(path, split, opts)?),
    })
}

/// Loads and summarises a dataset; Flickr8k also reports its split lists.
pub fn stats(
    format: Format,
    path: &Path,
    split: Option<&str>,
    opts: LoadOptions,
) -> Result<(Stats, SkipLog)> {
    let name = format!("{format:?}").to_lowercase();
    let loaded = load(format, path, split, opts)?;
    let skipped = loaded.skipped().clone();
    let mut stats = match &loaded {
        AnyDataset::Captions(d) => Stats::captions(&name, d),
        AnyDataset::Questions(d) => Stats::questions(&name, d),
    };
    if let (Format::Flickr8k, AnyDataset::Captions(d)) = (format, &loaded) {
        let present: std::collections::HashSet<String> = d
            .records
            .iter()
            .filter_map(|r| r.image.file_name().map(|n| n.to_string_lossy().to_string()))
            .collect();
        for split in flickr8k::SPLITS {
            let count = flickr8k::read_split(path, split)
                .ok()
                .map(|names| names.iter().filter(|n| present.contains(*n)).count());
            stats.splits.insert(split.to_string(), count);
        }
    }
    Ok((stats, skipped))
}

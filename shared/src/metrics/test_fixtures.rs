//! Test helpers: the reference fixtures under `fixtures/` (see `fixtures/make_fixtures.py`).

use std::collections::BTreeMap;

use serde::Deserialize;

/// One caption set of `fixtures/captions.json` with pycocoevalcap's scores.
#[derive(Debug, Deserialize)]
pub struct CaptionSet {
    pub images: Vec<CaptionImage>,
    pub bleu: Vec<f64>,
    pub bleu_per_image: Vec<Vec<f64>>,
    pub cider: f64,
    pub cider_per_image: Vec<f64>,
}

#[derive(Debug, Deserialize)]
pub struct CaptionImage {
    pub candidate: String,
    pub references: Vec<String>,
    /// pycocoevalcap's PTBTokenizer output, tokens joined by single spaces.
    pub candidate_tokenized: String,
    pub references_tokenized: Vec<String>,
}

#[derive(Deserialize)]
struct CaptionFixture {
    sets: BTreeMap<String, CaptionSet>,
}

impl CaptionSet {
    /// Candidates as the scorers see them: the tokenized string split on whitespace.
    pub fn candidates(&self) -> Vec<Vec<String>> {
        self.images
            .iter()
            .map(|image| split(&image.candidate_tokenized))
            .collect()
    }

    /// Candidates and references as raw, untokenized text.
    pub fn raw_texts(&self) -> (Vec<&str>, Vec<Vec<&str>>) {
        let candidates = self.images.iter().map(|image| image.candidate.as_str()).collect();
        let references = self
            .images
            .iter()
            .map(|image| image.references.iter().map(String::as_str).collect())
            .collect();
        (candidates, references)
    }

    pub fn references(&self) -> Vec<Vec<Vec<String>>> {
        self.images
            .iter()
            .map(|image| image.references_tokenized.iter().map(|r| split(r)).collect())
            .collect()
    }
}

fn split(tokenized: &str) -> Vec<String> {
    tokenized.split_whitespace().map(str::to_string).collect()
}

pub fn caption_sets() -> BTreeMap<String, CaptionSet> {
    let fixture: CaptionFixture =
        serde_json::from_str(include_str!("fixtures/captions.json")).expect("captions.json parses");
    fixture.sets
}

/// Asserts `|actual - expected| <= tolerance`, naming the value on failure.
pub fn assert_close(actual: f64, expected: f64, tolerance: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: got {actual}, expected {expected} (difference {:e})",
        (actual - expected).abs()
    );
}

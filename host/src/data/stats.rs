//! `edgevlm data stats`: what a dataset holds, at a glance.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::Serialize;

use super::record::{CaptionRecord, Dataset, VqaRecord};

/// Summary of a word-count distribution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LengthSummary {
    pub min: usize,
    pub median: usize,
    pub mean: f64,
    pub p95: usize,
    pub max: usize,
}

impl LengthSummary {
    pub fn of(mut lengths: Vec<usize>) -> Option<Self> {
        if lengths.is_empty() {
            return None;
        }
        lengths.sort_unstable();
        let n = lengths.len();
        Some(Self {
            min: lengths[0],
            median: lengths[n / 2],
            mean: lengths.iter().sum::<usize>() as f64 / n as f64,
            p95: lengths[((n as f64 * 0.95).ceil() as usize).clamp(1, n) - 1],
            max: lengths[n - 1],
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub loader: String,
    pub root: String,
    pub images: usize,
    /// Captions, or questions for a VQA set.
    pub texts: usize,
    pub text_kind: &'static str,
    pub skipped: usize,
    /// Images per split, when the dataset has split lists.
    pub splits: BTreeMap<String, Option<usize>>,
    pub answer_vocabulary: Option<usize>,
    pub question_types: BTreeMap<String, usize>,
    pub length_words: Option<LengthSummary>,
}

fn words(text: &str) -> usize {
    text.split_whitespace().count()
}

impl Stats {
    pub fn captions(loader: &str, ds: &Dataset<CaptionRecord>) -> Self {
        let lengths = ds
            .records
            .iter()
            .flat_map(|r| r.captions.iter().map(|c| words(c)))
            .collect();
        Self {
            loader: loader.into(),
            root: ds.root.display().to_string(),
            images: ds.images().len(),
            texts: ds.records.iter().map(|r| r.captions.len()).sum(),
            text_kind: "captions",
            skipped: ds.skipped.count,
            splits: BTreeMap::new(),
            answer_vocabulary: None,
            question_types: BTreeMap::new(),
            length_words: LengthSummary::of(lengths),
        }
    }

    pub fn questions(loader: &str, ds: &Dataset<VqaRecord>) -> Self {
        let answers: HashSet<&str> = ds.records.iter().map(|r| r.answer.as_str()).collect();
        let mut types = BTreeMap::new();
        for r in &ds.records {
            if let Some(t) = &r.question_type {
                *types.entry(t.clone()).or_insert(0) += 1;
            }
        }
        Self {
            loader: loader.into(),
            root: ds.root.display().to_string(),
            images: ds.images().len(),
            texts: ds.records.len(),
            text_kind: "questions",
            skipped: ds.skipped.count,
            splits: BTreeMap::new(),
            answer_vocabulary: Some(answers.len()),
            question_types: types,
            length_words: LengthSummary::of(ds.records.iter().map(|r| words(&r.question)).collect()),
        }
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "dataset      {} ({})", self.loader, self.root)?;
        writeln!(f, "images       {}", self.images)?;
        writeln!(f, "{:<12} {}", self.text_kind, self.texts)?;
        writeln!(f, "skipped      {}", self.skipped)?;
        if !self.splits.is_empty() {
            let parts: Vec<String> = self
                .splits
                .iter()
                .map(|(name, n)| match n {
                    Some(n) => format!("{name} {n}"),
                    None => format!("{name} (no list)"),
                })
                .collect();
            writeln!(f, "splits       {}", parts.join(", "))?;
        }
        if let Some(v) = self.answer_vocabulary {
            writeln!(f, "answers      {v} distinct")?;
        }
        for (t, n) in &self.question_types {
            writeln!(f, "  type {t:<20} {n}")?;
        }
        if let Some(l) = &self.length_words {
            writeln!(
                f,
                "length       words per {}: min {}, median {}, mean {:.1}, p95 {}, max {}",
                self.text_kind.trim_end_matches('s'),
                l.min,
                l.median,
                l.mean,
                l.p95,
                l.max
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_summary_by_hand() {
        let s = LengthSummary::of(vec![5, 1, 3, 2, 4, 10, 6, 7, 8, 9]).unwrap();
        assert_eq!((s.min, s.median, s.p95, s.max), (1, 6, 10, 10));
        assert!((s.mean - 5.5).abs() < 1e-12);
        assert!(LengthSummary::of(vec![]).is_none());
    }
}

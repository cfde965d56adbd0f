//! BLEU-1..4 (Papineni et al., 2002) exactly as the COCO caption toolkit computes it:
//! pycocoevalcap/bleu/bleu_scorer.py, `BleuScorer.compute_score(option="closest")`, which is what
//! pycocoevalcap/bleu/bleu.py calls.
//!
//! Per image: n-gram counts of the candidate are clipped by the maximum count of that n-gram in any
//! one reference, and the effective reference length is the reference length closest to the
//! candidate's (ties go to the shorter). The corpus score sums clipped matches, candidate n-gram
//! counts and lengths over all images, takes the running product of the precisions
//! `(matches + 1e-15) / (count + 1e-9)`, the n-th root of it for BLEU-n, and one brevity penalty
//! `exp(1 - ref_len / cand_len)` when the candidates are shorter (with the same two epsilons).
//! Per-image scores are the same formula on one image.

use std::collections::HashMap;

use super::error::{check_parallel, MetricsError, Result};
use super::tokenize::tokenize_captions;

/// Highest n-gram order: BLEU-1 to BLEU-4.
pub const BLEU_MAX_ORDER: usize = 4;

/// Added to every denominator so that an empty candidate does not divide by zero.
const SMALL: f64 = 1e-9;
/// Added to every numerator so that zero matches give a tiny score rather than exactly zero.
const TINY: f64 = 1e-15;

/// BLEU-1..4 of a caption corpus, in 0..=1; index `n - 1` holds BLEU-n.
#[derive(Debug, Clone, PartialEq)]
pub struct BleuScores {
    /// Corpus-level scores (what papers report).
    pub corpus: [f64; BLEU_MAX_ORDER],
    /// Each image scored on its own, in input order.
    pub per_image: Vec<[f64; BLEU_MAX_ORDER]>,
}

/// The counts of one image that the corpus score adds up.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    candidate_len: usize,
    reference_len: usize,
    /// Candidate n-grams per order.
    guessed: [usize; BLEU_MAX_ORDER],
    /// Candidate n-grams per order found in a reference, clipped.
    matched: [usize; BLEU_MAX_ORDER],
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.candidate_len += other.candidate_len;
        self.reference_len += other.reference_len;
        for order in 0..BLEU_MAX_ORDER {
            self.guessed[order] += other.guessed[order];
            self.matched[order] += other.matched[order];
        }
    }

    fn scores(&self) -> [f64; BLEU_MAX_ORDER] {
        let mut scores = [0.0; BLEU_MAX_ORDER];
        let mut precision_product = 1.0;
        for (order, score) in scores.iter_mut().enumerate() {
            precision_product *= (self.matched[order] as f64 + TINY) / (self.guessed[order] as f64 + SMALL);
            *score = precision_product.powf(1.0 / (order + 1) as f64);
        }
        let length_ratio = (self.candidate_len as f64 + TINY) / (self.reference_len as f64 + SMALL);
        if length_ratio < 1.0 {
            let brevity_penalty = (1.0 - 1.0 / length_ratio).exp();
            scores.iter_mut().for_each(|score| *score *= brevity_penalty);
        }
        scores
    }
}

/// Corpus BLEU-1..4 of tokenized captions: `candidates[i]` is the caption generated for image `i`,
/// `references[i]` its ground-truth captions. Tokens should come from
/// [`tokenize_caption`](super::tokenize_caption) (non-empty, without whitespace).
pub fn corpus_bleu(candidates: &[Vec<String>], references: &[Vec<Vec<String>>]) -> Result<BleuScores> {
    check_parallel("candidates vs references", candidates.len(), references.len())?;
    let mut total = Counts::default();
    let mut per_image = Vec::with_capacity(candidates.len());
    for (index, (candidate, image_references)) in candidates.iter().zip(references).enumerate() {
        if image_references.is_empty() {
            return Err(MetricsError::EmptyItem {
                what: "image",
                index,
                missing: "references",
            });
        }
        let counts = image_counts(candidate, image_references);
        total.add(&counts);
        per_image.push(counts.scores());
    }
    Ok(BleuScores {
        corpus: total.scores(),
        per_image,
    })
}

/// [`corpus_bleu`] on raw captions, tokenized as pycocoevalcap does first.
pub fn corpus_bleu_from_text<S: AsRef<str>>(candidates: &[S], references: &[Vec<S>]) -> Result<BleuScores> {
    let references: Vec<_> = references
        .iter()
        .map(|captions| tokenize_captions(captions))
        .collect();
    corpus_bleu(&tokenize_captions(candidates), &references)
}

fn image_counts(candidate: &[String], references: &[Vec<String>]) -> Counts {
    let mut max_reference_counts: HashMap<&[String], usize> = HashMap::new();
    for reference in references {
        for (ngram, count) in ngram_counts(reference) {
            let max = max_reference_counts.entry(ngram).or_default();
            *max = (*max).max(count);
        }
    }
    let mut counts = Counts {
        candidate_len: candidate.len(),
        reference_len: closest_reference_len(candidate.len(), references),
        ..Counts::default()
    };
    for order in 1..=BLEU_MAX_ORDER {
        counts.guessed[order - 1] = (candidate.len() + 1).saturating_sub(order);
    }
    for (ngram, count) in ngram_counts(candidate) {
        let reference_count = max_reference_counts.get(ngram).copied().unwrap_or(0);
        counts.matched[ngram.len() - 1] += count.min(reference_count);
    }
    counts
}

/// The reference length nearest to the candidate's; of two equally near, the shorter.
fn closest_reference_len(candidate_len: usize, references: &[Vec<String>]) -> usize {
    references
        .iter()
        .map(|reference| reference.len())
        .min_by_key(|&len| (len.abs_diff(candidate_len), len))
        .unwrap_or(0)
}

/// Counts of every n-gram of order 1..=4.
fn ngram_counts(tokens: &[String]) -> HashMap<&[String], usize> {
    let mut counts = HashMap::new();
    for order in 1..=BLEU_MAX_ORDER {
        for ngram in tokens.windows(order) {
            *counts.entry(ngram).or_default() += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::super::test_fixtures::{assert_close, caption_sets};
    use super::*;

    #[test]
    fn matches_pycocoevalcap_on_fixture_sets() {
        for (name, set) in caption_sets() {
            let scores = corpus_bleu(&set.candidates(), &set.references()).expect("valid set");
            for order in 0..BLEU_MAX_ORDER {
                assert_close(
                    scores.corpus[order],
                    set.bleu[order],
                    1e-12,
                    &format!("{name} BLEU-{}", order + 1),
                );
            }
            assert_eq!(scores.per_image.len(), set.bleu_per_image.len());
            for (image, (ours, theirs)) in scores.per_image.iter().zip(&set.bleu_per_image).enumerate() {
                for order in 0..BLEU_MAX_ORDER {
                    assert_close(
                        ours[order],
                        theirs[order],
                        1e-12,
                        &format!("{name} image {image} BLEU-{}", order + 1),
                    );
                }
            }
        }
    }

    #[test]
    fn raw_text_goes_through_the_coco_tokenizer() {
        for (name, set) in caption_sets() {
            let (candidates, references) = set.raw_texts();
            let scores = corpus_bleu_from_text(&candidates, &references).expect("valid set");
            for order in 0..BLEU_MAX_ORDER {
                assert_close(
                    scores.corpus[order],
                    set.bleu[order],
                    1e-12,
                    &format!("{name} BLEU-{}", order + 1),
                );
            }
        }
    }

    /// Papineni et al. 2002, section 2.1: modified unigram precision 2/7 for "the the the ...".
    /// The reference's epsilons move scores by less than 1e-9.
    #[test]
    fn bleu_paper_clipping_example() {
        let candidate = ["the the the the the the the."];
        let references = [vec!["The cat is on the mat.", "There is a cat on the mat."]];
        let scores = corpus_bleu_from_text(&candidate, &references).expect("valid input");
        // Candidate and closest reference both have 7 tokens, so there is no brevity penalty.
        assert_close(scores.corpus[0], 2.0 / 7.0, 1e-9, "BLEU-1");
        // No candidate bigram ("the the") occurs in a reference.
        assert!(scores.corpus[1] < 1e-6, "BLEU-2 {}", scores.corpus[1]);
    }

    /// Papineni et al. 2002, example 1: modified unigram precisions 17/18 and 8/14.
    #[test]
    fn bleu_paper_modified_precision_example() {
        let references = vec![
            "It is a guide to action that ensures that the military will forever heed Party commands.",
            "It is the guiding principle which guarantees the military forces always being under the command \
             of the Party.",
            "It is the practical guide for the army always to heed the directions of the party.",
        ];
        let first = [
            "It is a guide to action which ensures that the military always obeys the commands of the party.",
        ];
        let scores = corpus_bleu_from_text(&first, std::slice::from_ref(&references)).expect("valid input");
        // 18 tokens and a reference of 18 tokens: no brevity penalty.
        assert_close(scores.corpus[0], 17.0 / 18.0, 1e-9, "candidate 1 BLEU-1");

        let second = ["It is to insure the troops forever hearing the activity guidebook that party direct."];
        let scores = corpus_bleu_from_text(&second, &[references]).expect("valid input");
        // 14 tokens against a closest reference of 16: brevity penalty exp(1 - 16/14).
        let brevity_penalty = (1.0 - 16.0 / 14.0_f64).exp();
        assert_close(
            scores.corpus[0],
            8.0 / 14.0 * brevity_penalty,
            1e-9,
            "candidate 2 BLEU-1",
        );
    }

    #[test]
    fn closest_reference_length_prefers_the_shorter_on_ties() {
        let references: Vec<Vec<String>> = [4, 6, 9].iter().map(|&len| vec!["w".to_string(); len]).collect();
        assert_eq!(closest_reference_len(5, &references), 4);
        assert_eq!(closest_reference_len(8, &references), 9);
    }

    #[test]
    fn rejects_mismatched_and_empty_input() {
        let caption = vec!["a".to_string()];
        assert_eq!(
            corpus_bleu(std::slice::from_ref(&caption), &[]),
            Err(MetricsError::LengthMismatch {
                what: "candidates vs references",
                left: 1,
                right: 0
            })
        );
        assert_eq!(
            corpus_bleu(&[], &[]),
            Err(MetricsError::Empty {
                what: "candidates vs references"
            })
        );
        assert_eq!(
            corpus_bleu(&[caption.clone(), caption.clone()], &[vec![caption], vec![]]),
            Err(MetricsError::EmptyItem {
                what: "image",
                index: 1,
                missing: "references"
            })
        );
    }
}

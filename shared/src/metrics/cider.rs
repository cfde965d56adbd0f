//! CIDEr-D (Vedantam et al., 2015) exactly as the COCO caption toolkit computes it:
//! pycocoevalcap/cider/cider_scorer.py (`CiderScorer`, n = 4, sigma = 6), which pycocoevalcap
//! reports under the name "CIDEr".
//!
//! Each caption becomes one tf-idf vector per n-gram order 1..=4: term frequency times
//! `ln(number of images) - ln(max(1, df))`, where `df` counts the images whose *references* contain
//! the n-gram (document frequencies come from the evaluated set itself). Per reference and order,
//! the score is `sum(min(cand_w, ref_w) * ref_w) / (|cand| |ref|)` (the candidate weight clipped by
//! the reference's, skipped division when a norm is 0), times the Gaussian length penalty
//! `exp(-delta^2 / (2 sigma^2))`. Like the reference, "length" is the number of bigrams, i.e.
//! `max(0, tokens - 1)`. An image scores 10 × the mean over orders, averaged over its references;
//! the corpus score is the mean over images. Sums run in the reference's order (n-grams by first
//! occurrence) so that results agree to the last few bits.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use super::error::{check_parallel, MetricsError, Result};
use super::tokenize::tokenize_captions;

/// Highest n-gram order.
pub const CIDER_MAX_ORDER: usize = 4;
/// Standard deviation of the Gaussian length penalty, in tokens.
pub const CIDER_SIGMA: f64 = 6.0;

/// CIDEr-D of a caption corpus (0 = nothing shared; 10 and above for captions close to all
/// references).
#[derive(Debug, Clone, PartialEq)]
pub struct CiderScores {
    /// Mean over images (what papers report).
    pub corpus: f64,
    /// Each image's score, in input order.
    pub per_image: Vec<f64>,
}

type Ngram<'a> = &'a [String];

/// N-gram counts of one caption per order, each in order of first occurrence.
type OrderedCounts<'a> = [Vec<(Ngram<'a>, usize)>; CIDER_MAX_ORDER];

/// An n-gram as word ids, padded with `u32::MAX` (never an id).
type NgramKey = [u32; CIDER_MAX_ORDER];

/// How many images' references contain each n-gram (0 when none does).
trait DocumentFrequency {
    fn of(&self, ngram: &[String]) -> f64;
}

impl<K: Borrow<[String]> + Hash + Eq> DocumentFrequency for HashMap<K, f64> {
    fn of(&self, ngram: &[String]) -> f64 {
        self.get(ngram).copied().unwrap_or(0.0)
    }
}

/// Document frequencies over interned words: a few bytes per n-gram, where one
/// keyed by strings costs a vector and a string per word.
struct Interned {
    ids: HashMap<String, u32>,
    counts: HashMap<NgramKey, u32>,
}

impl DocumentFrequency for Interned {
    fn of(&self, ngram: &[String]) -> f64 {
        let mut key = [u32::MAX; CIDER_MAX_ORDER];
        for (slot, word) in key.iter_mut().zip(ngram) {
            match self.ids.get(word) {
                Some(&id) => *slot = id,
                // A word no reference uses: no n-gram with it was counted.
                None => return 0.0,
            }
        }
        self.counts.get(&key).map_or(0.0, |&count| f64::from(count))
    }
}

enum Frequencies {
    Strings(HashMap<Vec<String>, f64>),
    Interned(Interned),
}

impl DocumentFrequency for Frequencies {
    fn of(&self, ngram: &[String]) -> f64 {
        match self {
            Frequencies::Strings(table) => table.of(ngram),
            Frequencies::Interned(table) => table.of(ngram),
        }
    }
}

/// The tf-idf vectors of one caption.
struct TfIdf<'a> {
    /// Weights per order, in order of first occurrence.
    weights: [Vec<(Ngram<'a>, f64)>; CIDER_MAX_ORDER],
    lookup: [HashMap<Ngram<'a>, f64>; CIDER_MAX_ORDER],
    norms: [f64; CIDER_MAX_ORDER],
    /// Number of bigrams, the reference's notion of caption length.
    length: usize,
}

/// CIDEr-D of tokenized captions: `candidates[i]` is the caption generated for image `i`,
/// `references[i]` its ground-truth captions. Tokens should come from
/// [`tokenize_caption`](super::tokenize_caption).
pub fn cider_d(candidates: &[Vec<String>], references: &[Vec<Vec<String>>]) -> Result<CiderScores> {
    check_parallel("candidates vs references", candidates.len(), references.len())?;
    if let Some(index) = references.iter().position(Vec::is_empty) {
        return Err(MetricsError::EmptyItem {
            what: "image",
            index,
            missing: "references",
        });
    }
    let reference_counts: Vec<Vec<OrderedCounts>> = references
        .iter()
        .map(|captions| captions.iter().map(|caption| ordered_counts(caption)).collect())
        .collect();
    let document_frequency = document_frequency(&reference_counts);
    let log_images = (references.len() as f64).ln();

    let mut per_image = Vec::with_capacity(candidates.len());
    for (candidate, image_references) in candidates.iter().zip(&reference_counts) {
        let candidate = tf_idf(&ordered_counts(candidate), &document_frequency, log_images);
        let mut per_order = [0.0; CIDER_MAX_ORDER];
        for reference in image_references {
            let reference = tf_idf(reference, &document_frequency, log_images);
            let similarity = similarity(&candidate, &reference);
            per_order
                .iter_mut()
                .zip(similarity)
                .for_each(|(sum, value)| *sum += value);
        }
        let mean_over_orders = per_order.iter().sum::<f64>() / CIDER_MAX_ORDER as f64;
        per_image.push(mean_over_orders / image_references.len() as f64 * 10.0);
    }
    let corpus = per_image.iter().sum::<f64>() / per_image.len() as f64;
    Ok(CiderScores { corpus, per_image })
}

/// [`cider_d`] on raw captions, tokenized as pycocoevalcap does first.
pub fn cider_d_from_text<S: AsRef<str>>(candidates: &[S], references: &[Vec<S>]) -> Result<CiderScores> {
    let references: Vec<_> = references
        .iter()
        .map(|captions| tokenize_captions(captions))
        .collect();
    cider_d(&tokenize_captions(candidates), &references)
}

/// CIDEr-D of single captions as a training reward (self-critical sequence training,
/// Rennie et al. 2017): document frequencies are fixed once from a reference corpus (the
/// training captions) instead of coming from the evaluated set.
pub struct CiderReward {
    document_frequency: Frequencies,
    log_images: f64,
    /// Tokenized references of each image.
    references: Vec<Vec<Vec<String>>>,
}

impl CiderReward {
    /// `references[i]`: the raw reference captions of image `i`.
    pub fn new<S: AsRef<str>>(references: &[Vec<S>]) -> Result<Self> {
        if let Some(index) = references.iter().position(Vec::is_empty) {
            return Err(MetricsError::EmptyItem {
                what: "image",
                index,
                missing: "references",
            });
        }
        let references: Vec<Vec<Vec<String>>> = references.iter().map(|c| tokenize_captions(c)).collect();
        let counts: Vec<Vec<OrderedCounts>> = references
            .iter()
            .map(|captions| captions.iter().map(|c| ordered_counts(c)).collect())
            .collect();
        let document_frequency = document_frequency(&counts)
            .into_iter()
            .map(|(ngram, f)| (ngram.to_vec(), f))
            .collect();
        Ok(Self {
            document_frequency: Frequencies::Strings(document_frequency),
            log_images: (references.len() as f64).ln(),
            references,
        })
    }

    /// What [`Self::new`]`(references).`[`frequencies_only`](Self::frequencies_only)`()`
    /// gives, computed one image at a time over interned tokens and kept interned:
    /// the board builds its reranker at load without holding every caption's
    /// n-gram counts or any n-gram as strings (the size of the other way).
    pub fn frequencies<S: AsRef<str>>(references: &[Vec<S>]) -> Result<Self> {
        if let Some(index) = references.iter().position(Vec::is_empty) {
            return Err(MetricsError::EmptyItem {
                what: "image",
                index,
                missing: "references",
            });
        }
        let mut ids: HashMap<String, u32> = HashMap::new();
        let mut counts: HashMap<NgramKey, u32> = HashMap::new();
        let mut seen: HashSet<NgramKey> = HashSet::new();
        for captions in references {
            seen.clear();
            for caption in tokenize_captions(captions) {
                let tokens: Vec<u32> = caption
                    .into_iter()
                    .map(|t| {
                        let next = ids.len() as u32;
                        *ids.entry(t).or_insert(next)
                    })
                    .collect();
                for order in 1..=CIDER_MAX_ORDER {
                    for ngram in tokens.windows(order) {
                        let mut key = [u32::MAX; CIDER_MAX_ORDER];
                        key[..order].copy_from_slice(ngram);
                        seen.insert(key);
                    }
                }
            }
            for key in seen.drain() {
                *counts.entry(key).or_insert(0) += 1;
            }
        }
        // As `frequencies_only`: an n-gram seen in one image only scores as absent.
        counts.retain(|_, count| *count > 1);
        counts.shrink_to_fit();
        ids.shrink_to_fit();
        Ok(Self {
            document_frequency: Frequencies::Interned(Interned { ids, counts }),
            log_images: (references.len() as f64).ln(),
            references: Vec::new(),
        })
    }

    /// Only what [`Self::score_against`] reads: the references themselves go, and so
    /// do n-grams seen in one image only (an absent n-gram counts as seen once, so
    /// every score stays the same). A reranker on a board keeps a fraction of the size.
    pub fn frequencies_only(mut self) -> Self {
        self.references = Vec::new();
        if let Frequencies::Strings(table) = &mut self.document_frequency {
            table.retain(|_, frequency| *frequency > 1.0);
            table.shrink_to_fit();
        }
        self
    }

    /// CIDEr-D (x10 scale, as [`cider_d`]'s per-image values) of `caption` (raw text)
    /// against the references of image `image`.
    pub fn score(&self, image: usize, caption: &str) -> f64 {
        match self.references.get(image) {
            Some(references) => self.score_tokens(caption, references),
            None => 0.0,
        }
    }

    /// CIDEr-D (x10 scale) of `caption` against any other references (raw text), with
    /// this corpus's document frequencies: consensus reranking scores a candidate
    /// against captions retrieved for an image that has none of its own.
    pub fn score_against<S: AsRef<str>>(&self, caption: &str, references: &[S]) -> f64 {
        self.score_all_against(&[caption], references)[0]
    }

    /// [`Self::score_against`] for many candidates of one image: the references are
    /// tokenized and weighted once, not once per candidate.
    pub fn score_all_against<C: AsRef<str>, S: AsRef<str>>(
        &self,
        captions: &[C],
        references: &[S],
    ) -> Vec<f64> {
        let references = tokenize_captions(references);
        let counts: Vec<OrderedCounts> = references.iter().map(|r| ordered_counts(r)).collect();
        let weighted: Vec<TfIdf> = counts
            .iter()
            .map(|c| tf_idf(c, &self.document_frequency, self.log_images))
            .collect();
        captions
            .iter()
            .map(|caption| self.score_weighted(caption.as_ref(), &weighted))
            .collect()
    }

    fn score_tokens(&self, caption: &str, references: &[Vec<String>]) -> f64 {
        let counts: Vec<OrderedCounts> = references.iter().map(|r| ordered_counts(r)).collect();
        let weighted: Vec<TfIdf> = counts
            .iter()
            .map(|c| tf_idf(c, &self.document_frequency, self.log_images))
            .collect();
        self.score_weighted(caption, &weighted)
    }

    fn score_weighted(&self, caption: &str, references: &[TfIdf]) -> f64 {
        if references.is_empty() {
            return 0.0;
        }
        let tokens = super::tokenize::tokenize_caption(caption);
        let candidate = tf_idf(
            &ordered_counts(&tokens),
            &self.document_frequency,
            self.log_images,
        );
        let mut per_order = [0.0; CIDER_MAX_ORDER];
        for reference in references {
            for (sum, value) in per_order.iter_mut().zip(similarity(&candidate, reference)) {
                *sum += value;
            }
        }
        per_order.iter().sum::<f64>() / CIDER_MAX_ORDER as f64 / references.len() as f64 * 10.0
    }
}

fn ordered_counts(tokens: &[String]) -> OrderedCounts<'_> {
    std::array::from_fn(|order| {
        let mut position: HashMap<Ngram, usize> = HashMap::new();
        let mut counts: Vec<(Ngram, usize)> = Vec::new();
        for ngram in tokens.windows(order + 1) {
            match position.get(ngram) {
                Some(&at) => counts[at].1 += 1,
                None => {
                    position.insert(ngram, counts.len());
                    counts.push((ngram, 1));
                }
            }
        }
        counts
    })
}

/// For each n-gram, the number of images with at least one reference containing it.
fn document_frequency<'a>(references: &[Vec<OrderedCounts<'a>>]) -> HashMap<Ngram<'a>, f64> {
    let mut frequency = HashMap::new();
    for image_references in references {
        let mut seen_in_image: HashSet<Ngram> = HashSet::new();
        let all_ngrams = image_references.iter().flat_map(|counts| counts.iter().flatten());
        for &(ngram, _) in all_ngrams {
            if seen_in_image.insert(ngram) {
                *frequency.entry(ngram).or_insert(0.0) += 1.0;
            }
        }
    }
    frequency
}

fn tf_idf<'a>(
    counts: &OrderedCounts<'a>,
    document_frequency: &impl DocumentFrequency,
    log_images: f64,
) -> TfIdf<'a> {
    let weights: [Vec<(Ngram, f64)>; CIDER_MAX_ORDER] = std::array::from_fn(|order| {
        counts[order]
            .iter()
            .map(|&(ngram, term_frequency)| {
                // An n-gram absent from every reference counts as seen once.
                let frequency = document_frequency.of(ngram).max(1.0);
                (ngram, term_frequency as f64 * (log_images - frequency.ln()))
            })
            .collect()
    });
    let norms = std::array::from_fn(|order| weights[order].iter().map(|(_, w)| w * w).sum::<f64>().sqrt());
    let lookup = std::array::from_fn(|order| weights[order].iter().copied().collect());
    let length = counts[1].iter().map(|&(_, count)| count).sum();
    TfIdf {
        weights,
        lookup,
        norms,
        length,
    }
}

/// Per-order clipped cosine similarity with the Gaussian length penalty.
fn similarity(candidate: &TfIdf, reference: &TfIdf) -> [f64; CIDER_MAX_ORDER] {
    let delta = candidate.length as f64 - reference.length as f64;
    // `e ** x` rather than `exp(x)`, as the reference writes it (`np.e ** ...`).
    let length_penalty = std::f64::consts::E.powf(-(delta * delta) / (2.0 * CIDER_SIGMA * CIDER_SIGMA));
    std::array::from_fn(|order| {
        let mut value = 0.0;
        for &(ngram, weight) in &candidate.weights[order] {
            let reference_weight = reference.lookup[order].get(ngram).copied().unwrap_or(0.0);
            value += weight.min(reference_weight) * reference_weight;
        }
        let (candidate_norm, reference_norm) = (candidate.norms[order], reference.norms[order]);
        if candidate_norm != 0.0 && reference_norm != 0.0 {
            value /= candidate_norm * reference_norm;
        }
        value * length_penalty
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_fixtures::{assert_close, caption_sets};
    use super::*;

    #[test]
    fn matches_pycocoevalcap_on_fixture_sets() {
        for (name, set) in caption_sets() {
            let scores = cider_d(&set.candidates(), &set.references()).expect("valid set");
            assert_close(scores.corpus, set.cider, 1e-12, &format!("{name} CIDEr-D"));
            assert_eq!(scores.per_image.len(), set.cider_per_image.len());
            for (image, (ours, theirs)) in scores.per_image.iter().zip(&set.cider_per_image).enumerate() {
                assert_close(*ours, *theirs, 1e-12, &format!("{name} image {image} CIDEr-D"));
            }
        }
    }

    #[test]
    fn reward_with_the_evaluated_set_as_corpus_equals_per_image_cider() {
        for (name, set) in caption_sets() {
            let (candidates, references) = set.raw_texts();
            let reward = CiderReward::new(&references).expect("valid set");
            let scores = cider_d_from_text(&candidates, &references).expect("valid set");
            for (image, candidate) in candidates.iter().enumerate() {
                let what = format!("{name} image {image} reward");
                assert_close(
                    reward.score(image, candidate),
                    scores.per_image[image],
                    1e-12,
                    &what,
                );
                // The same references passed in from outside score the same.
                assert_close(
                    reward.score_against(candidate, &references[image]),
                    scores.per_image[image],
                    1e-12,
                    &what,
                );
            }
        }
    }

    #[test]
    fn raw_text_goes_through_the_coco_tokenizer() {
        for (name, set) in caption_sets() {
            let (candidates, references) = set.raw_texts();
            let scores = cider_d_from_text(&candidates, &references).expect("valid set");
            assert_close(scores.corpus, set.cider, 1e-12, &format!("{name} CIDEr-D"));
        }
    }

    #[test]
    fn length_counts_bigrams() {
        let tokens: Vec<String> = ["a", "b", "a", "b"].iter().map(|t| t.to_string()).collect();
        let counts = ordered_counts(&tokens);
        assert_eq!(tf_idf(&counts, &HashMap::<Ngram, f64>::new(), 0.0).length, 3);
        // Bigrams in order of first occurrence, repeats counted.
        assert_eq!(
            counts[1].iter().map(|&(_, count)| count).collect::<Vec<_>>(),
            vec![2, 1]
        );
        assert_eq!(
            tf_idf(&ordered_counts(&tokens[..1]), &HashMap::<Ngram, f64>::new(), 0.0).length,
            0
        );
    }

    #[test]
    fn rejects_mismatched_and_empty_input() {
        let caption = vec!["a".to_string()];
        assert_eq!(
            cider_d(
                std::slice::from_ref(&caption),
                &[vec![caption.clone()], vec![caption.clone()]]
            ),
            Err(MetricsError::LengthMismatch {
                what: "candidates vs references",
                left: 1,
                right: 2
            })
        );
        assert_eq!(
            cider_d(&[], &[]),
            Err(MetricsError::Empty {
                what: "candidates vs references"
            })
        );
        assert_eq!(
            cider_d(&[caption], &[vec![]]),
            Err(MetricsError::EmptyItem {
                what: "image",
                index: 0,
                missing: "references"
            })
        );
    }
}

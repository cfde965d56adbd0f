//! A deterministic WordPiece vocabulary trainer.
//!
//! `tokenizers`' own `WordPieceTrainer` (BPE merges underneath) numbers the
//! continuing-subword symbols in hash-map order and orders merges of equal count by
//! those numbers, so one corpus can give different vocabularies from run to run
//! (huggingface/tokenizers#1794) and a model trained twice from the same seed sees
//! different token ids. This is the same algorithm with every tie broken by the
//! symbols' text: one corpus, one vocabulary.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Marks a symbol that continues a word (WordPiece's `##`).
pub(crate) const CONTINUING: &str = "##";

/// Learns a vocabulary from `word_counts` (normalised, pre-tokenised words), in id
/// order: `special`, the single characters (sorted), the characters that continue
/// words (`##c`, sorted), then one token per merge, until `vocab_size` tokens or no
/// pair is seen `min_frequency` times.
pub(crate) fn train_vocabulary(
    word_counts: &BTreeMap<String, u64>,
    special: &[&str],
    vocab_size: usize,
    min_frequency: u64,
) -> Vec<String> {
    let mut vocab = Vocabulary::default();
    for token in special {
        vocab.intern(token);
    }
    let starts: BTreeSet<String> = word_counts
        .keys()
        .flat_map(|w| w.chars().map(String::from))
        .collect();
    let continuations: BTreeSet<String> = word_counts
        .keys()
        .flat_map(|w| w.chars().skip(1).map(|c| format!("{CONTINUING}{c}")))
        .collect();
    for symbol in starts.iter().chain(&continuations) {
        vocab.intern(symbol);
    }
    let mut words: Vec<(Vec<u32>, u64)> = word_counts
        .iter()
        .map(|(word, &count)| {
            let symbols = word
                .chars()
                .enumerate()
                .map(|(i, c)| match i {
                    0 => vocab.intern(&c.to_string()),
                    _ => vocab.intern(&format!("{CONTINUING}{c}")),
                })
                .collect();
            (symbols, count)
        })
        .collect();

    while vocab.tokens.len() < vocab_size {
        let mut pairs: HashMap<(u32, u32), u64> = HashMap::new();
        for (symbols, count) in &words {
            for pair in symbols.windows(2) {
                *pairs.entry((pair[0], pair[1])).or_default() += count;
            }
        }
        // The most frequent pair; among equals, the first by the symbols' text.
        let text = |(a, b): (u32, u32)| (&vocab.tokens[a as usize], &vocab.tokens[b as usize]);
        let best = pairs
            .iter()
            .max_by(|(&x, cx), (&y, cy)| cx.cmp(cy).then_with(|| text(y).cmp(&text(x))));
        let Some((&(left, right), &count)) = best else {
            break;
        };
        if count < min_frequency.max(1) {
            break;
        }
        let tail = &vocab.tokens[right as usize];
        let merged = format!(
            "{}{}",
            vocab.tokens[left as usize],
            tail.strip_prefix(CONTINUING).unwrap_or(tail)
        );
        let id = vocab.intern(&merged);
        for (symbols, _) in &mut words {
            merge_pair(symbols, left, right, id);
        }
    }
    vocab.tokens
}

#[derive(Default)]
struct Vocabulary {
    tokens: Vec<String>,
    ids: HashMap<String, u32>,
}

impl Vocabulary {
    fn intern(&mut self, token: &str) -> u32 {
        if let Some(&id) = self.ids.get(token) {
            return id;
        }
        let id = self.tokens.len() as u32;
        self.tokens.push(token.to_string());
        self.ids.insert(token.to_string(), id);
        id
    }
}

/// Replaces each occurrence of `left right` in `symbols`, left to right, by `merged`.
fn merge_pair(symbols: &mut Vec<u32>, left: u32, right: u32, merged: u32) {
    let mut out = Vec::with_capacity(symbols.len());
    let mut i = 0;
    while i < symbols.len() {
        if i + 1 < symbols.len() && symbols[i] == left && symbols[i + 1] == right {
            out.push(merged);
            i += 2;
        } else {
            out.push(symbols[i]);
            i += 1;
        }
    }
    *symbols = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(words: &[(&str, u64)]) -> BTreeMap<String, u64> {
        words.iter().map(|&(w, c)| (w.to_string(), c)).collect()
    }

    /// Worked by hand: "low" ×5, "lower" ×2, "newest" ×6, "widest" ×3.
    #[test]
    fn merges_the_most_frequent_pair_first_and_ties_by_text() {
        let words = counts(&[("low", 5), ("lower", 2), ("newest", 6), ("widest", 3)]);
        let vocab = train_vocabulary(&words, &["[UNK]"], 30, 2);
        let alphabet = ["[UNK]", "d", "e", "i", "l", "n", "o", "r", "s", "t", "w"];
        assert_eq!(&vocab[..11], &alphabet);
        let continuing = ["##d", "##e", "##i", "##o", "##r", "##s", "##t", "##w"];
        assert_eq!(&vocab[11..19], &continuing);
        // ##e ##s and ##s ##t are both seen 9 times ("newest" 6 + "widest" 3): the
        // first by text wins, then ##es ##t (9). Next l ##o and ##o ##w tie at 7 and
        // "##o" sorts before "l"; then l ##ow (7).
        assert_eq!(&vocab[19..23], &["##es", "##est", "##ow", "low"]);
        assert!(vocab.len() <= 30);
    }

    #[test]
    fn stops_at_the_size_or_when_pairs_are_too_rare() {
        let words = counts(&[("abc", 3), ("abd", 1)]);
        // a ##b (4), then ab ##c (3); ab ##d is seen once, under min_frequency 2.
        let vocab = train_vocabulary(&words, &[], 100, 2);
        assert_eq!(vocab, ["a", "b", "c", "d", "##b", "##c", "##d", "ab", "abc"]);
        assert_eq!(train_vocabulary(&words, &[], 8, 1).len(), 8);
    }

    #[test]
    fn merging_replaces_non_overlapping_pairs_left_to_right() {
        let mut symbols = vec![1, 1, 1, 2, 1, 1];
        merge_pair(&mut symbols, 1, 1, 9);
        assert_eq!(symbols, vec![9, 1, 2, 9]);
    }
}

//! Caption search (greedy and beam with the GNMT length penalty, Wu et al. 2016),
//! written once for the trainer (burn, whole prefixes) and the device (tract, KV
//! cache): both implement [`NextToken`] and get the same captions.

/// Decoding settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeOptions {
    /// 1 = greedy.
    pub beam_size: usize,
    /// GNMT length penalty exponent; 0 = none.
    pub length_penalty: f32,
    pub max_len: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            beam_size: 1,
            length_penalty: 0.6,
            max_len: 40,
        }
    }
}

/// A model that scores the next token of several prefixes of the same image(s).
pub trait NextToken {
    type Error;

    /// Log-probabilities over the vocabulary after each prefix. `parents[i]` is the
    /// index, among the previous call's prefixes, of the prefix that `prefixes[i]`
    /// extends by one token (`None` on the first call), so a cached model can
    /// reorder its cache instead of recomputing whole prefixes.
    fn next_log_probs(
        &mut self,
        prefixes: &[Vec<u32>],
        parents: Option<&[usize]>,
    ) -> Result<Vec<Vec<f32>>, Self::Error>;
}

/// Greedy decoding of `batch` sequences at once (one per image of the model).
/// Returns token ids without [CLS]/[SEP].
pub fn greedy<M: NextToken>(
    model: &mut M,
    batch: usize,
    bos: u32,
    eos: u32,
    max_len: usize,
) -> Result<Vec<Vec<u32>>, M::Error> {
    let mut seqs = vec![vec![bos]; batch];
    let mut done = vec![false; batch];
    let identity: Vec<usize> = (0..batch).collect();
    let mut first = true;
    while seqs[0].len() < max_len && done.iter().any(|d| !d) {
        let parents = (!first).then_some(identity.as_slice());
        let log_probs = model.next_log_probs(&seqs, parents)?;
        first = false;
        for (i, lp) in log_probs.iter().enumerate() {
            let next = if done[i] { eos } else { argmax(lp) };
            done[i] |= next == eos;
            seqs[i].push(next);
        }
    }
    Ok(seqs.into_iter().map(|s| strip(&s, eos)).collect())
}

/// Beam search for one image: the best caption (token ids without [CLS]/[SEP]).
pub fn beam<M: NextToken>(
    model: &mut M,
    bos: u32,
    eos: u32,
    max_len: usize,
    opts: DecodeOptions,
) -> Result<Vec<u32>, M::Error> {
    Ok(beam_candidates(model, bos, eos, max_len, opts)?
        .into_iter()
        .next()
        .map(|c| c.tokens)
        .unwrap_or_default())
}

/// A caption the beam search finished with.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Token ids without [CLS]/[SEP].
    pub tokens: Vec<u32>,
    /// Log-probability divided by the length penalty.
    pub score: f32,
}

/// Beam search for one image, returning every caption it finished (and the live beams
/// at `max_len`), best score first, so a reranker can choose among them.
pub fn beam_candidates<M: NextToken>(
    model: &mut M,
    bos: u32,
    eos: u32,
    max_len: usize,
    opts: DecodeOptions,
) -> Result<Vec<Candidate>, M::Error> {
    let penalty = |len: usize| ((5.0 + len as f32) / 6.0).powf(opts.length_penalty);
    // (tokens, score, index of the prefix it came from)
    let mut beams: Vec<(Vec<u32>, f32)> = vec![(vec![bos], 0.0)];
    let mut parents: Option<Vec<usize>> = None;
    let mut finished: Vec<(Vec<u32>, f32)> = Vec::new();
    while !beams.is_empty() && beams[0].0.len() < max_len {
        let prefixes: Vec<Vec<u32>> = beams.iter().map(|b| b.0.clone()).collect();
        let log_probs = model.next_log_probs(&prefixes, parents.as_deref())?;
        let mut candidates: Vec<(Vec<u32>, f32, usize)> = Vec::new();
        for (parent, ((seq, score), lp)) in beams.iter().zip(&log_probs).enumerate() {
            for token in top_k(lp, opts.beam_size) {
                let mut next = seq.clone();
                next.push(token);
                candidates.push((next, score + lp[token as usize], parent));
            }
        }
        candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
        beams.clear();
        let mut next_parents = Vec::new();
        for (seq, score, parent) in candidates {
            if beams.len() >= opts.beam_size {
                break;
            }
            if seq.last() == Some(&eos) {
                let words = seq.len() - 2;
                finished.push((seq, score / penalty(words)));
            } else {
                beams.push((seq, score));
                next_parents.push(parent);
            }
        }
        parents = Some(next_parents);
        let best_done = finished.iter().map(|f| f.1).fold(f32::NEG_INFINITY, f32::max);
        // No live beam can still beat the best finished one once the penalty stops helping.
        if finished.len() >= opts.beam_size && beams.iter().all(|b| b.1 / penalty(max_len) < best_done) {
            break;
        }
    }
    for (seq, score) in beams {
        let words = seq.len() - 1;
        finished.push((seq, score / penalty(words)));
    }
    finished.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(finished
        .into_iter()
        .map(|(seq, score)| Candidate {
            tokens: strip(&seq, eos),
            score,
        })
        .collect())
}

/// Numerically stable log-softmax of one row of logits.
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|&v| (v - max).exp()).sum();
    let log_sum = sum.ln() + max;
    logits.iter().map(|&v| v - log_sum).collect()
}

pub fn argmax(values: &[f32]) -> u32 {
    values
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i as u32)
        .unwrap_or(0)
}

/// The `k` largest values' indices, largest first, equal values in index order
/// (what a stable sort gives), in one pass over the vocabulary: an index enters
/// the kept few only when it beats the last of them, which few do.
fn top_k(values: &[f32], k: usize) -> Vec<u32> {
    let k = k.min(values.len());
    // `a` before `b`: larger, or as large and earlier.
    let before = |a: u32, b: u32| {
        values[a as usize]
            .total_cmp(&values[b as usize])
            .then(b.cmp(&a))
            .is_gt()
    };
    let mut kept: Vec<u32> = Vec::with_capacity(k + 1);
    if k == 0 {
        return kept;
    }
    for i in 0..values.len() as u32 {
        if kept.len() == k && kept.last().is_some_and(|&last| !before(i, last)) {
            continue;
        }
        let at = kept.partition_point(|&j| before(j, i));
        kept.insert(at, i);
        kept.truncate(k);
    }
    kept
}

/// Drops the leading [CLS] and everything from the first [SEP].
fn strip(seq: &[u32], eos: u32) -> Vec<u32> {
    seq.iter().skip(1).take_while(|&&t| t != eos).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_of_a_vocabulary_with_ties_is_the_stable_sort_s_prefix() {
        // Values from a small set, so that most have equals.
        let values: Vec<f32> = (0..3000u32)
            .map(|i| ((i * 7919) % 61) as f32 * 0.25 - 4.0)
            .collect();
        for k in [1, 2, 15, 60, 61, 62, 3000] {
            let mut sorted: Vec<u32> = (0..values.len() as u32).collect();
            sorted.sort_by(|&a, &b| values[b as usize].total_cmp(&values[a as usize]));
            sorted.truncate(k);
            assert_eq!(top_k(&values, k), sorted, "k = {k}");
        }
    }

    #[test]
    fn top_k_is_the_stable_sort_s_prefix() {
        let values = [0.5, 2.0, -1.0, 2.0, 0.5, f32::NEG_INFINITY, 3.0, 0.5];
        for k in 0..=values.len() + 1 {
            let mut sorted: Vec<u32> = (0..values.len() as u32).collect();
            sorted.sort_by(|&a, &b| values[b as usize].total_cmp(&values[a as usize]));
            sorted.truncate(k);
            assert_eq!(top_k(&values, k), sorted, "k = {k}");
        }
    }

    /// A fixed table: the next token's log-probabilities depend on the last token.
    struct Table {
        calls: Vec<Option<Vec<usize>>>,
    }

    impl NextToken for Table {
        type Error = ();
        fn next_log_probs(
            &mut self,
            prefixes: &[Vec<u32>],
            parents: Option<&[usize]>,
        ) -> Result<Vec<Vec<f32>>, ()> {
            self.calls.push(parents.map(<[usize]>::to_vec));
            Ok(prefixes
                .iter()
                .map(|p| {
                    // vocab: 0 = [CLS], 1 = [SEP], 2 = "a", 3 = "b"
                    let probs: [f32; 4] = match p.last() {
                        Some(0) => [0.0, 0.05, 0.55, 0.4],
                        Some(2) => [0.0, 0.5, 0.1, 0.4],
                        _ => [0.0, 0.9, 0.05, 0.05],
                    };
                    probs.iter().map(|v| v.ln()).collect()
                })
                .collect())
        }
    }

    #[test]
    fn greedy_follows_the_argmax_and_beam_finds_the_better_sequence() {
        let mut m = Table { calls: vec![] };
        // Greedy: a (0.55) then [SEP] (0.5): p = 0.275.
        assert_eq!(greedy(&mut m, 1, 0, 1, 10).unwrap(), vec![vec![2]]);
        assert_eq!(m.calls[0], None);
        assert_eq!(m.calls[1], Some(vec![0]));
        // Beam 2 without length penalty: "b [SEP]" has p = 0.4 * 0.9 = 0.36 > 0.275.
        let opts = DecodeOptions {
            beam_size: 2,
            length_penalty: 0.0,
            max_len: 10,
        };
        let mut m = Table { calls: vec![] };
        assert_eq!(beam(&mut m, 0, 1, 10, opts).unwrap(), vec![3]);
        // Second call: beams "a" (parent 0) and "b" (parent 0).
        assert_eq!(m.calls[1], Some(vec![0, 0]));
        // Every finished caption comes back, best first; the first is beam's choice.
        let found = beam_candidates(&mut Table { calls: vec![] }, 0, 1, 10, opts).unwrap();
        assert!(found.len() >= 2, "{found:?}");
        assert_eq!(found[0].tokens, vec![3]);
        assert!(found.windows(2).all(|w| w[0].score >= w[1].score), "{found:?}");
        assert!(found.iter().any(|c| c.tokens == vec![2]), "{found:?}");
        let lp = log_softmax(&[1.0, 2.0, 3.0]);
        let total: f32 = lp.iter().map(|v| v.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6 && argmax(&lp) == 2);
    }
}

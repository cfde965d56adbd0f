//! No answer may dominate its kind of question: a model that always says "dog"
//! to "what …?" must not score. Each kind keeps at most a share of any one answer;
//! the questions kept of an over-frequent answer are drawn with the seed.

use std::collections::BTreeMap;

use edgevlm_shared::rng::SplitMix64;

/// The largest count `c` any one answer may keep so that no answer holds more than
/// `share` of what is kept. A kind with fewer than `1 / share` common answers (each
/// at least 5 % of the kind) is held to an even split among those instead: "how
/// many" has few answers, and the rare ones must not thin the common ones to
/// nothing. `counts` are the questions per answer.
pub fn cap(counts: &[usize], share: f64) -> usize {
    let Some(&largest) = counts.iter().max() else {
        return 0;
    };
    let total: usize = counts.iter().sum();
    let common = counts.iter().filter(|&&n| n * 20 >= total).count().max(1);
    let share = share.max(1.0 / common as f64);
    let kept = |c: usize| counts.iter().map(|&n| n.min(c)).sum::<usize>();
    let fits = |c: usize| c as f64 <= share * kept(c) as f64 + 1e-9;
    // `fits` holds for the smallest count and stops holding above some c: search it.
    let (mut lo, mut hi) = (counts.iter().copied().min().unwrap_or(0), largest);
    if fits(hi) {
        return hi;
    }
    while lo + 1 < hi {
        let mid = (lo + hi) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Keeps, of `items`, at most the capped number per answer (`answer_of`), drawn
/// at random with `seed`; the order of what is kept is the input's.
pub fn balance<T>(items: Vec<T>, share: f64, seed: u64, answer_of: impl Fn(&T) -> &str) -> Vec<T> {
    let mut by_answer: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        by_answer.entry(answer_of(item).to_string()).or_default().push(i);
    }
    let counts: Vec<usize> = by_answer.values().map(Vec::len).collect();
    let limit = cap(&counts, share);
    let mut rng = SplitMix64::new(seed);
    let mut keep = vec![false; items.len()];
    for indices in by_answer.values_mut() {
        keep_at_random(indices, limit, &mut rng, &mut keep);
    }
    kept(items, keep)
}

/// Marks `limit` of `indices` (all when fewer) in `keep`, drawn by a partial
/// Fisher-Yates shuffle.
fn keep_at_random(indices: &mut [usize], limit: usize, rng: &mut SplitMix64, keep: &mut [bool]) {
    let n = indices.len();
    for k in 0..limit.min(n) {
        let j = k + rng.below((n - k) as u64) as usize;
        indices.swap(k, j);
        keep[indices[k]] = true;
    }
}

/// The items marked in `keep`, in their order.
fn kept<T>(items: Vec<T>, keep: Vec<bool>) -> Vec<T> {
    items
        .into_iter()
        .zip(keep)
        .filter_map(|(item, kept)| kept.then_some(item))
        .collect()
}

/// Keeps, for each probe word, as many items of each of its answers as its rarest
/// answer has (drawn with `seed`), so that the word says nothing of the answer:
/// "are there two …?" is "yes" as often as "are there five …?". Items without a
/// probe are all kept; the order of what is kept is the input's.
pub fn even_per_probe<T>(
    items: Vec<T>,
    seed: u64,
    probe_of: impl Fn(&T) -> (Option<&'static str>, &str),
) -> Vec<T> {
    let mut by_probe: BTreeMap<&'static str, BTreeMap<String, Vec<usize>>> = BTreeMap::new();
    let mut keep = vec![true; items.len()];
    for (i, item) in items.iter().enumerate() {
        if let (Some(probe), answer) = probe_of(item) {
            keep[i] = false;
            by_probe
                .entry(probe)
                .or_default()
                .entry(answer.to_string())
                .or_default()
                .push(i);
        }
    }
    let mut rng = SplitMix64::new(seed ^ 0x9e37_79b9_7f4a_7c15);
    for answers in by_probe.values_mut() {
        // A probe heard with one answer only is dropped whole.
        let limit = if answers.len() < 2 {
            0
        } else {
            answers.values().map(Vec::len).min().unwrap_or(0)
        };
        for indices in answers.values_mut() {
            keep_at_random(indices, limit, &mut rng, &mut keep);
        }
    }
    kept(items, keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_bounds_every_answers_share() {
        let counts = [700, 200, 100, 100, 50, 30, 20];
        let c = cap(&counts, 0.25);
        let kept: usize = counts.iter().map(|&n| n.min(c)).sum();
        assert!(c as f64 <= 0.25 * kept as f64, "cap {c} of {kept}");
        // One more would break the bound: the cap is the largest that keeps it.
        let kept_more: usize = counts.iter().map(|&n| n.min(c + 1)).sum();
        assert!((c + 1) as f64 > 0.25 * kept_more as f64);
        // Two answers: an even split, whatever the share asked for.
        assert_eq!(cap(&[900, 300], 0.2), 300);
        // Few common answers and a tail of rare ones: the common ones share evenly
        // with the tail kept whole, rather than all held to the rarest.
        // (Two answers hold 5 %: each may keep half of what is kept.)
        assert_eq!(cap(&[2000, 300, 100, 40, 30], 0.2), 470);
        assert_eq!(cap(&[10, 10, 10, 10, 10], 0.25), 10);
        assert_eq!(cap(&[], 0.25), 0);
    }

    #[test]
    fn balancing_keeps_order_and_is_seeded() {
        let items: Vec<(usize, &str)> = (0..100)
            .map(|i| (i, if i % 10 == 0 { "rare" } else { "common" }))
            .collect();
        let a = balance(items.clone(), 0.5, 7, |x| x.1);
        let b = balance(items.clone(), 0.5, 7, |x| x.1);
        assert_eq!(a, b);
        assert_eq!(a.iter().filter(|x| x.1 == "rare").count(), 10);
        assert_eq!(a.iter().filter(|x| x.1 == "common").count(), 10);
        assert!(a.windows(2).all(|w| w[0].0 < w[1].0));
        assert_ne!(a, balance(items, 0.5, 8, |x| x.1));
    }

    #[test]
    fn each_probe_keeps_as_many_yes_as_no() {
        // "two" is mostly yes, "five" mostly no, "three" only yes: a blind model
        // would read the answer off the number.
        let mut items: Vec<(usize, Option<&'static str>, &str)> = Vec::new();
        for (probe, yes, no) in [("two", 30, 6), ("five", 2, 20), ("three", 5, 0)] {
            for _ in 0..yes {
                items.push((items.len(), Some(probe), "yes"));
            }
            for _ in 0..no {
                items.push((items.len(), Some(probe), "no"));
            }
        }
        items.push((items.len(), None, "dog"));
        let kept = even_per_probe(items.clone(), 3, |x| (x.1, x.2));
        let count = |probe: &str, answer: &str| {
            kept.iter()
                .filter(|x| x.1 == Some(probe) && x.2 == answer)
                .count()
        };
        assert_eq!((count("two", "yes"), count("two", "no")), (6, 6));
        assert_eq!((count("five", "yes"), count("five", "no")), (2, 2));
        assert_eq!((count("three", "yes"), count("three", "no")), (0, 0));
        assert!(
            kept.iter().any(|x| x.2 == "dog"),
            "questions without a probe stay"
        );
        assert!(kept.windows(2).all(|w| w[0].0 < w[1].0));
        assert_ne!(
            kept,
            even_per_probe(items, 4, |x| (x.1, x.2)),
            "the seed draws which are kept"
        );
    }
}

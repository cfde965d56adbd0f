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
        // A partial Fisher-Yates shuffle picks `limit` of them.
        let n = indices.len();
        for k in 0..limit.min(n) {
            let j = k + rng.below((n - k) as u64) as usize;
            indices.swap(k, j);
            keep[indices[k]] = true;
        }
    }
    items
        .into_iter()
        .zip(keep)
        .filter_map(|(item, kept)| kept.then_some(item))
        .collect()
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
}

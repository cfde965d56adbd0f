//! Image-text alignment: ITC (in-batch InfoNCE) and ITM with negatives mined from
//! the ITC similarities (ALBEF).

use burn::tensor::{Int, Tensor, TensorData};
use edgevlm_shared::rng::SplitMix64;

use super::*;
use crate::model::EdgeVlm;

fn to_vec(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap_or_default()
}

/// ITC: symmetric InfoNCE over in-batch pairs, from the image tower's tokens and
/// the text states. Returns the loss and the (detached) image-to-text similarity
/// matrix for mining ITM negatives.
pub fn contrastive(
    model: &EdgeVlm,
    tower_tokens: Tensor<3>,
    text_states: Tensor<3>,
    text_mask: Tensor<2>,
) -> (Tensor<1>, Vec<f32>) {
    itc_loss(
        model.image_embedding(tower_tokens),
        model.text_embedding(text_states, text_mask),
        model.itc.scale(),
    )
}

/// Symmetric InfoNCE of unit embeddings `[n, d_embed]` whose row i of each side
/// belong together, at similarity scale `scale` `[1]`. Returns the loss and the
/// detached similarities `[n, n]`, row-major.
pub fn itc_loss(images: Tensor<2>, texts: Tensor<2>, scale: Tensor<1>) -> (Tensor<1>, Vec<f32>) {
    let batch = images.dims()[0];
    let sims = images.matmul(texts.transpose());
    let logits = sims.clone() * scale.unsqueeze_dim(0);
    let diagonal: Vec<i64> = (0..batch as i64).collect();
    let ones = vec![1.0; batch];
    let loss = (weighted_cross_entropy(logits.clone(), &diagonal, &ones)
        + weighted_cross_entropy(logits.transpose(), &diagonal, &ones))
    .div_scalar(2.0);
    (loss, to_vec(sims.detach()))
}

/// Draws an index ≠ `own` with probability ∝ exp(similarity / 0.1), among `allowed`.
pub(crate) fn hard_negative(
    row: &[f32],
    own: usize,
    allowed: impl Fn(usize) -> bool,
    rng: &mut SplitMix64,
) -> Option<usize> {
    let weights: Vec<f64> = row
        .iter()
        .enumerate()
        .map(|(j, &s)| {
            if j != own && allowed(j) {
                ((s as f64) / 0.1).exp()
            } else {
                0.0
            }
        })
        .collect();
    let total: f64 = weights.iter().sum();
    if total <= 0.0 || !total.is_finite() {
        return None;
    }
    let mut pick = rng.unit() * total;
    for (j, w) in weights.iter().enumerate() {
        if *w > 0.0 && pick < *w {
            return Some(j);
        }
        pick -= w;
    }
    weights.iter().rposition(|w| *w > 0.0)
}

/// An ITM negative for `own` among `allowed`: with probability `random_share` any
/// allowed index alike, otherwise a [`hard_negative`]. A share of 0 draws exactly
/// what [`hard_negative`] draws.
pub(crate) fn negative(
    row: &[f32],
    own: usize,
    allowed: impl Fn(usize) -> bool,
    random_share: f64,
    rng: &mut SplitMix64,
) -> Option<usize> {
    if random_share > 0.0 && rng.unit() < random_share {
        let candidates: Vec<usize> = (0..row.len()).filter(|&j| j != own && allowed(j)).collect();
        if candidates.is_empty() {
            return None;
        }
        return Some(candidates[rng.below(candidates.len() as u64) as usize]);
    }
    hard_negative(row, own, allowed, rng)
}

/// The (image, text) rows ITM sees and their labels (1: the pair belongs together).
#[derive(Debug, Default, PartialEq)]
pub struct ItmPairs {
    pub images: Vec<usize>,
    pub texts: Vec<usize>,
    pub labels: Vec<i64>,
}

/// ITM pairs for a batch of `batch` (image, text) pairs with ITC similarities `sims`
/// (`[batch, batch]`, row-major): every true pair, and negatives drawn from the
/// similarities (ALBEF), a `random_share` of them uniformly instead: each text gets
/// a negative image and each image a negative text. `interchangeable(i, j)` says
/// pairs i and j describe the same thing (so are not negatives for each other).
pub fn itm_pairs(
    sims: &[f32],
    batch: usize,
    interchangeable: &dyn Fn(usize, usize) -> bool,
    random_share: f64,
    rng: &mut SplitMix64,
) -> ItmPairs {
    let row = |i: usize| &sims[i * batch..(i + 1) * batch];
    let mut pairs = ItmPairs::default();
    let mut push = |image: usize, text: usize, label: i64| {
        pairs.images.push(image);
        pairs.texts.push(text);
        pairs.labels.push(label);
    };
    for i in 0..batch {
        push(i, i, 1);
    }
    for t in 0..batch {
        let column: Vec<f32> = (0..batch).map(|i| sims[i * batch + t]).collect();
        if let Some(i) = negative(&column, t, |j| !interchangeable(j, t), random_share, rng) {
            push(i, t, 0);
        }
    }
    for i in 0..batch {
        if let Some(t) = negative(row(i), i, |j| !interchangeable(i, j), random_share, rng) {
            push(i, t, 0);
        }
    }
    pairs
}

/// Rows `indices` of a tensor's first dimension, as an index tensor.
pub fn rows(indices: &[usize], device: &burn::tensor::Device) -> Tensor<1, Int> {
    let n = indices.len();
    Tensor::from_data(
        TensorData::new(indices.iter().map(|&i| i as i64).collect::<Vec<_>>(), [n]),
        device,
    )
}

/// The ITM loss of `pairs` over image tokens `[batch, n, d_image]` and text states
/// `[batch_texts, len, d_text]` with their mask (rows picked by `pairs`).
pub fn itm_loss(
    model: &EdgeVlm,
    pairs: &ItmPairs,
    image_tokens: Tensor<3>,
    text_states: Tensor<3>,
    text_mask: Tensor<2>,
) -> Tensor<1> {
    let device = image_tokens.device();
    let images = image_tokens.select(0, rows(&pairs.images, &device));
    let texts = text_states.select(0, rows(&pairs.texts, &device));
    let masks = text_mask.select(0, rows(&pairs.texts, &device));
    let logits = model.itm.forward(model.fused_cls(texts, masks, images));
    weighted_cross_entropy(logits, &pairs.labels, &vec![1.0; pairs.labels.len()])
}

/// ITM with negatives drawn from the in-batch ITC similarities ([`itm_pairs`]).
#[allow(clippy::too_many_arguments)]
pub fn matching(
    model: &EdgeVlm,
    image_tokens: Tensor<3>,
    text_states: Tensor<3>,
    text_mask: Tensor<2>,
    sims: &[f32],
    interchangeable: &dyn Fn(usize, usize) -> bool,
    random_share: f64,
    rng: &mut SplitMix64,
) -> Tensor<1> {
    let batch = image_tokens.dims()[0];
    let pairs = itm_pairs(sims, batch, interchangeable, random_share, rng);
    itm_loss(model, &pairs, image_tokens, text_states, text_mask)
}

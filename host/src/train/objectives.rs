//! Training objectives. Each takes a batch already on the device and returns its
//! loss; random choices (masks, negatives) come from the caller's seeded generator so
//! that a resumed run repeats them exactly.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use edgevlm_shared::rng::SplitMix64;
use edgevlm_shared::tokenizer::SpecialIds;
use edgevlm_shared::EncodedBatch;

use crate::model::attention::padding_bias;
pub use crate::model::input::{text_input, TextInput};
use crate::model::spatial::SpatialVqa;
use crate::model::vlm::mean_over_tokens;
use crate::model::EdgeVlm;

/// Cross-entropy of `logits` `[n, classes]` against `targets`, weighted per row
/// (0 ignores a row), averaged over the total weight.
pub fn weighted_cross_entropy(logits: Tensor<2>, targets: &[i64], weights: &[f32]) -> Tensor<1> {
    smoothed_cross_entropy(logits, targets, weights, 0.0)
}

/// [`weighted_cross_entropy`] against targets smoothed towards the uniform
/// distribution (Szegedy et al. 2016): `(1 - smoothing)` on the target class and
/// `smoothing / classes` on every class.
pub fn smoothed_cross_entropy(
    logits: Tensor<2>,
    targets: &[i64],
    weights: &[f32],
    smoothing: f32,
) -> Tensor<1> {
    let device = logits.device();
    let n = targets.len();
    let targets = Tensor::<2, Int>::from_data(TensorData::new(targets.to_vec(), [n, 1]), &device);
    let w = Tensor::<2>::from_data(TensorData::new(weights.to_vec(), [n, 1]), &device);
    let log_probs = log_softmax(logits, 1);
    let mut picked = log_probs.clone().gather(1, targets);
    if smoothing > 0.0 {
        let uniform = log_probs.mean_dim(1);
        picked = picked.mul_scalar(1.0 - smoothing) + uniform.mul_scalar(smoothing);
    }
    let total: f32 = weights.iter().sum();
    (picked * w).sum().neg().div_scalar(total.max(1.0))
}

/// Sequence cross-entropy: `[batch, len, vocab]` logits against `[batch * len]` targets.
pub fn sequence_cross_entropy(logits: Tensor<3>, targets: &[i64], weights: &[f32]) -> Tensor<1> {
    smoothed_sequence_cross_entropy(logits, targets, weights, 0.0)
}

/// [`sequence_cross_entropy`] with label smoothing (see [`smoothed_cross_entropy`]).
pub fn smoothed_sequence_cross_entropy(
    logits: Tensor<3>,
    targets: &[i64],
    weights: &[f32],
    smoothing: f32,
) -> Tensor<1> {
    let [batch, len, vocab] = logits.dims();
    smoothed_cross_entropy(logits.reshape([batch * len, vocab]), targets, weights, smoothing)
}

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

/// BERT masking: 15% of real tokens; of those 80% [MASK], 10% random, 10% unchanged.
/// Returns the corrupted ids, targets and per-position weights.
pub fn mask_tokens(
    ids: &[u32],
    mask: &[u32],
    special: SpecialIds,
    vocab: usize,
    rng: &mut SplitMix64,
) -> (Vec<u32>, Vec<i64>, Vec<f32>) {
    let mut corrupted = ids.to_vec();
    let mut targets = vec![0i64; ids.len()];
    let mut weights = vec![0f32; ids.len()];
    let is_special = |t: u32| t == special.cls || t == special.sep || t == special.pad;
    for i in 0..ids.len() {
        if mask[i] == 0 || is_special(ids[i]) || rng.unit() >= 0.15 {
            continue;
        }
        targets[i] = ids[i] as i64;
        weights[i] = 1.0;
        let roll = rng.unit();
        if roll < 0.8 {
            corrupted[i] = special.mask;
        } else if roll < 0.9 {
            corrupted[i] = rng.below(vocab as u64) as u32;
        }
    }
    (corrupted, targets, weights)
}

/// Captions with one token hidden, for MLM through the spatial head: each of the
/// `batch` rows of `ids`/`mask` (`[batch, len]`) gives `variants` rows, each with a
/// different real token (not [CLS]/[SEP]/[PAD]) replaced by [MASK]. Returns the
/// corrupted ids and masks (`[batch · variants, len]`), the hidden token of each
/// row and the caption row it came from; captions without a real token give none.
pub fn hide_one_token(
    ids: &[u32],
    mask: &[u32],
    len: usize,
    special: SpecialIds,
    variants: usize,
    rng: &mut SplitMix64,
) -> HiddenTokens {
    let mut out = HiddenTokens::default();
    let is_special = |t: u32| t == special.cls || t == special.sep || t == special.pad;
    for (row, (row_ids, row_mask)) in ids.chunks(len).zip(mask.chunks(len)).enumerate() {
        let mut positions: Vec<usize> = (0..len)
            .filter(|&i| row_mask[i] == 1 && !is_special(row_ids[i]))
            .collect();
        rng.shuffle(&mut positions);
        for &at in positions.iter().take(variants) {
            let mut corrupted = row_ids.to_vec();
            corrupted[at] = special.mask;
            out.ids.extend(corrupted);
            out.mask.extend_from_slice(row_mask);
            out.targets.push(row_ids[at] as i64);
            out.caption_row.push(row as i64);
        }
    }
    out
}

/// Rows of [`hide_one_token`].
#[derive(Debug, Default)]
pub struct HiddenTokens {
    pub ids: Vec<u32>,
    pub mask: Vec<u32>,
    pub targets: Vec<i64>,
    pub caption_row: Vec<i64>,
}

/// MLM through the spatial head: each caption with one token hidden is read as a
/// question about its image's grid cells (`cells`, [`SpatialVqa::cells`] of the
/// batch's images, one row per caption) and the hidden token is its answer, over
/// the whole vocabulary. `head` is the model's spatial MLM head. "a blue square left of a [MASK] triangle" asks what the
/// questions of VQA ask: find the named object, look beside it, read a colour.
///
/// [`SpatialVqa::cells`]: crate::model::spatial::SpatialVqa::cells
pub fn spatial_masked_language_model(
    model: &EdgeVlm,
    head: &SpatialVqa,
    cells: Tensor<3>,
    hidden: &HiddenTokens,
) -> Tensor<1> {
    let device = cells.device();
    let rows = hidden.targets.len();
    let len = hidden.ids.len() / rows.max(1);
    let text = text_input(&hidden.ids, &hidden.mask, rows, len, &device);
    let caption_row =
        Tensor::<1, Int>::from_data(TensorData::new(hidden.caption_row.clone(), [rows]), &device);
    let states = model.encode_text(text.ids, text.mask.clone());
    let logits = head.forward(cells.select(0, caption_row), mean_over_tokens(states, text.mask));
    weighted_cross_entropy(logits, &hidden.targets, &vec![1.0; rows])
}

/// MLM conditioned on the image: predict masked text tokens from the fused states.
pub fn masked_language_model(
    model: &EdgeVlm,
    image_tokens: Tensor<3>,
    corrupted: TextInput,
    targets: &[i64],
    weights: &[f32],
) -> Tensor<1> {
    let text = model.encode_text(corrupted.ids, corrupted.mask.clone());
    let fused = model.fusion.forward(text, corrupted.mask, image_tokens);
    mlm_loss(model, fused, targets, weights)
}

/// Cross-entropy of the MLM head over fused states `[batch, len, d_text]` at the
/// masked positions (weight > 0): only those go through the vocabulary-wide output
/// layer (30k words for a BERT tower).
pub fn mlm_loss(model: &EdgeVlm, fused: Tensor<3>, targets: &[i64], weights: &[f32]) -> Tensor<1> {
    let [batch, len, d] = fused.dims();
    let device = fused.device();
    let positions: Vec<usize> = (0..weights.len()).filter(|&p| weights[p] > 0.0).collect();
    if positions.is_empty() {
        return Tensor::zeros([1], &device);
    }
    let picked = fused
        .reshape([batch * len, d])
        .select(0, rows(&positions, &device))
        .reshape([1, positions.len(), d]);
    let words = model.text.word_embeddings.weight.val();
    let vocab = words.dims()[0];
    let logits = model.mlm.forward(picked, words).reshape([positions.len(), vocab]);
    let targets: Vec<i64> = positions.iter().map(|&p| targets[p]).collect();
    let weights: Vec<f32> = positions.iter().map(|&p| weights[p]).collect();
    weighted_cross_entropy(logits, &targets, &weights)
}

/// Masked image-feature regression: hide `ratio` of the patches at the encoder's
/// input; regress their pixels (normalised per patch) from the rest and the text. MSE
/// over the hidden patches.
pub fn masked_image_features(
    model: &EdgeVlm,
    images: Tensor<4>,
    text_states: Tensor<3>,
    text_mask: Tensor<2>,
    ratio: f64,
    rng: &mut SplitMix64,
) -> Tensor<1> {
    let (Some(vit), Some(mim)) = (model.vision.vit(), model.mim.as_ref()) else {
        panic!("masked image features need a ViT tower and the MIM head")
    };
    let target = vit.patchify(images.clone()).detach();
    let [batch, patches, d_target] = target.dims();
    let mean = target.clone().mean_dim(2);
    let var = (target.clone() - mean.clone()).powf_scalar(2.0).mean_dim(2);
    let target = (target - mean) / var.add_scalar(1e-6).sqrt();

    let embedded = vit.embed(images);
    let n = patches + 1;
    let device = embedded.device();
    let mut keep = vec![1f32; batch * n];
    for b in 0..batch {
        let mut order: Vec<usize> = (1..n).collect();
        rng.shuffle(&mut order);
        let hidden = (patches as f64 * ratio).round().max(1.0) as usize;
        for &p in &order[..hidden] {
            keep[b * n + p] = 0.0;
        }
    }
    let hidden_count = keep.iter().filter(|&&k| k == 0.0).count() as f32;
    let keep = Tensor::<3>::from_data(TensorData::new(keep, [batch, n, 1]), &device);
    let encoded = vit.encode(mim.mask(embedded, keep.clone()));
    let predicted = mim.forward(encoded, text_states, padding_bias(text_mask));
    let predicted = predicted.slice([0..batch, 1..n]);
    let hide = keep.slice([0..batch, 1..n]).neg().add_scalar(1.0);
    ((predicted - target).powf_scalar(2.0) * hide)
        .sum()
        .div_scalar(hidden_count * d_target as f32)
}

/// VQA: cross-entropy over the answer vocabulary.
///
/// Questions repeat across images (a template and a colour word), so each distinct
/// question in the batch goes through the text encoder once and its states are
/// shared by every row that asks it; the gradient is the same, the work is not.
pub fn vqa_loss(
    model: &EdgeVlm,
    image_tokens: Tensor<3>,
    question: &EncodedBatch,
    answers: &[i64],
) -> Tensor<1> {
    let device = image_tokens.device();
    let (distinct, row_of) = question.distinct();
    let text = text_input(
        &distinct.ids,
        &distinct.mask,
        distinct.batch,
        distinct.seq_len,
        &device,
    );
    let states = model.encode_text(text.ids, text.mask.clone());
    let rows = row_of.len();
    let row_of = Tensor::<1, Int>::from_data(
        TensorData::new(row_of.into_iter().map(|r| r as i64).collect::<Vec<_>>(), [rows]),
        &device,
    );
    let mask = text.mask.select(0, row_of.clone());
    let states = states.select(0, row_of);
    let logits = model.answer_logits(image_tokens, states, mask);
    weighted_cross_entropy(logits, answers, &vec![1.0; answers.len()])
}

/// Captioning: next-token cross-entropy with teacher forcing.
pub fn caption_loss(
    model: &EdgeVlm,
    images: Tensor<4>,
    ids: &[u32],
    mask: &[u32],
    batch: usize,
    len: usize,
) -> Tensor<1> {
    let device = images.device();
    let inputs: Vec<i64> = (0..batch)
        .flat_map(|b| ids[b * len..b * len + len - 1].iter().map(|&t| t as i64))
        .collect();
    let targets: Vec<i64> = (0..batch)
        .flat_map(|b| ids[b * len + 1..(b + 1) * len].iter().map(|&t| t as i64))
        .collect();
    let weights: Vec<f32> = (0..batch)
        .flat_map(|b| mask[b * len + 1..(b + 1) * len].iter().map(|&m| m as f32))
        .collect();
    let inputs = Tensor::<2, Int>::from_data(TensorData::new(inputs, [batch, len - 1]), &device);
    let image = model.encode_image(images);
    let logits = model.decoder.forward(inputs, image);
    sequence_cross_entropy(logits, &targets, &weights)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EdgeVlmConfig;
    use burn::optim::GradientsParams;
    use burn::tensor::Device;
    use burn::tensor::Distribution;

    #[test]
    fn label_smoothing_mixes_the_target_and_the_mean_log_probability() {
        let device = Device::flex();
        let rows = [
            [2.0f32, 0.5, -1.0, 0.0],
            [0.1, 0.2, 0.3, 3.0],
            [1.0, 1.0, 1.0, 1.0],
        ];
        let (targets, weights) = ([0i64, 2, 1], [1.0f32, 2.0, 0.0]);
        let logits = Tensor::<2>::from_data(TensorData::from(rows), &device);
        let loss = |smoothing: f32| {
            smoothed_cross_entropy(logits.clone(), &targets, &weights, smoothing).into_scalar::<f32>()
        };
        // By hand: log-softmax per row, then (1 - s) * -log p[target] + s * mean(-log p).
        let expected = |s: f64| {
            let mut total = 0.0;
            for ((row, &t), &w) in rows.iter().zip(&targets).zip(&weights) {
                let lse = row.iter().map(|&v| (v as f64).exp()).sum::<f64>().ln();
                let log_p: Vec<f64> = row.iter().map(|&v| v as f64 - lse).collect();
                let mean = log_p.iter().sum::<f64>() / log_p.len() as f64;
                total -= w as f64 * ((1.0 - s) * log_p[t as usize] + s * mean);
            }
            total / weights.iter().sum::<f32>() as f64
        };
        for s in [0.0, 0.1, 0.5] {
            assert!(
                (loss(s as f32) as f64 - expected(s)).abs() < 1e-5,
                "smoothing {s}"
            );
        }
        assert_eq!(
            loss(0.0),
            weighted_cross_entropy(logits.clone(), &targets, &weights).into_scalar::<f32>()
        );
    }

    /// Each objective can fit a fixed batch: its loss falls well below the start.
    #[test]
    fn contrastive_loss_fits_a_fixed_batch() {
        let device = Device::flex().autodiff();
        device.seed(1);
        let mut model = EdgeVlmConfig::tiny(30).init(&device);
        let images = Tensor::<4>::random([6, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
        let ids: Vec<u32> = (0..6).flat_map(|i| [2, 5 + i, 10 + i, 3]).collect();
        let text = text_input(&ids, &[1; 24], 6, 4, &device);
        let mut optim = crate::train::trainer::optimizer(&crate::train::TrainConfig::new());
        let mut first = None;
        let mut last = 0.0;
        for _ in 0..30 {
            let image_tokens = model.tower_tokens(images.clone());
            let states = model.encode_text(text.ids.clone(), text.mask.clone());
            let (loss, _) = contrastive(&model, image_tokens, states, text.mask.clone());
            last = loss.clone().into_scalar::<f32>();
            first.get_or_insert(last);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(3e-3, model, grads);
        }
        let first = first.unwrap();
        assert!(last < 0.5 * first, "ITC {first} -> {last}");
    }

    /// Share 0 draws exactly the hard negative; share 1 ignores the similarities and
    /// picks every allowed index alike; in between, the mix of both. Never the
    /// pair's own index or a disallowed one.
    #[test]
    fn random_negatives_mix_with_hard_ones_at_the_share_asked() {
        // Index 3 is far more similar than the rest; 0 is the pair itself, 5 is barred.
        let row = [0.9f32, 0.0, 0.1, 0.8, -0.2, 0.7];
        let allowed = |j: usize| j != 5;
        let (mut a, mut b) = (SplitMix64::new(9), SplitMix64::new(9));
        for _ in 0..200 {
            assert_eq!(
                negative(&row, 0, allowed, 0.0, &mut a),
                hard_negative(&row, 0, allowed, &mut b)
            );
        }
        let draws = 20_000;
        let counts = |share: f64| {
            let mut rng = SplitMix64::new(11);
            let mut counts = [0usize; 6];
            for _ in 0..draws {
                counts[negative(&row, 0, allowed, share, &mut rng).unwrap()] += 1;
            }
            counts
        };
        let uniform = counts(1.0);
        assert_eq!((uniform[0], uniform[5]), (0, 0));
        for &c in &uniform[1..5] {
            assert!((c as f64 / draws as f64 - 0.25).abs() < 0.015, "{uniform:?}");
        }
        // exp(8) dwarfs exp(1), exp(0) and exp(-2): hard sampling picks 3 almost always.
        let hard_share_of_3 = counts(0.0)[3] as f64 / draws as f64;
        assert!(hard_share_of_3 > 0.99, "{hard_share_of_3}");
        let half = counts(0.5);
        let expected = 0.5 * hard_share_of_3 + 0.5 * 0.25;
        assert!(
            (half[3] as f64 / draws as f64 - expected).abs() < 0.015,
            "{half:?}"
        );
        assert_eq!((half[0], half[5]), (0, 0));
        let mut rng = SplitMix64::new(1);
        assert_eq!(negative(&row, 0, |j| j == 0, 1.0, &mut rng), None);
    }

    const SPECIAL: SpecialIds = SpecialIds {
        pad: 0,
        unk: 1,
        cls: 2,
        sep: 3,
        mask: 4,
    };

    /// Every variant hides exactly one real token, a different one each time, and
    /// keeps the rest; a caption with fewer real tokens than variants gives fewer.
    #[test]
    fn hiding_one_token_per_variant() {
        // [CLS] 7 8 9 [SEP] | [CLS] 11 [SEP] [PAD] [PAD]
        let ids = [2, 7, 8, 9, 3, 2, 11, 3, 0, 0];
        let mask = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0];
        let mut rng = SplitMix64::new(4);
        let hidden = hide_one_token(&ids, &mask, 5, SPECIAL, 3, &mut rng);
        assert_eq!(hidden.caption_row, vec![0, 0, 0, 1]);
        let mut first_targets = hidden.targets[..3].to_vec();
        first_targets.sort_unstable();
        assert_eq!(first_targets, vec![7, 8, 9]);
        assert_eq!(hidden.targets[3], 11);
        for (r, row) in hidden.ids.chunks(5).enumerate() {
            let source = &ids[hidden.caption_row[r] as usize * 5..][..5];
            let changed: Vec<usize> = (0..5).filter(|&i| row[i] != source[i]).collect();
            assert_eq!(changed.len(), 1, "row {r}: {row:?}");
            assert_eq!(row[changed[0]], SPECIAL.mask);
            assert_eq!(source[changed[0]] as i64, hidden.targets[r]);
        }
        assert_eq!(hidden.mask.len(), hidden.ids.len());
    }

    /// The spatial head learns to name the hidden word from the image: two images,
    /// the same caption, different words hidden behind it.
    #[test]
    fn spatial_masked_language_model_fits_a_fixed_batch() {
        let device = Device::flex().autodiff();
        device.seed(5);
        let mut cfg = EdgeVlmConfig::tiny(30);
        cfg.grid = Some(cfg.default_grid());
        cfg.spatial_mlm = true;
        let mut model = cfg.init(&device);
        let images = Tensor::<4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
        let hidden = HiddenTokens {
            ids: vec![2, 4, 9, 3, 2, 4, 9, 3],
            mask: vec![1; 8],
            targets: vec![12, 17],
            caption_row: vec![0, 1],
        };
        let mut optim = crate::train::trainer::optimizer(&crate::train::TrainConfig::new());
        let mut losses = Vec::new();
        for _ in 0..40 {
            let head = model.spatial_mlm.as_ref().unwrap();
            let cells = head.cells(model.grid.as_ref().unwrap().forward(images.clone()));
            let loss = spatial_masked_language_model(&model, head, cells, &hidden);
            losses.push(loss.clone().into_scalar::<f32>());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(3e-3, model, grads);
        }
        let (first, last) = (losses[0], losses[losses.len() - 1]);
        assert!(first > 2.0, "starts near ln(30): {first}");
        assert!(last < 0.1 * first, "spatial MLM {first} -> {last}");
    }

    #[test]
    fn masked_image_features_fit_a_fixed_batch() {
        let device = Device::flex().autodiff();
        device.seed(2);
        let mut model = EdgeVlmConfig::tiny(30).init(&device);
        let images = Tensor::<4>::random([4, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
        let ids: Vec<u32> = (0..4).flat_map(|i| [2, 5 + i, 3]).collect();
        let text = text_input(&ids, &[1; 12], 4, 3, &device);
        let mut optim = crate::train::trainer::optimizer(&crate::train::TrainConfig::new());
        let mut losses = Vec::new();
        for step in 0..40 {
            let states = model.encode_text(text.ids.clone(), text.mask.clone());
            let mut rng = SplitMix64::new(step % 2);
            let loss =
                masked_image_features(&model, images.clone(), states, text.mask.clone(), 0.5, &mut rng);
            losses.push(loss.clone().into_scalar::<f32>());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(3e-3, model, grads);
        }
        // Normalised targets: an untrained head scores about 1.
        assert!(losses[0] > 0.5 && losses[0] < 3.0, "{}", losses[0]);
        assert!(
            losses[39] < 0.7 * losses[0],
            "MIM {} -> {}",
            losses[0],
            losses[39]
        );
    }

    /// Encoding each distinct question once gives the loss and gradients of
    /// encoding every row.
    #[test]
    fn shared_question_encoding_matches_row_by_row() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let model = EdgeVlmConfig::tiny(30).with_answers(4).init(&device);
        let images = Tensor::<4>::random([5, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
        let question = EncodedBatch {
            ids: vec![2, 7, 9, 3, 2, 8, 3, 0, 2, 7, 9, 3, 2, 7, 9, 3, 2, 8, 3, 0],
            mask: vec![1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0],
            batch: 5,
            seq_len: 4,
        };
        let answers = [0i64, 1, 2, 0, 3];
        // Each loss gets its own forward pass: a graph can be walked backwards once.
        let shared = vqa_loss(&model, model.encode_image(images.clone()), &question, &answers);
        let text = text_input(&question.ids, &question.mask, 5, 4, &device);
        let logits = model.vqa_logits_from(model.encode_image(images), text.ids, text.mask);
        let direct = weighted_cross_entropy(logits, &answers, &[1.0; 5]);
        let (a, b) = (
            shared.clone().into_scalar::<f32>(),
            direct.clone().into_scalar::<f32>(),
        );
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        let grad = |loss: Tensor<1>| {
            let grads = loss.backward();
            let w = model.text.word_embeddings.weight.val();
            w.grad(&grads)
                .expect("word embeddings get a gradient")
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        let (ga, gb) = (grad(shared), grad(direct));
        let worst = ga
            .iter()
            .zip(&gb)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(
            ga.iter().any(|v| *v != 0.0) && worst < 1e-6,
            "max gradient difference {worst}"
        );
    }
}

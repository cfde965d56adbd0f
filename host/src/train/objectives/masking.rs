//! What is hidden and predicted back: masked tokens (MLM, over the fusion or over
//! the grid cells) and masked image patches (MIM).

use burn::tensor::{Int, Tensor, TensorData};
use edgevlm_shared::rng::SplitMix64;
use edgevlm_shared::tokenizer::SpecialIds;

use super::*;
use crate::model::attention::padding_bias;
use crate::model::spatial::SpatialVqa;
use crate::model::vlm::mean_over_tokens;
use crate::model::EdgeVlm;

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
/// masked positions (weight > 0). Every position goes through the output layer,
/// as the synthetic pretraining always did: picking the masked rows first would be
/// cheaper with a 30k-word tower vocabulary, but changes the float sums, and a
/// small model's fixed-budget run then lands elsewhere (tests/quality_floor.rs).
pub fn mlm_loss(model: &EdgeVlm, fused: Tensor<3>, targets: &[i64], weights: &[f32]) -> Tensor<1> {
    let logits = model.mlm.forward(fused, model.text.word_embeddings.weight.val());
    sequence_cross_entropy(logits, targets, weights)
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

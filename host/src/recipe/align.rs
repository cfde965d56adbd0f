//! Alignment of the frozen towers (ALBEF's recipe on cached features): ITC over the
//! whole batch, ITM on a sub-batch with hard negatives drawn from the ITC
//! similarities, and MLM of the fusion conditioned on the image, the masked captions
//! re-encoded by the text tower on the fly.

use burn::tensor::{Device, Int, Tensor, TensorData};
use edgevlm_shared::rng::SplitMix64;

use super::cache::{ImageFeatures, TextFeatures};
use super::towers::Towers;
use crate::model::photo::PhotoVlm;
use crate::train::objectives::{hard_negative, mask_tokens, weighted_cross_entropy};
use crate::train::trainer::Losses;

/// Training pairs: images and the caption indices of each.
pub struct Pairs<'a> {
    pub images: &'a ImageFeatures,
    pub texts: &'a TextFeatures,
    /// For each image, its captions' indices into `texts`.
    pub captions: &'a [Vec<usize>],
}

/// How many pairs of a batch each objective sees.
#[derive(Debug, Clone, Copy)]
pub struct AlignSizes {
    pub itm: usize,
    pub mlm: usize,
    pub itc_weight: f32,
    pub itm_weight: f32,
    pub mlm_weight: f32,
}

fn tensor2(values: Vec<f32>, shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn tensor3(values: Vec<f32>, shape: [usize; 3], device: &Device) -> Tensor<3> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn select(indices: &[usize], device: &Device) -> Tensor<1, Int> {
    let n = indices.len();
    Tensor::from_data(
        TensorData::new(indices.iter().map(|&i| i as i64).collect::<Vec<_>>(), [n]),
        device,
    )
}

/// One alignment step over the images `batch` (one random caption of each).
pub fn step(
    model: &PhotoVlm,
    towers: &Towers,
    pairs: &Pairs,
    batch: &[usize],
    sizes: AlignSizes,
    rng: &mut SplitMix64,
    device: &Device,
) -> Losses {
    let n = batch.len();
    let texts: Vec<usize> = batch
        .iter()
        .map(|&i| {
            let own = &pairs.captions[i];
            own[rng.below(own.len() as u64) as usize]
        })
        .collect();
    let d_text = pairs.texts.header.width;

    // ITC: symmetric InfoNCE over the batch.
    let img = model.image_embedding(pairs.images.pooled_tensor(batch, device));
    let txt = model.text_embedding(tensor2(pairs.texts.sentences(&texts), [n, d_text], device));
    let sims = img.matmul(txt.transpose());
    let logits = sims.clone() * model.itc_scale().unsqueeze_dim(0);
    let diagonal: Vec<i64> = (0..n as i64).collect();
    let ones = vec![1.0; n];
    let itc = (weighted_cross_entropy(logits.clone(), &diagonal, &ones)
        + weighted_cross_entropy(logits.transpose(), &diagonal, &ones))
    .div_scalar(2.0);
    let mut total = itc.clone().mul_scalar(sizes.itc_weight);
    let mut parts = vec![("itc_loss", itc)];

    let m = sizes.itm.max(sizes.mlm).min(n);
    if m == 0 {
        parts.insert(0, ("loss", total.clone()));
        return Losses { total, parts };
    }
    let sub = &batch[..m];
    let image_tokens = model.image_tokens(pairs.images.token_tensor(sub, device));

    if sizes.itm > 0 && sizes.itm_weight > 0.0 {
        let k = sizes.itm.min(m);
        let sims: Vec<f32> = sims
            .slice([0..k, 0..k])
            .detach()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        // Two captions of one image are not negatives of each other's image.
        let same = |a: usize, b: usize| batch[a] == batch[b];
        let (mut image_idx, mut text_idx, mut labels) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..k {
            image_idx.push(i);
            text_idx.push(i);
            labels.push(1i64);
        }
        for t in 0..k {
            let column: Vec<f32> = (0..k).map(|i| sims[i * k + t]).collect();
            if let Some(i) = hard_negative(&column, t, |j| !same(j, t), rng) {
                image_idx.push(i);
                text_idx.push(t);
                labels.push(0);
            }
        }
        for i in 0..k {
            if let Some(t) = hard_negative(&sims[i * k..(i + 1) * k], i, |j| !same(i, j), rng) {
                image_idx.push(i);
                text_idx.push(t);
                labels.push(0);
            }
        }
        let chosen: Vec<usize> = text_idx.iter().map(|&t| texts[t]).collect();
        let (states, mask, len) = pairs.texts.states(&chosen);
        let rows = chosen.len();
        let images = image_tokens.clone().select(0, select(&image_idx, device));
        let logits = model.itm.forward(model.fused_cls(
            tensor3(states, [rows, len, d_text], device),
            tensor2(mask, [rows, len], device),
            images,
        ));
        let itm = weighted_cross_entropy(logits, &labels, &vec![1.0; rows]);
        total = total + itm.clone().mul_scalar(sizes.itm_weight);
        parts.push(("itm_loss", itm));
    }

    if sizes.mlm > 0 && sizes.mlm_weight > 0.0 {
        let k = sizes.mlm.min(m);
        let rows: Vec<Vec<u32>> = texts[..k].iter().map(|&t| pairs.texts.ids(t).to_vec()).collect();
        let tokenizer = &towers.text.tokenizer;
        let enc = tokenizer.pad(&rows, None);
        let vocab = towers.text.config.vocab_size;
        let (corrupted, targets, weights) =
            mask_tokens(&enc.ids, &enc.mask, tokenizer.special_ids(), vocab, rng);
        let positions: Vec<usize> = (0..weights.len()).filter(|&p| weights[p] > 0.0).collect();
        if !positions.is_empty() {
            let (states, mask, _) = towers.encode_ids(&corrupted, &enc.mask, k, enc.seq_len, device);
            let fused = model
                .fusion
                .forward(states.detach(), mask, image_tokens.narrow(0, 0, k));
            // Only the masked positions go through the 30k-word output layer.
            let flat = fused
                .reshape([k * enc.seq_len, d_text])
                .select(0, select(&positions, device));
            let picked = flat.reshape([1, positions.len(), d_text]);
            let words = towers.text.model.word_embeddings.weight.val();
            let logits = model.mlm.forward(picked, words).reshape([positions.len(), vocab]);
            let targets: Vec<i64> = positions.iter().map(|&p| targets[p]).collect();
            let mlm = weighted_cross_entropy(logits, &targets, &vec![1.0; positions.len()]);
            total = total + mlm.clone().mul_scalar(sizes.mlm_weight);
            parts.push(("mlm_loss", mlm));
        }
    }
    parts.insert(0, ("loss", total.clone()));
    Losses { total, parts }
}

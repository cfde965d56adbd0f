//! Alignment of the frozen towers (ALBEF's recipe on cached features): ITC over the
//! whole batch, ITM on a sub-batch with hard negatives drawn from the ITC
//! similarities, and MLM of the fusion conditioned on the image, the masked captions
//! re-encoded by the text tower on the fly. The objectives are the synthetic
//! pretraining's ([`crate::train::objectives`]); only the batches differ.

use burn::tensor::{Device, Tensor, TensorData};
use edgevlm_shared::rng::SplitMix64;
use edgevlm_shared::TextTokenizer;

use crate::features::cache::{ImageFeatures, TextFeatures};
use crate::model::EdgeVlm;
use crate::train::objectives::{
    itc_loss, itm_loss, itm_pairs, mask_tokens, masked_language_model, text_input, ItmPairs,
};
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

/// One alignment step over the images `batch` (one random caption of each).
pub fn step(
    model: &EdgeVlm,
    tokenizer: &TextTokenizer,
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
    let (itc, sims) = itc_loss(
        model.itc.embed_image(pairs.images.pooled_tensor(batch, device)),
        model
            .itc
            .embed_text(tensor2(pairs.texts.sentences(&texts), [n, d_text], device)),
        model.itc.scale(),
    );
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
        // ITM on the first k pairs, negatives drawn from their block of similarities.
        let k = sizes.itm.min(m);
        let block: Vec<f32> = (0..k).flat_map(|i| sims[i * n..i * n + k].to_vec()).collect();
        // Two captions of one image are not negatives of each other's image.
        let same = |a: usize, b: usize| batch[a] == batch[b];
        let chosen = itm_pairs(&block, k, &same, 0.0, rng);
        let captions: Vec<usize> = chosen.texts.iter().map(|&t| texts[t]).collect();
        let (states, mask, len) = pairs.texts.states(&captions);
        let count = captions.len();
        // The text rows are already in pair order.
        let in_order = ItmPairs {
            texts: (0..count).collect(),
            ..chosen
        };
        let itm = itm_loss(
            model,
            &in_order,
            image_tokens.clone(),
            tensor3(states, [count, len, d_text], device),
            tensor2(mask, [count, len], device),
        );
        total = total + itm.clone().mul_scalar(sizes.itm_weight);
        parts.push(("itm_loss", itm));
    }

    if sizes.mlm > 0 && sizes.mlm_weight > 0.0 {
        // The masked captions are re-encoded by the (locked) text tower.
        let k = sizes.mlm.min(m);
        let ids: Vec<Vec<u32>> = texts[..k].iter().map(|&t| pairs.texts.ids(t).to_vec()).collect();
        let enc = tokenizer.pad(&ids, None);
        let vocab = model.text.word_embeddings.weight.val().dims()[0];
        let (corrupted, targets, weights) =
            mask_tokens(&enc.ids, &enc.mask, tokenizer.special_ids(), vocab, rng);
        if weights.iter().any(|&w| w > 0.0) {
            let corrupted = text_input(&corrupted, &enc.mask, k, enc.seq_len, device);
            let mlm =
                masked_language_model(model, image_tokens.narrow(0, 0, k), corrupted, &targets, &weights);
            total = total + mlm.clone().mul_scalar(sizes.mlm_weight);
            parts.push(("mlm_loss", mlm));
        }
    }
    parts.insert(0, ("loss", total.clone()));
    Losses { total, parts }
}

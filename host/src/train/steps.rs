//! One training step per task: batch → losses.

use burn::tensor::{Device, Tensor};
use edgevlm_shared::rng::SplitMix64;
use edgevlm_shared::tokenizer::SpecialIds;
use edgevlm_shared::EncodedBatch;

use super::config::TrainConfig;
use super::objectives::{self, text_input};
use super::tasks::TextImageBatch;
use super::trainer::Losses;
use crate::model::EdgeVlm;

/// ITC + ITM + MLM + masked image features, weighted; a weight of 0 skips the part.
pub fn pretrain(
    model: &EdgeVlm,
    batch: &TextImageBatch,
    rng: &mut SplitMix64,
    cfg: &TrainConfig,
    special: SpecialIds,
    device: &Device,
) -> Losses {
    let (b, l) = (batch.batch, batch.len);
    let images = batch.images(device);
    let text = text_input(&batch.ids, &batch.mask, b, l, device);
    let image_tokens = model.encode_image(images.clone());
    let text_states = model.encode_text(text.ids.clone(), text.mask.clone());
    let mut parts: Vec<(&'static str, Tensor<1>)> = Vec::new();
    let mut total = Tensor::<1>::zeros([1], device);

    if cfg.itc_weight > 0.0 || cfg.itm_weight > 0.0 {
        let (itc, sims) = objectives::contrastive(model, image_tokens.clone(), text_states.clone());
        if cfg.itc_weight > 0.0 {
            total = total + itc.clone().mul_scalar(cfg.itc_weight);
            parts.push(("itc_loss", itc));
        }
        if cfg.itm_weight > 0.0 {
            let same = |i: usize, j: usize| {
                batch.image_index[i] == batch.image_index[j] || batch.labels[i] == batch.labels[j]
            };
            let itm = objectives::matching(
                model,
                image_tokens.clone(),
                text_states.clone(),
                text.mask.clone(),
                &sims,
                &same,
                rng,
            );
            total = total + itm.clone().mul_scalar(cfg.itm_weight);
            parts.push(("itm_loss", itm));
        }
    }
    if cfg.mlm_weight > 0.0 {
        let vocab = model.text.word_embeddings.weight.val().dims()[0];
        let (corrupted, targets, weights) =
            objectives::mask_tokens(&batch.ids, &batch.mask, special, vocab, rng);
        let corrupted = text_input(&corrupted, &batch.mask, b, l, device);
        let mlm = objectives::masked_language_model(model, image_tokens, corrupted, &targets, &weights);
        total = total + mlm.clone().mul_scalar(cfg.mlm_weight);
        parts.push(("mlm_loss", mlm));
    }
    if let (Some(grid), Some(head)) = (&model.grid, &model.spatial_mlm) {
        if cfg.spatial_mlm_weight > 0.0 {
            let hidden = objectives::hide_one_token(
                &batch.ids,
                &batch.mask,
                l,
                special,
                cfg.spatial_mlm_variants,
                rng,
            );
            if !hidden.targets.is_empty() {
                let cells = head.cells(grid.forward(images.clone()));
                let loss = objectives::spatial_masked_language_model(model, head, cells, &hidden);
                total = total + loss.clone().mul_scalar(cfg.spatial_mlm_weight);
                parts.push(("spatial_mlm_loss", loss));
            }
        }
    }
    if cfg.mim_weight > 0.0 {
        let mim =
            objectives::masked_image_features(model, images, text_states, text.mask, cfg.mim_ratio, rng);
        total = total + mim.clone().mul_scalar(cfg.mim_weight);
        parts.push(("mim_loss", mim));
    }
    parts.insert(0, ("loss", total.clone()));
    Losses { total, parts }
}

pub fn vqa(model: &EdgeVlm, batch: &TextImageBatch, device: &Device) -> Losses {
    let question = EncodedBatch {
        ids: batch.ids.clone(),
        mask: batch.mask.clone(),
        batch: batch.batch,
        seq_len: batch.len,
    };
    let image_tokens = batch.per_row(model.encode_vqa_image(batch.images(device)));
    let loss = objectives::vqa_loss(model, image_tokens, &question, &batch.labels);
    Losses {
        total: loss.clone(),
        parts: vec![("loss", loss)],
    }
}

pub fn caption(model: &EdgeVlm, batch: &TextImageBatch, device: &Device) -> Losses {
    let loss = objectives::caption_loss(
        model,
        batch.images(device),
        &batch.ids,
        &batch.mask,
        batch.batch,
        batch.len,
    );
    Losses {
        total: loss.clone(),
        parts: vec![("loss", loss)],
    }
}

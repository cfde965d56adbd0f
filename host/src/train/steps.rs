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
    let tower_tokens = model.tower_tokens(images.clone());
    let image_tokens = model.image_tokens(tower_tokens.clone());
    let text_states = model.encode_text(text.ids.clone(), text.mask.clone());
    let mut parts: Vec<(&'static str, Tensor<1>)> = Vec::new();
    let mut total = Tensor::<1>::zeros([1], device);

    if cfg.itc_weight > 0.0 || cfg.itm_weight > 0.0 {
        let (itc, sims) =
            objectives::contrastive(model, tower_tokens, text_states.clone(), text.mask.clone());
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
                cfg.itm_random_negatives,
                rng,
            );
            total = total + itm.clone().mul_scalar(cfg.itm_weight);
            parts.push(("itm_loss", itm));
        }
    }
    if cfg.mlm_weight > 0.0 {
        let vocab = model.text.word_embeddings.weight.val().dims()[0];
        let (ids, mask, len) = mlm_texts(batch, cfg.question_mlm, special.pad, rng);
        let (corrupted, targets, weights) = objectives::mask_tokens(&ids, &mask, special, vocab, rng);
        let corrupted = text_input(&corrupted, &mask, b, len, device);
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
    if cfg.mim_weight > 0.0 && model.mim.is_some() && model.vision.vit().is_some() {
        let mim =
            objectives::masked_image_features(model, images, text_states, text.mask, cfg.mim_ratio, rng);
        total = total + mim.clone().mul_scalar(cfg.mim_weight);
        parts.push(("mim_loss", mim));
    }
    parts.insert(0, ("loss", total.clone()));
    Losses { total, parts }
}

/// The texts MLM reads, `(ids, mask, len)`: each row's caption, or with probability
/// `question_share` one of the questions asked about its image (when the batch has them).
fn mlm_texts(
    batch: &TextImageBatch,
    question_share: f64,
    pad: u32,
    rng: &mut SplitMix64,
) -> (Vec<u32>, Vec<u32>, usize) {
    if question_share <= 0.0 || batch.image_questions.is_empty() {
        return (batch.ids.clone(), batch.mask.clone(), batch.len);
    }
    let l = batch.len;
    let rows: Vec<&[u32]> = (0..batch.batch)
        .map(|r| {
            let caption = &batch.ids[r * l..r * l + l];
            let caption = &caption[..batch.mask[r * l..r * l + l].iter().filter(|&&m| m == 1).count()];
            let questions = &batch.image_questions[batch.row_image[r]];
            if questions.is_empty() || rng.unit() >= question_share {
                caption
            } else {
                questions[rng.below(questions.len() as u64) as usize].as_slice()
            }
        })
        .collect();
    let padded = edgevlm_shared::tokenizer::pad_rows(&rows, pad, None);
    (padded.ids, padded.mask, padded.seq_len)
}

/// VQA, plus `focus_weight` times the focus loss where the batch says where the
/// answers' objects lie and `count_weight` times the counting read-out's loss
/// where its questions state counts ([`objectives::vqa_losses`]).
pub fn vqa(
    model: &EdgeVlm,
    batch: &TextImageBatch,
    (focus_weight, count_weight): (f32, f32),
    device: &Device,
) -> Losses {
    let question = EncodedBatch {
        ids: batch.ids.clone(),
        mask: batch.mask.clone(),
        batch: batch.batch,
        seq_len: batch.len,
    };
    let image_tokens = batch.per_row(model.encode_vqa_image(batch.images(device)));
    let wanted = |weight: f32| weight > 0.0;
    let focus = if wanted(focus_weight) {
        batch.focus.as_slice()
    } else {
        &[]
    };
    let counts = if wanted(count_weight) {
        batch.counts.as_slice()
    } else {
        &[]
    };
    let losses = objectives::vqa_losses(model, image_tokens, &question, &batch.labels, focus, counts);
    weighted_parts(
        losses.answer,
        [
            ("focus", losses.focus, focus_weight),
            ("count", losses.count, count_weight),
        ],
    )
}

/// The answers' loss plus each part the batch gave, times its weight.
pub fn weighted_parts<const N: usize>(
    answer: Tensor<1>,
    parts: [(&'static str, Option<Tensor<1>>, f32); N],
) -> Losses {
    let mut losses = Losses {
        total: answer.clone(),
        parts: vec![("loss", answer)],
    };
    for (name, part, weight) in parts {
        if let Some(part) = part {
            losses.total = losses.total + part.clone().mul_scalar(weight);
            losses.parts.push((name, part));
        }
    }
    losses
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Two images, one caption row each (the second padded); questions per image.
    fn batch() -> TextImageBatch {
        TextImageBatch {
            images: Vec::new(),
            image_size: 0,
            image_index: vec![10, 11],
            ids: vec![2, 5, 6, 3, 2, 7, 3, 0],
            mask: vec![1, 1, 1, 1, 1, 1, 1, 0],
            batch: 2,
            len: 4,
            row_image: vec![0, 1],
            labels: vec![0, 1],
            image_questions: vec![
                vec![vec![2, 20, 21, 22, 23, 3]],
                vec![vec![2, 30, 3], vec![2, 31, 32, 3]],
            ],
            focus: Vec::new(),
            counts: Vec::new(),
        }
    }

    fn rows(ids: &[u32], mask: &[u32], len: usize) -> Vec<Vec<u32>> {
        ids.chunks(len)
            .zip(mask.chunks(len))
            .map(|(ids, mask)| {
                ids.iter()
                    .zip(mask)
                    .filter(|(_, &m)| m == 1)
                    .map(|(&t, _)| t)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn mlm_reads_the_caption_or_a_question_about_the_same_image() {
        let batch = batch();
        let mut rng = SplitMix64::new(1);
        let captions = mlm_texts(&batch, 0.0, 0, &mut rng);
        assert_eq!(captions, (batch.ids.clone(), batch.mask.clone(), 4));
        assert_eq!(
            rng.next_u64(),
            SplitMix64::new(1).next_u64(),
            "captions only draw nothing"
        );

        let (ids, mask, len) = mlm_texts(&batch, 1.0, 0, &mut rng);
        assert_eq!(len, 6, "padded to the longest question");
        let read = rows(&ids, &mask, len);
        assert_eq!(read[0], batch.image_questions[0][0]);
        assert!(batch.image_questions[1].contains(&read[1]), "{:?}", read[1]);
        assert_eq!(ids.len(), 2 * len);

        // About half the rows read questions at a share of one half.
        let (mut questions, draws) = (0, 1000);
        for _ in 0..draws {
            let (ids, mask, len) = mlm_texts(&batch, 0.5, 0, &mut rng);
            questions += rows(&ids, &mask, len)
                .iter()
                .filter(|row| batch.image_questions.iter().flatten().any(|q| q == *row))
                .count();
        }
        let share = questions as f64 / (2 * draws) as f64;
        assert!((0.45..0.55).contains(&share), "{share}");
    }
}

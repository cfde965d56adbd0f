//! The fine-tuning tasks' losses: VQA answers and captions.

use burn::tensor::{Int, Tensor, TensorData};
use edgevlm_shared::EncodedBatch;

use super::*;
use crate::model::EdgeVlm;

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
    caption_loss_from(model, model.encode_image(images), ids, mask, batch, len)
}

/// [`caption_loss`] over a memory the decoder reads (an image's tokens, a clip's).
pub fn caption_loss_from(
    model: &EdgeVlm,
    image: Tensor<3>,
    ids: &[u32],
    mask: &[u32],
    batch: usize,
    len: usize,
) -> Tensor<1> {
    let device = image.device();
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
    let logits = model.decoder.forward(inputs, image);
    sequence_cross_entropy(logits, &targets, &weights)
}

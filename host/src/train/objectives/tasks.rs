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
    vqa_losses(model, image_tokens, question, answers, &[]).0
}

/// [`vqa_loss`], and with a spatial head, for the rows that say where the object
/// their answer is about lies (`focus`, fractions of the side, one per row or
/// none), the cross-entropy of the head's focus over the grid's cells against
/// that object's cell: the head learns to read the answer where the object is.
pub fn vqa_losses(
    model: &EdgeVlm,
    image_tokens: Tensor<3>,
    question: &EncodedBatch,
    answers: &[i64],
    focus: &[Option<[f32; 2]>],
) -> (Tensor<1>, Option<Tensor<1>>) {
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
    let (logits, weights) = model.answer_logits_with_focus(image_tokens, states, mask);
    let answer = weighted_cross_entropy(logits, answers, &vec![1.0; answers.len()]);
    let grid = model.spatial_vqa.as_ref().map(|head| head.grid());
    let targets: Vec<(i64, i64)> = match grid {
        Some(grid) => focus
            .iter()
            .enumerate()
            .filter_map(|(row, f)| f.map(|at| (row as i64, focus_cell(at, grid) as i64)))
            .collect(),
        None => Vec::new(),
    };
    let focus = match (weights, targets.is_empty()) {
        (Some(weights), false) => {
            let n = targets.len();
            let (rows, cells): (Vec<i64>, Vec<i64>) = targets.into_iter().unzip();
            let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [n]), &device);
            let cells = Tensor::<2, Int>::from_data(TensorData::new(cells, [n, 1]), &device);
            let picked = weights.select(0, rows).gather(1, cells);
            Some(picked.clamp_min(1e-9).log().mean().neg())
        }
        _ => None,
    };
    (answer, focus)
}

/// The row-major index of the grid cell that holds a point given as fractions of
/// the side.
pub fn focus_cell([x, y]: [f32; 2], grid: usize) -> usize {
    let at = |v: f32| ((v * grid as f32).floor().max(0.0) as usize).min(grid - 1);
    at(y) * grid + at(x)
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

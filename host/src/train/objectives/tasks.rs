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
    vqa_losses(model, image_tokens, question, answers, &[], &[]).answer
}

/// What [`vqa_losses`] gives: the answers' loss, and the losses of the parts that
/// learn from more than the answer's class where the batch has what they need.
pub struct VqaLosses {
    pub answer: Tensor<1>,
    pub focus: Option<Tensor<1>>,
    pub count: Option<Tensor<1>>,
}

/// [`vqa_loss`], and
/// - with a spatial head, for the rows that say where the object their answer is
///   about lies (`focus`, fractions of the side, one per row or none), the
///   cross-entropy of the head's focus over the grid's cells against that
///   object's cell: the head learns to read the answer where the object is;
/// - with a counting read-out, for the rows whose question and answer state a
///   count (`counts`, one per row or none), its loss ([`count_loss`]).
pub fn vqa_losses(
    model: &EdgeVlm,
    image_tokens: Tensor<3>,
    question: &EncodedBatch,
    answers: &[i64],
    focus: &[Option<[f32; 2]>],
    counts: &[Option<usize>],
) -> VqaLosses {
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
    let count = match counts.is_empty() {
        true => None,
        false => count_loss(model, image_tokens.clone(), states.clone(), mask.clone(), counts),
    };
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
    VqaLosses { answer, focus, count }
}

/// The counting read-out's soft count against the number each row's answer gives
/// (`None`: a row not answered by a number), Huber with a margin of one (a count
/// one off costs as a square, further off linearly, so a crowd's large count does
/// not swamp the batch), averaged over the rows that have one; `None` without a
/// read-out or without such rows.
pub fn count_loss(
    model: &EdgeVlm,
    image_tokens: Tensor<3>,
    question: Tensor<3>,
    mask: Tensor<2>,
    counts: &[Option<usize>],
) -> Option<Tensor<1>> {
    let readout = model.vqa.as_ref()?.count.as_ref()?;
    let rows: Vec<i64> = (0..counts.len())
        .filter(|&r| counts[r].is_some())
        .map(|r| r as i64)
        .collect();
    if rows.is_empty() {
        return None;
    }
    let device = image_tokens.device();
    let n = rows.len();
    let target: Vec<f32> = counts.iter().flatten().map(|&c| c as f32).collect();
    let target = Tensor::<2>::from_data(TensorData::new(target, [n, 1]), &device);
    let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [n]), &device);
    let question = crate::model::vlm::mean_over_tokens(question, mask).select(0, rows.clone());
    let count = readout.count(image_tokens.select(0, rows), question);
    let off = (count - target).abs();
    let near = off.clone().clamp_max(1.0);
    Some((near.clone() * near.clone() * 0.5 + (off - near)).mean())
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

//! Batched inference with a saved model: answers, captions and ITC embeddings.
//! Used by `edgevlm eval`, `caption`, `ask` and `match`.

use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};

use crate::data::store::ImageStore;
use crate::model::saved::SavedModel;
use crate::model::DecodeOptions;
use crate::train::objectives::text_input;

const BATCH: usize = 64;

fn images(store: &ImageStore, indices: &[usize], device: &Device) -> Tensor<4> {
    let s = store.config().image_size as usize;
    Tensor::from_data(
        TensorData::new(store.batch(indices), [indices.len(), 3, s, s]),
        device,
    )
}

fn rows(t: Tensor<2>) -> Vec<Vec<f32>> {
    let [_, width] = t.dims();
    let flat = t.into_data().try_to_vec::<f32>().unwrap_or_default();
    flat.chunks(width.max(1)).map(<[f32]>::to_vec).collect()
}

/// The most likely answer and its probability for each (image index, question).
/// Each distinct image of a chunk is encoded once for all its questions.
pub fn answers(
    saved: &SavedModel,
    store: &ImageStore,
    questions: &[(usize, String)],
    device: &Device,
) -> crate::train::Result<Vec<(String, f32)>> {
    let model = saved.model.valid();
    let mut out = Vec::with_capacity(questions.len());
    for chunk in questions.chunks(4 * BATCH) {
        let mut distinct: Vec<usize> = chunk.iter().map(|q| q.0).collect();
        distinct.sort_unstable();
        distinct.dedup();
        let row_image: Vec<i64> = chunk
            .iter()
            .map(|q| distinct.binary_search(&q.0).unwrap_or(0) as i64)
            .collect();
        let texts: Vec<&str> = chunk.iter().map(|q| q.1.as_str()).collect();
        let enc = saved.tokenizer.encode_batch(&texts)?;
        let text = text_input(&enc.ids, &enc.mask, enc.batch, enc.seq_len, device);
        let encoded = model.encode_image(images(store, &distinct, device));
        let rows_index =
            Tensor::<1, burn::tensor::Int>::from_data(TensorData::new(row_image, [chunk.len()]), device);
        let probs = softmax(
            model.vqa_logits_from(encoded.select(0, rows_index), text.ids, text.mask),
            1,
        );
        for row in rows(probs) {
            let (best, p) = row
                .iter()
                .enumerate()
                .fold((0, f32::MIN), |acc, (i, &p)| if p > acc.1 { (i, p) } else { acc });
            out.push((saved.answers.get(best).cloned().unwrap_or_default(), p));
        }
    }
    Ok(out)
}

/// A caption for each image index.
pub fn captions(
    saved: &SavedModel,
    store: &ImageStore,
    indices: &[usize],
    opts: DecodeOptions,
    device: &Device,
) -> crate::train::Result<Vec<String>> {
    let model = saved.model.valid();
    let special = saved.tokenizer.special_ids();
    let mut out = Vec::with_capacity(indices.len());
    for chunk in indices.chunks(BATCH) {
        let image = model.encode_image(images(store, chunk, device));
        for ids in model.decoder.generate(image, special.cls, special.sep, opts) {
            out.push(saved.tokenizer.decode(&ids)?);
        }
    }
    Ok(out)
}

/// Unit-length ITC embeddings of images.
pub fn image_embeddings(
    saved: &SavedModel,
    store: &ImageStore,
    indices: &[usize],
    device: &Device,
) -> Vec<Vec<f32>> {
    let model = saved.model.valid();
    indices
        .chunks(BATCH)
        .flat_map(|chunk| rows(model.image_embedding(model.encode_image(images(store, chunk, device)))))
        .collect()
}

/// Unit-length ITC embeddings of texts.
pub fn text_embeddings(
    saved: &SavedModel,
    texts: &[String],
    device: &Device,
) -> crate::train::Result<Vec<Vec<f32>>> {
    let model = saved.model.valid();
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(BATCH) {
        let enc = saved.tokenizer.encode_batch(chunk)?;
        let text = text_input(&enc.ids, &enc.mask, enc.batch, enc.seq_len, device);
        out.extend(rows(model.text_embedding(model.encode_text(text.ids, text.mask))));
    }
    Ok(out)
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

//! Batched inference with a saved model: answers, captions and ITC embeddings.
//! Used by `edgevlm eval`, `caption`, `ask` and `match`. [`Predictor`] lets the
//! evaluation run either the burn model or an exported bundle through the device
//! runtime (to measure what quantization costs).

use std::borrow::Borrow;

use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};

use crate::data::store::ImageStore;
use crate::model::input::text_input;
use crate::model::saved::SavedModel;
use crate::model::DecodeOptions;
use edgevlm_shared::caption::Consensus;

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
) -> crate::error::Result<Vec<(String, f32)>> {
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
        let encoded = model.encode_vqa_image(images(store, &distinct, device));
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
) -> crate::error::Result<Vec<String>> {
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
) -> crate::error::Result<Vec<Vec<f32>>> {
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

/// What the evaluation needs from a model, whichever engine runs it.
pub trait Predictor {
    fn preprocess(&self) -> &edgevlm_shared::PreprocessConfig;
    fn has_vqa(&self) -> bool;
    /// Most likely answer and its probability for each (image index, question).
    fn answers(
        &self,
        store: &ImageStore,
        questions: &[(usize, String)],
    ) -> crate::error::Result<Vec<(String, f32)>>;
    fn captions(
        &self,
        store: &ImageStore,
        indices: &[usize],
        opts: DecodeOptions,
    ) -> crate::error::Result<Vec<String>>;
    fn image_embeddings(&self, store: &ImageStore, indices: &[usize]) -> crate::error::Result<Vec<Vec<f32>>>;
    fn text_embeddings(&self, texts: &[String]) -> crate::error::Result<Vec<Vec<f32>>>;
    /// The beam search the model folder asks for, when it says.
    fn decoding(&self) -> Option<DecodeOptions> {
        None
    }
    /// The consensus reranking [`captions`](Self::captions) applies after the beam.
    fn consensus(&self) -> Option<Consensus> {
        None
    }
    /// Turns consensus reranking on (with these settings) or off. Only models with a
    /// caption memory can rerank.
    fn set_consensus(&mut self, consensus: Option<Consensus>) -> crate::error::Result<()> {
        match consensus {
            None => Ok(()),
            Some(_) => Err(crate::error::Error::Invalid(
                "consensus reranking needs a caption memory (memory.bin), which only \
                 `edgevlm train --recipe flickr8k` model folders have"
                    .into(),
            )),
        }
    }
}

/// The trained burn model.
pub struct BurnPredictor<S: Borrow<SavedModel>> {
    /// The model folder's contents, owned or borrowed.
    pub saved: S,
    pub device: Device,
}

impl<S: Borrow<SavedModel>> Predictor for BurnPredictor<S> {
    fn preprocess(&self) -> &edgevlm_shared::PreprocessConfig {
        &self.saved.borrow().preprocess
    }
    fn has_vqa(&self) -> bool {
        !self.saved.borrow().answers.is_empty()
    }
    fn answers(
        &self,
        store: &ImageStore,
        questions: &[(usize, String)],
    ) -> crate::error::Result<Vec<(String, f32)>> {
        answers(self.saved.borrow(), store, questions, &self.device)
    }
    fn captions(
        &self,
        store: &ImageStore,
        indices: &[usize],
        opts: DecodeOptions,
    ) -> crate::error::Result<Vec<String>> {
        captions(self.saved.borrow(), store, indices, opts, &self.device)
    }
    fn image_embeddings(&self, store: &ImageStore, indices: &[usize]) -> crate::error::Result<Vec<Vec<f32>>> {
        Ok(image_embeddings(
            self.saved.borrow(),
            store,
            indices,
            &self.device,
        ))
    }
    fn text_embeddings(&self, texts: &[String]) -> crate::error::Result<Vec<Vec<f32>>> {
        text_embeddings(self.saved.borrow(), texts, &self.device)
    }
}

/// An exported bundle, run by the device runtime (tract), one image at a time.
pub struct BundlePredictor {
    pub runtime: edgevlm_device::runtime::Runtime,
    /// Reranking applied after the beam: the bundle's own unless changed.
    consensus: Option<Consensus>,
}

fn runtime_err(e: edgevlm_device::runtime::RuntimeError) -> crate::error::Error {
    crate::error::Error::Invalid(e.to_string())
}

impl BundlePredictor {
    pub fn new(runtime: edgevlm_device::runtime::Runtime) -> Self {
        let consensus = runtime.decoding().consensus.filter(|_| runtime.memory.is_some());
        Self { runtime, consensus }
    }

    fn encode(
        &self,
        store: &ImageStore,
        index: usize,
    ) -> crate::error::Result<edgevlm_device::runtime::EncodedImage> {
        self.runtime
            .encode_pixels(&store.batch(&[index]))
            .map_err(runtime_err)
    }
}

impl Predictor for BundlePredictor {
    fn preprocess(&self) -> &edgevlm_shared::PreprocessConfig {
        &self.runtime.manifest.preprocess
    }
    fn has_vqa(&self) -> bool {
        !self.runtime.manifest.answers.is_empty()
    }
    fn answers(
        &self,
        store: &ImageStore,
        questions: &[(usize, String)],
    ) -> crate::error::Result<Vec<(String, f32)>> {
        let mut out = Vec::with_capacity(questions.len());
        let mut current: Option<(usize, edgevlm_device::runtime::EncodedImage)> = None;
        for (image, question) in questions {
            if current.as_ref().map(|c| c.0) != Some(*image) {
                current = Some((*image, self.encode(store, *image)?));
            }
            let encoded = &current.as_ref().expect("just set").1;
            let a = self.runtime.answer(encoded, question).map_err(runtime_err)?;
            out.push((a.answer, a.probability));
        }
        Ok(out)
    }
    fn captions(
        &self,
        store: &ImageStore,
        indices: &[usize],
        opts: DecodeOptions,
    ) -> crate::error::Result<Vec<String>> {
        indices
            .iter()
            .map(|&i| {
                let encoded = self.encode(store, i)?;
                self.runtime
                    .caption_reranked(&encoded, opts, self.consensus)
                    .map_err(runtime_err)
            })
            .collect()
    }
    fn image_embeddings(&self, store: &ImageStore, indices: &[usize]) -> crate::error::Result<Vec<Vec<f32>>> {
        indices
            .iter()
            .map(|&i| Ok(self.encode(store, i)?.embedding))
            .collect()
    }
    fn decoding(&self) -> Option<DecodeOptions> {
        self.runtime
            .manifest
            .decoding
            .map(|d| d.search(self.runtime.manifest.decoder.max_len))
    }
    fn consensus(&self) -> Option<Consensus> {
        self.consensus
    }
    fn set_consensus(&mut self, consensus: Option<Consensus>) -> crate::error::Result<()> {
        if consensus.is_some() && self.runtime.memory.is_none() {
            return Err(crate::error::Error::Invalid(
                "consensus reranking needs a caption memory, which this bundle lacks".into(),
            ));
        }
        self.consensus = consensus;
        Ok(())
    }
    fn text_embeddings(&self, texts: &[String]) -> crate::error::Result<Vec<Vec<f32>>> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let mut out = Vec::with_capacity(texts.len());
        for chunk in refs.chunks(BATCH) {
            out.extend(self.runtime.embed_texts(chunk).map_err(runtime_err)?);
        }
        Ok(out)
    }
}

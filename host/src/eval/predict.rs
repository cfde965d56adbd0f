//! Batched inference with a saved model: answers, captions and ITC embeddings.
//! Used by `edgevlm eval`, `caption`, `ask` and `match`. [`Predictor`] lets the
//! evaluation run either the burn model or an exported bundle through the device
//! runtime (to measure what quantization costs).

use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

pub use super::bundle_predictor::BundlePredictor;
pub use super::burn_predictor::BurnPredictor;
use crate::data::store::ImageStore;
use crate::error::{Error, Result};
use crate::model::consensus;
use crate::model::input::{text_input, TextInput};
use crate::model::saved::SavedModel;
use crate::model::weights::floats;
use crate::model::DecodeOptions;
use edgevlm_shared::caption::Consensus;

/// Images (or texts) per forward pass: an EfficientNet tower's activations at
/// 224 px take about 10 MB per image.
pub(crate) const BATCH: usize = 32;

fn images(store: &ImageStore, indices: &[usize], device: &Device) -> Tensor<4> {
    let s = store.config().image_size as usize;
    Tensor::from_data(
        TensorData::new(store.batch(indices), [indices.len(), 3, s, s]),
        device,
    )
}

fn rows(t: Tensor<2>) -> Result<Vec<Vec<f32>>> {
    let [_, width] = t.dims();
    Ok(floats(t.into_data())?
        .chunks(width.max(1))
        .map(<[f32]>::to_vec)
        .collect())
}

/// One chunk of (image index, text) pairs as the model takes it: the distinct
/// images once each, the row among them that each pair reads, its text tokenized.
struct PairChunk {
    images: Tensor<4>,
    rows: Tensor<1, burn::tensor::Int>,
    text: TextInput,
}

/// `pairs` in chunks of [`BATCH`]·4, each image decoded once per chunk.
fn pair_chunks<'a>(
    saved: &'a SavedModel,
    store: &'a ImageStore,
    pairs: &'a [(usize, String)],
    device: &'a Device,
) -> impl Iterator<Item = Result<PairChunk>> + 'a {
    pairs.chunks(4 * BATCH).map(move |chunk| {
        let mut distinct: Vec<usize> = chunk.iter().map(|q| q.0).collect();
        distinct.sort_unstable();
        distinct.dedup();
        let row_image: Vec<i64> = chunk
            .iter()
            .map(|q| distinct.binary_search(&q.0).unwrap_or(0) as i64)
            .collect();
        let texts: Vec<&str> = chunk.iter().map(|q| q.1.as_str()).collect();
        let enc = saved.meta.tokenizer.encode_batch(&texts)?;
        Ok(PairChunk {
            images: images(store, &distinct, device),
            rows: Tensor::from_data(TensorData::new(row_image, [chunk.len()]), device),
            text: text_input(&enc.ids, &enc.mask, enc.batch, enc.seq_len, device),
        })
    })
}

/// Per question, a distribution: over the answers, or over a grid's cells.
pub type Rows = Vec<Vec<f32>>;

/// The answer distribution for each (image index, question), in the order of the
/// model's answers, and for a spatial head where it looked for each answer: its
/// weights over the grid's cells, row-major. Each distinct image of a chunk is
/// encoded once for all its questions.
pub fn answers_with_focus(
    saved: &SavedModel,
    store: &ImageStore,
    questions: &[(usize, String)],
    device: &Device,
) -> Result<(Rows, Option<Rows>)> {
    let model = saved.model.valid();
    let mut probabilities = Vec::with_capacity(questions.len());
    let mut focus: Option<Rows> = None;
    for chunk in pair_chunks(saved, store, questions, device) {
        let PairChunk {
            images,
            rows: at,
            text,
        } = chunk?;
        let encoded = model.encode_vqa_image(images).select(0, at);
        let states = model.encode_text(text.ids, text.mask.clone());
        let (logits, weights) = model.answer_logits_with_focus(encoded, states, text.mask);
        probabilities.extend(rows(softmax(logits, 1))?);
        if let Some(weights) = weights {
            focus.get_or_insert_with(Vec::new).extend(rows(weights)?);
        }
    }
    Ok((probabilities, focus))
}

/// The ITM head's probability that each (image index, text) pair matches. Each
/// distinct image of a chunk is encoded once.
pub fn match_probabilities(
    saved: &SavedModel,
    store: &ImageStore,
    pairs: &[(usize, String)],
    device: &Device,
) -> Result<Vec<f32>> {
    let model = saved.model.valid();
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pair_chunks(saved, store, pairs, device) {
        let PairChunk {
            images,
            rows: at,
            text,
        } = chunk?;
        let states = model.encode_text(text.ids, text.mask.clone());
        let encoded = model.encode_image(images).select(0, at);
        out.extend(floats(
            model.match_probability(states, text.mask, encoded).into_data(),
        )?);
    }
    Ok(out)
}

/// The most likely answer of a distribution over `answers`, with its probability.
pub fn best_answer(probabilities: &[f32], answers: &[String]) -> (String, f32) {
    let (best, p) = probabilities
        .iter()
        .enumerate()
        .fold((0, f32::MIN), |acc, (i, &p)| if p > acc.1 { (i, p) } else { acc });
    (answers.get(best).cloned().unwrap_or_default(), p)
}

/// A caption for each image index: the beam's best, or the candidate the caption
/// memory prefers when `consensus` is on.
pub fn captions(
    saved: &SavedModel,
    store: &ImageStore,
    indices: &[usize],
    opts: DecodeOptions,
    consensus: Option<Consensus>,
    device: &Device,
) -> Result<Vec<String>> {
    let model = saved.model.valid();
    let tokenizer = saved.meta.caption_tokenizer();
    let special = tokenizer.special_ids();
    let mut out = Vec::with_capacity(indices.len());
    for chunk in indices.chunks(BATCH) {
        let tower = model.tower_tokens(images(store, chunk, device));
        if let (Some(memory), Some(settings)) = (&saved.memory, consensus) {
            let reranked = consensus::captions(&model, tower, tokenizer, opts, memory, settings)?;
            out.extend(reranked.chosen);
            continue;
        }
        let image = model.image_tokens(tower);
        for ids in model.decoder.generate(image, special.cls, special.sep, opts) {
            out.push(tokenizer.decode(&ids)?);
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
) -> Result<Vec<Vec<f32>>> {
    let model = saved.model.valid();
    let mut out = Vec::with_capacity(indices.len());
    for chunk in indices.chunks(BATCH) {
        out.extend(rows(
            model.image_embedding(model.tower_tokens(images(store, chunk, device))),
        )?);
    }
    Ok(out)
}

/// Unit-length ITC embeddings of texts.
pub fn text_embeddings(saved: &SavedModel, texts: &[String], device: &Device) -> Result<Vec<Vec<f32>>> {
    let model = saved.model.valid();
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(BATCH) {
        let enc = saved.meta.tokenizer.encode_batch(chunk)?;
        let text = text_input(&enc.ids, &enc.mask, enc.batch, enc.seq_len, device);
        let states = model.encode_text(text.ids, text.mask.clone());
        out.extend(rows(model.text_embedding(states, text.mask))?);
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
    /// The answer distribution for each (image index, question), in the order of
    /// [`answer_names`](Self::answer_names), and where the answer head looked for
    /// each: its weights over the grid's cells, row-major; `None` for a head that
    /// has no such focus (the fused one). One pass gives both.
    fn answers_with_focus(
        &self,
        store: &ImageStore,
        questions: &[(usize, String)],
    ) -> Result<(Rows, Option<Rows>)>;
    /// [`answers_with_focus`](Self::answers_with_focus)'s distributions.
    fn answer_probabilities(&self, store: &ImageStore, questions: &[(usize, String)]) -> Result<Rows> {
        Ok(self.answers_with_focus(store, questions)?.0)
    }
    fn answer_names(&self) -> &[String];
    /// Most likely answer and its probability for each (image index, question).
    fn answers(&self, store: &ImageStore, questions: &[(usize, String)]) -> Result<Vec<(String, f32)>> {
        Ok(self
            .answer_probabilities(store, questions)?
            .iter()
            .map(|p| best_answer(p, self.answer_names()))
            .collect())
    }
    fn captions(&self, store: &ImageStore, indices: &[usize], opts: DecodeOptions) -> Result<Vec<String>>;
    fn image_embeddings(&self, store: &ImageStore, indices: &[usize]) -> Result<Vec<Vec<f32>>>;
    /// Per image, the log-probabilities of `ids[1..]` (a caption's ids from `[CLS]`)
    /// read with teacher forcing: how sure the decoder is of each token.
    fn token_log_probs(&self, store: &ImageStore, indices: &[usize], ids: &[u32]) -> Result<Vec<Vec<f32>>>;
    /// The tokenizer of the caption decoder.
    fn caption_tokenizer(&self) -> &edgevlm_shared::TextTokenizer;
    /// Frames a clip is read as, for a model that captions clips.
    fn clip_frames(&self) -> Option<usize> {
        None
    }
    /// A caption for each clip, given as the store indices of its frames in order
    /// ([`clip_frames`](Self::clip_frames) of them).
    fn clip_captions(
        &self,
        _store: &ImageStore,
        _clips: &[Vec<usize>],
        _opts: DecodeOptions,
    ) -> Result<Vec<String>> {
        Err(no_clip_model())
    }
    fn text_embeddings(&self, texts: &[String]) -> Result<Vec<Vec<f32>>>;
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
    fn set_consensus(&mut self, consensus: Option<Consensus>) -> Result<()> {
        match consensus {
            None => Ok(()),
            Some(_) => Err(Error::Invalid(
                "consensus reranking needs a caption memory (caption_memory.bin), which only \
                 `edgevlm train --recipe flickr8k` model folders have"
                    .into(),
            )),
        }
    }
}

pub(crate) fn no_clip_model() -> Error {
    Error::Invalid(
        "this model captions single images, not clips: fine-tune it with `edgevlm finetune clip-caption`"
            .into(),
    )
}

/// A caption for each clip (the store indices of its frames, in order).
pub fn clip_captions(
    saved: &SavedModel,
    store: &ImageStore,
    clips: &[Vec<usize>],
    opts: DecodeOptions,
    device: &Device,
) -> Result<Vec<String>> {
    let model = saved.model.valid();
    let frames = model.temporal.as_ref().ok_or_else(no_clip_model)?.frames();
    if let Some(clip) = clips.iter().find(|c| c.len() != frames) {
        return Err(Error::Invalid(format!(
            "a clip of {} frames; this model reads {frames}",
            clip.len()
        )));
    }
    let tokenizer = saved.meta.caption_tokenizer();
    let special = tokenizer.special_ids();
    let mut out = Vec::with_capacity(clips.len());
    // A batch of whole clips holds about as many frames as a batch of images.
    for chunk in clips.chunks((BATCH / frames).max(1)) {
        let indices: Vec<usize> = chunk.iter().flatten().copied().collect();
        let memory = model.encode_clip(images(store, &indices, device));
        for ids in model.decoder.generate(memory, special.cls, special.sep, opts) {
            out.push(tokenizer.decode(&ids)?);
        }
    }
    Ok(out)
}

/// Per image, the log-probabilities of `ids[1..]` under teacher forcing (at most
/// the decoder's `max_len` ids are read).
pub fn token_log_probs(
    saved: &SavedModel,
    store: &ImageStore,
    indices: &[usize],
    ids: &[u32],
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    let model = saved.model.valid();
    let ids = &ids[..ids.len().min(model.decoder.max_len())];
    let len = ids.len();
    if len < 2 {
        return Ok(vec![Vec::new(); indices.len()]);
    }
    let mut out = Vec::with_capacity(indices.len());
    for chunk in indices.chunks(BATCH) {
        let n = chunk.len();
        let image = model.encode_image(images(store, chunk, device));
        let repeated: Vec<i64> = (0..n).flat_map(|_| ids.iter().map(|&t| t as i64)).collect();
        let input = Tensor::<2, Int>::from_data(TensorData::new(repeated, [n, len]), device);
        let log_probs = burn::tensor::activation::log_softmax(model.decoder.forward(input, image), 2);
        let targets: Vec<i64> = (0..n).flat_map(|_| ids[1..].iter().map(|&t| t as i64)).collect();
        let targets = Tensor::<3, Int>::from_data(TensorData::new(targets, [n, len - 1, 1]), device);
        let picked = log_probs
            .narrow(1, 0, len - 1)
            .gather(2, targets)
            .reshape([n, len - 1]);
        out.extend(rows(picked)?);
    }
    Ok(out)
}

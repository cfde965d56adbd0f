//! The text tower: the ITC embedding of texts. A runtime builds it on first use and
//! can let it go; [`TextTower`] loads it alone, so that a text trigger's phrases are
//! embedded before the captioning graphs are built and the two never share memory.

use std::borrow::Cow;

use edgevlm_shared::bundle::{io, Bundle, TEXT_TOKENIZER_FILE};
use edgevlm_shared::TextTokenizer;
use tract_onnx::prelude::*;

use super::{
    load_tokenizer, output, plan, run, shape_error, to_vec, EncodedImage, Plan, Result, Runtime, RuntimeError,
};

/// The runtime's hold on its text tower.
pub(super) enum TextEncoder {
    /// The graph's bytes, built into a plan on first use.
    Graph(Vec<u8>),
    Plan(Plan),
    /// Released, or never loaded (a runtime loaded for the loop alone).
    Released,
}

/// Token ids and mask tensors `[n, len]` for texts.
pub(super) fn text_inputs(
    tokenizer: &TextTokenizer,
    texts: &[&str],
    graph: &str,
) -> Result<(Tensor, Tensor)> {
    let batch = tokenizer.encode_batch(texts)?;
    let ids: Vec<i64> = batch.ids.iter().map(|&v| v as i64).collect();
    let mask: Vec<f32> = batch.mask.iter().map(|&v| v as f32).collect();
    let shape = [batch.batch, batch.seq_len];
    Ok((
        Tensor::from_shape(&shape, &ids).map_err(|e| shape_error(graph, e))?,
        Tensor::from_shape(&shape, &mask).map_err(|e| shape_error(graph, e))?,
    ))
}

/// Unit-length ITC embeddings of texts, one per text.
fn embed(plan: &Plan, tokenizer: &TextTokenizer, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
    let graph = io::TEXT_ENCODER;
    let (ids, mask) = text_inputs(tokenizer, texts, graph)?;
    let out = run(plan, graph, tvec!(ids.into(), mask.into()))?;
    let flat = to_vec(output(&out, 0, graph)?, graph)?;
    let d = flat.len() / texts.len().max(1);
    Ok(flat.chunks(d.max(1)).map(<[f32]>::to_vec).collect())
}

/// A bundle's text tower and its tokenizer, nothing else.
pub struct TextTower {
    tokenizer: TextTokenizer,
    plan: Plan,
}

impl TextTower {
    /// The bundle files it reads.
    pub fn files() -> [String; 2] {
        [TEXT_TOKENIZER_FILE.to_string(), io::graph_file(io::TEXT_ENCODER)]
    }

    /// Keeps the tokenizer and the text graph of a bundle and drops the rest of it
    /// before the graph is built.
    pub fn from_owned(mut bundle: Bundle) -> Result<Self> {
        let tokenizer = load_tokenizer(&bundle, TEXT_TOKENIZER_FILE, bundle.manifest.max_text_len)?;
        let origin = bundle.origin().to_string();
        let graph = bundle.take_file(&io::graph_file(io::TEXT_ENCODER))?;
        drop(bundle);
        Ok(Self {
            tokenizer,
            plan: plan(&origin, io::TEXT_ENCODER, Cow::Owned(graph), None)?,
        })
    }

    /// Unit-length ITC embeddings of texts.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        embed(&self.plan, &self.tokenizer, texts)
    }
}

impl Runtime {
    /// The text encoder, built now if this is its first use.
    fn text_plan(&self) -> Result<Plan> {
        let mut slot = self
            .text_encoder
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let built = match std::mem::replace(&mut *slot, TextEncoder::Released) {
            TextEncoder::Plan(p) => p,
            TextEncoder::Graph(bytes) => plan(&self.origin, io::TEXT_ENCODER, Cow::Owned(bytes), None)?,
            TextEncoder::Released => {
                return Err(RuntimeError::Run {
                    graph: io::TEXT_ENCODER.into(),
                    reason: "the text encoder was released to save memory (or never loaded)".into(),
                })
            }
        };
        *slot = TextEncoder::Plan(built.clone());
        Ok(built)
    }

    /// Gives a runtime loaded without its text tower the one `tower` holds (loaded
    /// alone from the same bundle), to answer questions with.
    pub fn use_text_tower(&self, tower: &TextTower) {
        *self
            .text_encoder
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = TextEncoder::Plan(tower.plan.clone());
    }

    /// The text tower's token states `[n, len, d_text]` for token ids and mask.
    pub(super) fn text_states(&self, ids: Tensor, mask: Tensor) -> Result<Tensor> {
        let graph = io::TEXT_ENCODER;
        let out = run(&self.text_plan()?, graph, tvec!(ids.into(), mask.into()))?;
        Ok(output(&out, 1, graph)?.clone().into_tensor())
    }

    /// Frees the text encoder for good (a loop that embedded its phrases at start).
    pub fn release_text_encoder(&self) {
        *self
            .text_encoder
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = TextEncoder::Released;
    }

    /// Unit-length ITC embeddings of texts.
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        embed(&self.text_plan()?, &self.tokenizer, texts)
    }

    /// Cosine similarity of the image to each text (ITC).
    pub fn match_texts(&self, image: &EncodedImage, texts: &[&str]) -> Result<Vec<f32>> {
        Ok(self
            .embed_texts(texts)?
            .iter()
            .map(|t| t.iter().zip(&image.embedding).map(|(a, b)| a * b).sum())
            .collect())
    }
}

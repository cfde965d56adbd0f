//! Consensus reranking during the recipe, on cached tower features: the dev
//! split's reranked captions, and the caption memory the model folder carries
//! (every training caption's ITC embedding). The reranking itself is the model's
//! ([`crate::model::consensus`]), shared with `eval` and the board.

use burn::tensor::{Tensor, TensorData};
use edgevlm_shared::TextTokenizer;

use crate::error::{Error, Result};
use crate::features::cache;
use crate::model::consensus::{self, CaptionMemory, Consensus, Reranked};
use crate::model::weights::floats;
use crate::model::{DecodeOptions, EdgeVlm};

/// [`consensus::captions`] of cached images, 100 at a time.
pub fn cached_captions(
    model: &EdgeVlm,
    images: &cache::ImageFeatures,
    tokenizer: &TextTokenizer,
    search: DecodeOptions,
    memory: &CaptionMemory,
    settings: Consensus,
    device: &burn::tensor::Device,
) -> Result<Reranked> {
    let all: Vec<usize> = (0..images.len()).collect();
    let mut out = Reranked {
        beam: Vec::new(),
        chosen: Vec::new(),
    };
    for chunk in all.chunks(100) {
        let tower_tokens = images.token_tensor(chunk, device);
        let part = consensus::captions(model, tower_tokens, tokenizer, search, memory, settings)?;
        out.beam.extend(part.beam);
        out.chosen.extend(part.chosen);
    }
    Ok(out)
}

/// The caption memory of a trained model: every training caption's ITC embedding.
pub fn build_memory(
    model: &EdgeVlm,
    captions: Vec<Vec<String>>,
    sentences: &cache::TextFeatures,
    device: &burn::tensor::Device,
) -> Result<CaptionMemory> {
    let width = sentences.header.width;
    let mut embeddings = Vec::new();
    let all: Vec<usize> = (0..sentences.len()).collect();
    for chunk in all.chunks(1024) {
        let emb = model.itc.embed_text(Tensor::from_data(
            TensorData::new(sentences.sentences(chunk), [chunk.len(), width]),
            device,
        ));
        embeddings.extend(floats(emb.into_data())?);
    }
    let embed_width = embeddings.len() / sentences.len().max(1);
    CaptionMemory::new(captions, embeddings, embed_width).map_err(|e| Error::Invalid(e.to_string()))
}

//! Consensus reranking of beam candidates (after Devlin et al. 2015, "Exploring
//! Nearest Neighbor Approaches for Image Captioning"): the beam search proposes many
//! captions, the ITC space retrieves the training captions closest to the photo, and
//! the candidate that agrees best with them (CIDEr-D) wins, with the decoder's own
//! score as a tie-breaker. The decoder alone ranks fluent, generic captions first;
//! agreement with what people wrote about similar photos prefers the specific ones.
//!
//! The training captions and their ITC embeddings travel with the model as its
//! caption memory (`memory.bin`), so a photo never seen in training is reranked the
//! same way as the dev split. The memory and the choice itself live in
//! `edgevlm_shared::caption`, so the board reranks exactly as the host does; this
//! file runs the burn model and reads and writes the folder's files.

use std::path::Path;

use burn::tensor::{Tensor, TensorData};
pub use edgevlm_shared::caption::{CaptionMemory, Consensus, Decoding, MemoryStorage};
use edgevlm_shared::TextTokenizer;

use super::cache;
use super::towers;
use crate::error::{Error, Result};
use crate::model::photo::PhotoVlm;
use crate::model::DecodeOptions;

/// File name of the caption memory inside a model folder.
pub const MEMORY_FILE: &str = "memory.bin";

/// File name of a model folder's decoding settings.
pub const DECODING_FILE: &str = "decoding.json";

pub fn save_decoding(decoding: &Decoding, dir: &Path) -> Result<()> {
    let path = dir.join(DECODING_FILE);
    std::fs::write(&path, serde_json::to_string_pretty(decoding).expect("plain data"))
        .map_err(|e| Error::io(&path, e))
}

/// The folder's settings, or `None` when it has no decoding file.
pub fn load_decoding(dir: &Path) -> Result<Option<Decoding>> {
    let path = dir.join(DECODING_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_slice(&text).map(Some).map_err(|e| {
        Error::record(
            &path,
            format!("expected beam_size, length_penalty, consensus: {e}"),
        )
    })
}

/// Writes the memory as the board reads it (bf16 rows).
pub fn save_memory(memory: &CaptionMemory, path: &Path) -> Result<()> {
    std::fs::write(path, memory.to_bytes(MemoryStorage::Bf16)).map_err(|e| Error::io(path, e))
}

/// Reads a folder's memory; one written before the memory had its own format (a
/// feature-cache file of bf16 rows) is read too.
pub fn load_memory(path: &Path) -> Result<CaptionMemory> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.starts_with(cache::MAGIC) {
        return load_cache_memory(path);
    }
    CaptionMemory::from_bytes(&bytes, &path.display().to_string()).map_err(|e| Error::Invalid(e.to_string()))
}

#[derive(serde::Deserialize)]
struct CacheMemoryHeader {
    captions: Vec<Vec<String>>,
    width: usize,
}

fn load_cache_memory(path: &Path) -> Result<CaptionMemory> {
    let (header, body): (CacheMemoryHeader, _) = cache::read_file(path)?;
    let captions = header.captions.iter().map(Vec::len).sum::<usize>();
    let expected = captions * header.width * 2;
    if body.len() != expected {
        return Err(Error::record(
            path,
            format!(
                "expected {expected} bytes of embeddings for {captions} captions, found {}",
                body.len()
            ),
        ));
    }
    let embeddings = cache::u16s(&body).into_iter().map(cache::from_bf16).collect();
    CaptionMemory::new(header.captions, embeddings, header.width)
        .map_err(|e| Error::record(path, e.to_string()))
}

/// The beam's own best captions and the reranked ones, image by image.
pub struct Reranked {
    pub beam: Vec<String>,
    pub chosen: Vec<String>,
}

/// Beam captions of images, reranked against `memory`.
///
/// # Shapes
/// - tokens: the decoder's image tokens `[images, n, d_model]`
/// - pooled: pooled tower features `[images, d_image_features]`
pub fn captions(
    model: &PhotoVlm,
    tokens: Tensor<3>,
    pooled: Tensor<2>,
    tokenizer: &TextTokenizer,
    search: DecodeOptions,
    memory: &CaptionMemory,
    consensus: Consensus,
) -> Result<Reranked> {
    let images = tokens.dims()[0];
    let embeddings = towers::floats(model.image_embedding(pooled).into_data())?;
    let width = (embeddings.len() / images.max(1)).max(1);
    let special = tokenizer.special_ids();
    let found = model.decoder.candidates(tokens, special.cls, special.sep, search);
    let mut out = Reranked {
        beam: Vec::with_capacity(images),
        chosen: Vec::with_capacity(images),
    };
    for (image, found) in embeddings.chunks(width).zip(found) {
        let texts = found
            .into_iter()
            .map(|c| Ok((tokenizer.decode(&c.tokens)?, c.score)))
            .collect::<Result<Vec<_>>>()?;
        let best = memory.choose(image, &texts, consensus);
        out.beam
            .push(texts.first().map(|t| t.0.clone()).unwrap_or_default());
        out.chosen
            .push(texts.into_iter().nth(best).map(|t| t.0).unwrap_or_default());
    }
    Ok(out)
}

/// [`captions`] of cached images, 100 at a time.
pub fn cached_captions(
    model: &PhotoVlm,
    images: &cache::ImageFeatures,
    tokenizer: &TextTokenizer,
    search: DecodeOptions,
    memory: &CaptionMemory,
    consensus: Consensus,
    device: &burn::tensor::Device,
) -> Result<Reranked> {
    let all: Vec<usize> = (0..images.len()).collect();
    let mut out = Reranked {
        beam: Vec::new(),
        chosen: Vec::new(),
    };
    for chunk in all.chunks(100) {
        let image = model.image_tokens(images.token_tensor(chunk, device));
        let pooled = images.pooled_tensor(chunk, device);
        let part = captions(model, image, pooled, tokenizer, search, memory, consensus)?;
        out.beam.extend(part.beam);
        out.chosen.extend(part.chosen);
    }
    Ok(out)
}

/// The caption memory of a trained model: every training caption's ITC embedding.
pub fn build_memory(
    model: &PhotoVlm,
    captions: Vec<Vec<String>>,
    sentences: &cache::TextFeatures,
    device: &burn::tensor::Device,
) -> Result<CaptionMemory> {
    let width = sentences.header.width;
    let mut embeddings = Vec::new();
    let all: Vec<usize> = (0..sentences.len()).collect();
    for chunk in all.chunks(1024) {
        let emb = model.text_embedding(Tensor::from_data(
            TensorData::new(sentences.sentences(chunk), [chunk.len(), width]),
            device,
        ));
        embeddings.extend(towers::floats(emb.into_data())?);
    }
    let embed_width = embeddings.len() / sentences.len().max(1);
    CaptionMemory::new(captions, embeddings, embed_width).map_err(|e| Error::Invalid(e.to_string()))
}

//! Consensus reranking of beam candidates (after Devlin et al. 2015, "Exploring
//! Nearest Neighbor Approaches for Image Captioning"): the beam search proposes many
//! captions, the ITC space retrieves the training captions closest to the photo, and
//! the candidate that agrees best with them (CIDEr-D) wins, with the decoder's own
//! score as a tie-breaker. The decoder alone ranks fluent, generic captions first;
//! agreement with what people wrote about similar photos prefers the specific ones.
//!
//! The memory and the choice itself live in `edgevlm_shared::caption`, so the board
//! reranks exactly as the host does; this file runs the burn model.

use burn::tensor::Tensor;
pub use edgevlm_shared::caption::{CaptionMemory, Consensus, Decoding, MemoryStorage};
use edgevlm_shared::TextTokenizer;

use super::weights::floats;
use super::{DecodeOptions, EdgeVlm};
use crate::error::Result;

/// The beam's own best captions and the reranked ones, image by image.
pub struct Reranked {
    pub beam: Vec<String>,
    pub chosen: Vec<String>,
}

/// Beam captions of images, reranked against `memory`.
///
/// # Shapes
/// - tower_tokens: the image tower's tokens `[images, n, d_tower]`
pub fn captions(
    model: &EdgeVlm,
    tower_tokens: Tensor<3>,
    tokenizer: &TextTokenizer,
    search: DecodeOptions,
    memory: &CaptionMemory,
    consensus: Consensus,
) -> Result<Reranked> {
    let images = tower_tokens.dims()[0];
    let embeddings = floats(model.image_embedding(tower_tokens.clone()).into_data())?;
    let width = (embeddings.len() / images.max(1)).max(1);
    let special = tokenizer.special_ids();
    let tokens = model.image_tokens(tower_tokens);
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

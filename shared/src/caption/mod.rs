//! How captions are chosen, the same on the workstation and on the board: the
//! decoding settings a model ships with, and consensus reranking of beam
//! candidates against a caption memory (after Devlin et al. 2015, "Exploring
//! Nearest Neighbor Approaches for Image Captioning").
//!
//! The beam search proposes many captions, the ITC space retrieves the training
//! captions closest to the photo, and the candidate that agrees best with them
//! (CIDEr-D, document frequencies from the training captions) wins, with the
//! decoder's own score as a tie-breaker. The decoder alone ranks fluent, generic
//! captions first; agreement with what people wrote about similar photos prefers
//! the specific ones.

mod memory;

pub use memory::{from_bf16, to_bf16, CaptionMemory, MemoryError, MemoryStorage};

use serde::{Deserialize, Serialize};

use crate::search::DecodeOptions;

/// Reranking settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Consensus {
    /// Training captions retrieved per photo (the pseudo-references).
    pub neighbours: usize,
    /// Weight of the beam score (length-normalised log-probability) next to the
    /// CIDEr-D agreement.
    pub weight: f32,
}

impl Default for Consensus {
    /// Chosen on Flickr8k dev with beam 15, on two training runs (docs/results-flickr8k.md).
    fn default() -> Self {
        Self {
            neighbours: 30,
            weight: 0.075,
        }
    }
}

/// How a model asks to be decoded when the user says nothing else: the settings
/// its recipe measured as best on held-out data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Decoding {
    pub beam_size: usize,
    pub length_penalty: f32,
    /// Reranking against the caption memory; `None` keeps the beam's best.
    pub consensus: Option<Consensus>,
}

impl Default for Decoding {
    /// Beam 15 gives the reranker about 36 candidates per photo on Flickr8k dev.
    fn default() -> Self {
        Self {
            beam_size: 15,
            length_penalty: DecodeOptions::default().length_penalty,
            consensus: Some(Consensus::default()),
        }
    }
}

impl Decoding {
    /// Greedy search, no reranking.
    pub fn greedy() -> Self {
        Self {
            beam_size: 1,
            length_penalty: DecodeOptions::default().length_penalty,
            consensus: None,
        }
    }

    /// Refuses settings no recipe writes (a bundle's or a folder's are outside input).
    pub fn validate(&self) -> Result<(), String> {
        let range = |field: &str, value: usize, max: usize| {
            if (1..=max).contains(&value) {
                Ok(())
            } else {
                Err(format!("`{field}` is {value}, expected 1..={max}"))
            }
        };
        range(
            "decoding.beam_size",
            self.beam_size,
            crate::bundle::limits::MAX_BEAM,
        )?;
        if !self.length_penalty.is_finite() {
            return Err(format!(
                "`decoding.length_penalty` is {}, expected a finite number",
                self.length_penalty
            ));
        }
        if let Some(c) = &self.consensus {
            range(
                "decoding.consensus.neighbours",
                c.neighbours,
                crate::bundle::limits::MAX_NEIGHBOURS,
            )?;
            if !c.weight.is_finite() {
                return Err(format!(
                    "`decoding.consensus.weight` is {}, expected a finite number",
                    c.weight
                ));
            }
        }
        Ok(())
    }

    pub fn search(&self, max_len: usize) -> DecodeOptions {
        DecodeOptions {
            beam_size: self.beam_size.max(1),
            length_penalty: self.length_penalty,
            max_len,
        }
    }
}

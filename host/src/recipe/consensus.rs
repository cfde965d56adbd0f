//! Consensus reranking of beam candidates (after Devlin et al. 2015, "Exploring
//! Nearest Neighbor Approaches for Image Captioning"): the beam search proposes many
//! captions, the ITC space retrieves the training captions closest to the photo, and
//! the candidate that agrees best with them (CIDEr-D) wins, with the decoder's own
//! score as a tie-breaker. The decoder alone ranks fluent, generic captions first;
//! agreement with what people wrote about similar photos prefers the specific ones.
//!
//! The training captions and their ITC embeddings travel with the model as its
//! caption memory (`memory.bin`), so a photo never seen in training is reranked the
//! same way as the dev split.

use std::path::Path;

use burn::tensor::{Tensor, TensorData};
use edgevlm_shared::TextTokenizer;
use serde::{Deserialize, Serialize};

use super::cache::{self, from_bf16, to_bf16};
use super::towers;
use crate::eval::metrics::CiderReward;
use crate::model::photo::PhotoVlm;
use crate::model::DecodeOptions;
use crate::train::error::{Result, TrainError};

/// File name of the caption memory inside a model folder.
pub const MEMORY_FILE: &str = "memory.bin";

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
    /// Chosen on Flickr8k dev with beam 15, on two training runs (see the README's table).
    fn default() -> Self {
        Self {
            neighbours: 30,
            weight: 0.075,
        }
    }
}

/// File name of a model folder's decoding settings.
pub const DECODING_FILE: &str = "decoding.json";

/// How a model folder asks to be decoded when the command line says nothing else:
/// the settings its recipe measured as best on dev.
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
    pub fn search(&self, max_len: usize) -> DecodeOptions {
        DecodeOptions {
            beam_size: self.beam_size.max(1),
            length_penalty: self.length_penalty,
            max_len,
        }
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(DECODING_FILE);
        std::fs::write(&path, serde_json::to_string_pretty(self).expect("plain data"))
            .map_err(|e| TrainError::io(&path, e))
    }

    /// The folder's settings, or `None` when it has no decoding file.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(DECODING_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read(&path).map_err(|e| TrainError::io(&path, e))?;
        serde_json::from_slice(&text).map(Some).map_err(|e| {
            TrainError::record(
                &path,
                format!("expected beam_size, length_penalty, consensus: {e}"),
            )
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct MemoryHeader {
    /// Each training image's captions; the embeddings follow their flat order.
    captions: Vec<Vec<String>>,
    width: usize,
}

/// The training captions, grouped by image, and their unit ITC embeddings.
pub struct CaptionMemory {
    header: MemoryHeader,
    /// `[captions, width]`, row-major.
    embeddings: Vec<f32>,
    flat: Vec<String>,
    /// CIDEr-D with document frequencies from the training captions.
    reward: CiderReward,
}

impl CaptionMemory {
    /// `embeddings` holds one row of `width` per caption, in the flat order of `captions`.
    pub fn new(captions: Vec<Vec<String>>, embeddings: Vec<f32>, width: usize) -> Result<Self> {
        let flat: Vec<String> = captions.iter().flatten().cloned().collect();
        if flat.is_empty() || width == 0 || embeddings.len() != flat.len() * width {
            return Err(TrainError::Invalid(format!(
                "caption memory: {} embedding values for {} captions of width {width}",
                embeddings.len(),
                flat.len()
            )));
        }
        let reward =
            CiderReward::new(&captions).map_err(|e| TrainError::Invalid(format!("caption memory: {e}")))?;
        Ok(Self {
            header: MemoryHeader { captions, width },
            embeddings,
            flat,
            reward,
        })
    }

    pub fn len(&self) -> usize {
        self.flat.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flat.is_empty()
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let values: Vec<u16> = self.embeddings.iter().map(|&v| to_bf16(v)).collect();
        cache::write_file(path, &self.header, &values, &[])
    }

    pub fn load(path: &Path) -> Result<Self> {
        let (header, body): (MemoryHeader, _) = cache::read_file(path)?;
        let captions = header.captions.iter().map(Vec::len).sum::<usize>();
        let expected = captions * header.width * 2;
        if body.len() != expected {
            return Err(TrainError::record(
                path,
                format!(
                    "expected {expected} bytes of embeddings for {captions} captions, found {}",
                    body.len()
                ),
            ));
        }
        let embeddings = cache::u16s(&body).into_iter().map(from_bf16).collect();
        Self::new(header.captions, embeddings, header.width)
            .map_err(|e| TrainError::record(path, e.to_string()))
    }

    /// The `k` captions whose embeddings are closest (dot product) to `image`.
    pub fn nearest(&self, image: &[f32], k: usize) -> Vec<&str> {
        let width = self.header.width;
        let mut scored: Vec<(usize, f32)> = self
            .embeddings
            .chunks_exact(width)
            .map(|row| row.iter().zip(image).map(|(a, b)| a * b).sum::<f32>())
            .enumerate()
            .collect();
        let k = k.min(scored.len());
        if k == 0 {
            return Vec::new();
        }
        scored.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
        scored.truncate(k);
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.iter().map(|&(i, _)| self.flat[i].as_str()).collect()
    }

    /// Index of the candidate (caption, beam score) that agrees best with the
    /// captions retrieved for `image`.
    pub fn choose(&self, image: &[f32], candidates: &[(String, f32)], consensus: Consensus) -> usize {
        let references = self.nearest(image, consensus.neighbours);
        let value = |(caption, score): &(String, f32)| {
            self.reward.score_against(caption, &references) + consensus.weight as f64 * *score as f64
        };
        candidates
            .iter()
            .enumerate()
            .map(|(i, c)| (i, value(c)))
            // The first of equals: the beam's own order breaks ties.
            .fold(None, |best: Option<(usize, f64)>, (i, v)| match best {
                Some((_, b)) if b >= v => best,
                _ => Some((i, v)),
            })
            .map_or(0, |(i, _)| i)
    }
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
    CaptionMemory::new(captions, embeddings, embed_width)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> CaptionMemory {
        let captions = vec![
            vec![
                "a dog runs on the grass .".to_string(),
                "a brown dog on grass".to_string(),
            ],
            vec!["a man rides a bike .".to_string()],
            vec!["children play in the water .".to_string()],
        ];
        // Unit rows along axes: caption i is closest to the image [e_i].
        let embeddings = vec![
            1.0, 0.0, 0.0, 0.0, //
            0.9, 0.1, 0.0, 0.0, //
            0.0, 1.0, 0.0, 0.0, //
            0.0, 0.0, 1.0, 0.0,
        ];
        CaptionMemory::new(captions, embeddings, 4).unwrap()
    }

    #[test]
    fn nearest_captions_come_in_order_of_similarity() {
        let m = memory();
        assert_eq!(m.nearest(&[0.0, 1.0, 0.0, 0.0], 1), vec!["a man rides a bike ."]);
        assert_eq!(
            m.nearest(&[1.0, 0.0, 0.0, 0.0], 2),
            vec!["a dog runs on the grass .", "a brown dog on grass"]
        );
        assert_eq!(m.nearest(&[1.0, 0.0, 0.0, 0.0], 10).len(), 4);
    }

    #[test]
    fn the_candidate_that_agrees_with_the_neighbours_wins_unless_the_beam_score_outweighs_it() {
        let m = memory();
        let candidates = vec![
            ("a man is standing outside .".to_string(), -3.0),
            ("a brown dog runs on the grass .".to_string(), -5.0),
        ];
        let dog = [1.0, 0.0, 0.0, 0.0];
        let agree = Consensus {
            neighbours: 2,
            weight: 0.0,
        };
        assert_eq!(m.choose(&dog, &candidates, agree), 1);
        // A heavy beam weight restores the beam's order.
        let beam = Consensus {
            neighbours: 2,
            weight: 100.0,
        };
        assert_eq!(m.choose(&dog, &candidates, beam), 0);
        // The bike photo's one neighbour shares "a man" with the first candidate only.
        let bike = [0.0, 1.0, 0.0, 0.0];
        let only = Consensus {
            neighbours: 1,
            weight: 0.0,
        };
        assert_eq!(m.choose(&bike, &candidates, only), 0);
    }

    #[test]
    fn memory_round_trips_and_a_cut_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MEMORY_FILE);
        let m = memory();
        m.save(&path).unwrap();
        let back = CaptionMemory::load(&path).unwrap();
        assert_eq!(back.len(), 4);
        assert_eq!(
            back.nearest(&[0.0, 0.0, 1.0, 0.0], 1),
            vec!["children play in the water ."]
        );
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 2]).unwrap();
        let err = CaptionMemory::load(&path).err().unwrap().to_string();
        assert!(
            err.contains("expected") && err.contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn mismatched_embeddings_are_refused() {
        let err = CaptionMemory::new(vec![vec!["a".into()]], vec![1.0; 3], 2)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("3 embedding values for 1 captions of width 2"),
            "{err}"
        );
    }
}

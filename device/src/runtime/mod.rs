//! The on-device inference runtime: a bundle's graphs loaded once into optimized,
//! runnable tract plans, plus the tokenizer, preprocessing and answer vocabulary
//! that came with them.

mod add;
mod blocked;
mod channel_panels;
mod clip;
mod conv;
mod decode;
mod depthwise;
mod error;
mod gemv;
mod layer_norm;
mod linear;
mod load;
mod memory;
mod pointwise;
pub mod profile;
mod race;
mod selftest;
mod swap;
mod text;
mod tile;

pub use error::{Result, RuntimeError};
use load::{load_tokenizer, plan};
pub use memory::{
    bound_free_heap, keep_blocks_for_reuse, return_freed_memory, return_large_blocks_when_freed,
    MAX_FREE_HEAP,
};
pub use race::KernelRace;
pub use selftest::SelfTestReport;
use text::TextEncoder;
pub use text::TextTower;

use std::sync::{Arc, Mutex};

use edgevlm_shared::bundle::{io, Manifest};
use edgevlm_shared::caption::{CaptionMemory, Consensus, Decoding};
use edgevlm_shared::search::{self, Candidate, DecodeOptions};
use edgevlm_shared::{preprocess_image, TextTokenizer};
use image::RgbImage;
use tract_onnx::prelude::*;

type Plan = Arc<TypedRunnableModel>;

pub struct Runtime {
    pub manifest: Manifest,
    /// Where the bundle came from, for errors.
    origin: String,
    /// The text encoder's (and VQA's) tokenizer.
    pub tokenizer: TextTokenizer,
    /// The caption decoder's: its own vocabulary, or the text encoder's.
    pub decoder_tokenizer: TextTokenizer,
    /// Training captions for consensus reranking, when the bundle carries them.
    pub memory: Option<CaptionMemory>,
    image_encoder: Plan,
    /// Built on first use and releasable: a board that only captions never holds
    /// the text tower, and a text trigger embeds its phrases once, then lets it go.
    text_encoder: Mutex<TextEncoder>,
    vqa: Option<VqaPlan>,
    decoder: Plan,
    decoder_step: Plan,
    /// Clip bundles' temporal graph and clip decoders.
    clip: Option<clip::ClipPlans>,
    selftest_image: Option<Vec<u8>>,
}

/// The VQA graph and what it reads of the image: the image tokens (a fused head)
/// or the preprocessed pixels (a spatial head, whose grid encoder is in the graph).
struct VqaPlan {
    plan: Plan,
    reads_pixels: bool,
}

/// An encoded image: its tokens (input of the VQA and caption graphs), its
/// unit-length ITC embedding, and the preprocessed pixels `[1, 3, s, s]` that a
/// spatial VQA graph reads.
#[derive(Clone)]
pub struct EncodedImage {
    pub tokens: Tensor,
    pub embedding: Vec<f32>,
    pub pixels: Tensor,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub answer: String,
    pub probability: f32,
    /// The five most likely answers with their probabilities.
    pub top: Vec<(String, f32)>,
}

pub(crate) fn run(plan: &Plan, graph: &str, inputs: TVec<TValue>) -> Result<TVec<TValue>> {
    let out = if profile::active() {
        profile::run(plan, graph, inputs)
    } else {
        plan.run(inputs)
    };
    out.map_err(|e| RuntimeError::Run {
        graph: graph.to_string(),
        reason: format!("{e:#}"),
    })
}

pub(crate) fn to_vec(value: &TValue, graph: &str) -> Result<Vec<f32>> {
    value
        .to_plain_array_view::<f32>()
        .map(|a| a.iter().copied().collect())
        .map_err(|e| RuntimeError::Run {
            graph: graph.into(),
            reason: format!("{e:#}"),
        })
}

/// Output `i` of a graph run, or an error naming the graph when it has fewer.
pub(crate) fn output<'a>(out: &'a TVec<TValue>, i: usize, graph: &str) -> Result<&'a TValue> {
    out.get(i).ok_or_else(|| RuntimeError::Run {
        graph: graph.into(),
        reason: format!("expected at least {} outputs, got {}", i + 1, out.len()),
    })
}

/// The answers by probability, top five; `answers` names the logits in order.
fn rank_answers(logits: &[f32], answers: &[String]) -> Result<Answer> {
    if logits.is_empty() {
        return Err(RuntimeError::Run {
            graph: io::VQA.into(),
            reason: "no answer logits (expected one per answer)".into(),
        });
    }
    let probs: Vec<f32> = search::log_softmax(logits).iter().map(|v| v.exp()).collect();
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    let name = |i: usize| answers.get(i).cloned().unwrap_or_else(|| format!("#{i}"));
    let top: Vec<(String, f32)> = order.iter().take(5).map(|&i| (name(i), probs[i])).collect();
    Ok(Answer {
        answer: top[0].0.clone(),
        probability: top[0].1,
        top,
    })
}

fn shape_error(graph: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Run {
        graph: graph.into(),
        reason: e.to_string(),
    }
}

impl Runtime {
    pub fn selftest_image_bytes(&self) -> Option<&[u8]> {
        self.selftest_image.as_deref()
    }

    /// Preprocesses (the shared implementation) and encodes one image.
    pub fn encode_image(&self, image: &RgbImage) -> Result<EncodedImage> {
        let pixels = preprocess_image(image, &self.manifest.preprocess);
        self.encode_pixels(&pixels.data)
    }

    /// Encodes an already preprocessed `[3, s, s]` image.
    pub fn encode_pixels(&self, pixels: &[f32]) -> Result<EncodedImage> {
        let s = self.manifest.preprocess.image_size as usize;
        let graph = io::IMAGE_ENCODER;
        let input = Tensor::from_shape(&[1, 3, s, s], pixels).map_err(|e| shape_error(graph, e))?;
        let out = run(&self.image_encoder, graph, tvec!(input.clone().into()))?;
        Ok(EncodedImage {
            tokens: output(&out, 0, graph)?.clone().into_tensor(),
            embedding: to_vec(output(&out, 1, graph)?, graph)?,
            pixels: input,
        })
    }

    /// Answer logits for one question about an encoded image.
    pub fn vqa_logits(&self, image: &EncodedImage, question: &str) -> Result<Vec<f32>> {
        Ok(self.vqa_logits_with_focus(image, question)?.0)
    }

    /// [`Self::vqa_logits`], and where a spatial VQA head looked for its answer: its
    /// weights over the grid's cells, row-major; `None` for a head without such a
    /// focus (the fused one). One run of the graph gives both.
    pub fn vqa_logits_with_focus(
        &self,
        image: &EncodedImage,
        question: &str,
    ) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
        let vqa = self.vqa.as_ref().ok_or(RuntimeError::NoVqa)?;
        let graph = io::VQA;
        let (ids, mask) = text::text_inputs(&self.tokenizer, &[question], graph)?;
        let states = self.text_states(ids, mask.clone())?;
        let image = if vqa.reads_pixels {
            &image.pixels
        } else {
            &image.tokens
        };
        let out = run(
            &vqa.plan,
            graph,
            tvec!(image.clone().into(), states.into(), mask.into()),
        )?;
        let focus = out.get(1).map(|f| to_vec(f, graph)).transpose()?;
        Ok((to_vec(output(&out, 0, graph)?, graph)?, focus))
    }

    /// Whether the bundle answers questions, which runs its text tower too (a loop
    /// that answers keeps it loaded).
    pub fn answers_questions(&self) -> bool {
        self.vqa.is_some()
    }

    pub fn answer(&self, image: &EncodedImage, question: &str) -> Result<Answer> {
        self.answer_from_logits(&self.vqa_logits(image, question)?)
    }

    /// The answers that `logits` (of the VQA graph) rank first.
    pub fn answer_from_logits(&self, logits: &[f32]) -> Result<Answer> {
        rank_answers(logits, &self.manifest.answers)
    }

    /// How the bundle asks to be decoded: the settings its trainer chose (beam and
    /// reranking), or greedy search without them.
    pub fn decoding(&self) -> Decoding {
        self.manifest.decoding.unwrap_or(Decoding {
            beam_size: 1,
            length_penalty: DecodeOptions::default().length_penalty,
            consensus: None,
        })
    }

    /// The caption `decoding` gives (beam, length penalty, reranking).
    pub fn caption_with(&self, image: &EncodedImage, decoding: Decoding) -> Result<String> {
        let opts = decoding.search(self.manifest.decoder.max_len);
        self.caption_reranked(image, opts, decoding.consensus)
    }

    /// A beam's finished captions as token ids, best score first.
    pub fn candidates(&self, image: &EncodedImage, opts: DecodeOptions) -> Result<Vec<Candidate>> {
        let special = self.decoder_tokenizer.special_ids();
        let max_len = opts.max_len.min(self.manifest.decoder.max_len);
        let mut model = decode::CachedDecoder::new(self, image);
        search::beam_candidates(&mut model, special.cls, special.sep, max_len, opts)
    }

    /// A beam's finished captions, best score first, with their scores.
    pub fn caption_candidates(
        &self,
        image: &EncodedImage,
        opts: DecodeOptions,
    ) -> Result<Vec<(String, f32)>> {
        self.candidates(image, opts)?
            .into_iter()
            .map(|c| Ok((self.decoder_tokenizer.decode(&c.tokens)?, c.score)))
            .collect()
    }

    /// The caption of `opts`'s search; with `consensus` (and a beam), the candidate
    /// that agrees best with the training captions nearest the image, exactly as the
    /// host reranks.
    pub fn caption_reranked(
        &self,
        image: &EncodedImage,
        opts: DecodeOptions,
        consensus: Option<Consensus>,
    ) -> Result<String> {
        let (Some(consensus), Some(_)) = (consensus, &self.memory) else {
            return self.caption(image, opts);
        };
        if opts.beam_size <= 1 {
            return self.caption(image, opts);
        }
        let candidates = self.caption_candidates(image, opts)?;
        let best = self.rerank(image, &candidates, consensus)?;
        Ok(candidates.into_iter().nth(best).map(|c| c.0).unwrap_or_default())
    }

    /// Index of the candidate (caption, beam score) that agrees best with the
    /// training captions nearest the image (the bundle's caption memory).
    pub fn rerank(
        &self,
        image: &EncodedImage,
        candidates: &[(String, f32)],
        consensus: Consensus,
    ) -> Result<usize> {
        let memory = self.memory.as_ref().ok_or_else(|| RuntimeError::Run {
            graph: io::CAPTION_STEP.into(),
            reason: "reranking needs a caption memory, which this bundle lacks".into(),
        })?;
        if memory.width() != image.embedding.len() {
            return Err(RuntimeError::Run {
                graph: io::IMAGE_ENCODER.into(),
                reason: format!(
                    "the caption memory's rows are {} wide but the image embedding has {} values",
                    memory.width(),
                    image.embedding.len()
                ),
            });
        }
        Ok(memory.choose(&image.embedding, candidates, consensus))
    }

    /// Caption token ids (without [CLS]/[SEP]).
    pub fn caption_ids(&self, image: &EncodedImage, opts: DecodeOptions) -> Result<Vec<u32>> {
        let special = self.decoder_tokenizer.special_ids();
        let max_len = opts.max_len.min(self.manifest.decoder.max_len);
        let mut model = decode::CachedDecoder::new(self, image);
        if opts.beam_size <= 1 {
            let mut seqs = search::greedy(&mut model, 1, special.cls, special.sep, max_len)?;
            Ok(seqs.pop().unwrap_or_default())
        } else {
            search::beam(&mut model, special.cls, special.sep, max_len, opts)
        }
    }

    pub fn caption(&self, image: &EncodedImage, opts: DecodeOptions) -> Result<String> {
        let ids = self.caption_ids(image, opts)?;
        Ok(self.decoder_tokenizer.decode(&ids)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgevlm_shared::bundle::{Bundle, DecoderSpec, FileKind, WeightStorage};
    use edgevlm_shared::PreprocessConfig;

    #[test]
    fn a_manifest_with_zero_sizes_fails_to_load_by_name() {
        let manifest = Manifest {
            format_version: 0,
            name: "zero".into(),
            model_version: 1,
            created: 0,
            weights: WeightStorage::F32,
            preprocess: PreprocessConfig::imagenet(32),
            max_text_len: 16,
            answers: vec![],
            decoder: DecoderSpec {
                layers: 1,
                heads: 1,
                d_head: 4,
                max_len: 8,
                vocab: 0,
            },
            files: vec![],
            selftest: None,
            decoding: None,
        };
        let files = vec![("tokenizer.json".into(), FileKind::Tokenizer, b"{}".to_vec())];
        let err = Runtime::from_bundle(&Bundle::new(manifest, files)).err().unwrap();
        assert!(err.to_string().contains("`decoder.vocab` is 0"), "{err}");
    }

    #[test]
    fn empty_answer_logits_are_an_error_not_a_panic() {
        let err = rank_answers(&[], &["yes".into()]).unwrap_err();
        assert!(err.to_string().contains("no answer logits"), "{err}");
        let ranked = rank_answers(&[0.0, 3.0], &["yes".into()]).unwrap();
        assert_eq!(ranked.answer, "#1");
    }
}

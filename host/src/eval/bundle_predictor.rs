//! An exported bundle as a [`Predictor`]: the device runtime (tract), one image at
//! a time, so `eval` measures what export and quantization cost.

use edgevlm_shared::caption::Consensus;

use super::predict::{Predictor, Rows, BATCH};
use crate::data::store::ImageStore;
use crate::model::DecodeOptions;

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
    fn answers_with_focus(
        &self,
        store: &ImageStore,
        questions: &[(usize, String)],
    ) -> crate::error::Result<(Rows, Option<Rows>)> {
        let mut probabilities = Vec::with_capacity(questions.len());
        let mut focus: Option<Rows> = None;
        let mut current: Option<(usize, edgevlm_device::runtime::EncodedImage)> = None;
        for (image, question) in questions {
            if current.as_ref().map(|c| c.0) != Some(*image) {
                current = Some((*image, self.encode(store, *image)?));
            }
            let encoded = &current.as_ref().expect("just set").1;
            let (logits, cells) = self
                .runtime
                .vqa_logits_with_focus(encoded, question)
                .map_err(runtime_err)?;
            probabilities.push(
                edgevlm_shared::search::log_softmax(&logits)
                    .iter()
                    .map(|v| v.exp())
                    .collect(),
            );
            if let Some(cells) = cells {
                focus.get_or_insert_with(Vec::new).push(cells);
            }
        }
        Ok((probabilities, focus))
    }
    fn answer_names(&self) -> &[String] {
        &self.runtime.manifest.answers
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
    fn token_log_probs(
        &self,
        store: &ImageStore,
        indices: &[usize],
        ids: &[u32],
    ) -> crate::error::Result<Vec<Vec<f32>>> {
        indices
            .iter()
            .map(|&i| {
                let encoded = self.encode(store, i)?;
                self.runtime.token_log_probs(&encoded, ids).map_err(runtime_err)
            })
            .collect()
    }
    fn caption_tokenizer(&self) -> &edgevlm_shared::TextTokenizer {
        &self.runtime.decoder_tokenizer
    }
    fn clip_frames(&self) -> Option<usize> {
        self.runtime.clip_frames()
    }
    fn clip_captions(
        &self,
        store: &ImageStore,
        clips: &[Vec<usize>],
        opts: DecodeOptions,
    ) -> crate::error::Result<Vec<String>> {
        clips
            .iter()
            .map(|frames| {
                let encoded = frames
                    .iter()
                    .map(|&i| self.encode(store, i))
                    .collect::<crate::error::Result<Vec<_>>>()?;
                let tokens: Vec<_> = encoded.iter().map(|e| &e.tokens).collect();
                let memory = self.runtime.clip_memory(&tokens).map_err(runtime_err)?;
                self.runtime.caption_clip(&memory, opts).map_err(runtime_err)
            })
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

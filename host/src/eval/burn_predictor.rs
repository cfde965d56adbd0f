//! [`Predictor`] over a model folder, run by burn.

use std::borrow::Borrow;

use burn::tensor::Device;
use edgevlm_shared::caption::Consensus;

use super::predict::{
    answers_with_focus, captions, clip_captions, image_embeddings, text_embeddings, token_log_probs,
    Predictor, Rows,
};
use crate::data::store::ImageStore;
use crate::error::{Error, Result};
use crate::model::saved::SavedModel;
use crate::model::DecodeOptions;

/// The trained burn model.
pub struct BurnPredictor<S: Borrow<SavedModel>> {
    /// The model folder's contents, owned or borrowed.
    pub saved: S,
    pub device: Device,
    /// Reranking applied after the beam: the folder's own unless changed.
    consensus: Option<Consensus>,
}

impl<S: Borrow<SavedModel>> BurnPredictor<S> {
    pub fn new(saved: S, device: Device) -> Self {
        let folder = saved.borrow();
        let consensus = match (&folder.memory, folder.decoding) {
            (Some(_), Some(decoding)) => decoding.consensus,
            _ => None,
        };
        Self {
            saved,
            device,
            consensus,
        }
    }
}

impl<S: Borrow<SavedModel>> Predictor for BurnPredictor<S> {
    fn preprocess(&self) -> &edgevlm_shared::PreprocessConfig {
        &self.saved.borrow().meta.preprocess
    }
    fn has_vqa(&self) -> bool {
        !self.saved.borrow().meta.answers.is_empty()
    }
    fn answers_with_focus(
        &self,
        store: &ImageStore,
        questions: &[(usize, String)],
    ) -> Result<(Rows, Option<Rows>)> {
        answers_with_focus(self.saved.borrow(), store, questions, &self.device)
    }
    fn answer_names(&self) -> &[String] {
        &self.saved.borrow().meta.answers
    }
    fn captions(&self, store: &ImageStore, indices: &[usize], opts: DecodeOptions) -> Result<Vec<String>> {
        captions(
            self.saved.borrow(),
            store,
            indices,
            opts,
            self.consensus,
            &self.device,
        )
    }
    fn image_embeddings(&self, store: &ImageStore, indices: &[usize]) -> Result<Vec<Vec<f32>>> {
        image_embeddings(self.saved.borrow(), store, indices, &self.device)
    }
    fn token_log_probs(&self, store: &ImageStore, indices: &[usize], ids: &[u32]) -> Result<Vec<Vec<f32>>> {
        token_log_probs(self.saved.borrow(), store, indices, ids, &self.device)
    }
    fn caption_tokenizer(&self) -> &edgevlm_shared::TextTokenizer {
        self.saved.borrow().meta.caption_tokenizer()
    }
    fn clip_frames(&self) -> Option<usize> {
        self.saved.borrow().model.temporal.as_ref().map(|t| t.frames())
    }
    fn clip_captions(
        &self,
        store: &ImageStore,
        clips: &[Vec<usize>],
        opts: DecodeOptions,
    ) -> Result<Vec<String>> {
        clip_captions(self.saved.borrow(), store, clips, opts, &self.device)
    }
    fn text_embeddings(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        text_embeddings(self.saved.borrow(), texts, &self.device)
    }
    fn decoding(&self) -> Option<DecodeOptions> {
        let saved = self.saved.borrow();
        saved.decoding.map(|d| d.search(saved.config().decoder.max_len))
    }
    fn consensus(&self) -> Option<Consensus> {
        self.consensus
    }
    fn set_consensus(&mut self, consensus: Option<Consensus>) -> Result<()> {
        if consensus.is_some() && self.saved.borrow().memory.is_none() {
            return Err(Error::Invalid(format!(
                "consensus reranking needs the caption memory {}, which this model folder lacks \
                 (`edgevlm train --recipe flickr8k` writes it)",
                crate::model::saved::MEMORY_FILE
            )));
        }
        self.consensus = consensus;
        Ok(())
    }
}

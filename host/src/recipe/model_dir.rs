//! The real-photo model folder, and running it for `eval`, `caption` and `match`.
//!
//! ```text
//! OUT/config.json        PhotoVlmConfig
//! OUT/preprocess.json    the image tower's preprocessing
//! OUT/tokenizer.json     the caption decoder's vocabulary
//! OUT/towers/            the frozen towers the heads were trained on
//!   image/model.safetensors                          EfficientNet-Lite0
//!   text/{config.json, model.safetensors, tokenizer.json}  MiniLM (or another BERT)
//! OUT/model.bpk          the trained heads (burnpack)
//! OUT/memory.bin         the caption memory for consensus reranking (optional)
//! OUT/decoding.json      the beam and reranking settings chosen on dev (optional)
//! ```

use std::path::Path;

use burn::config::Config;
use burn::tensor::{Device, Tensor, TensorData};
use edgevlm_shared::{PreprocessConfig, TextTokenizer};

use super::consensus::{self, CaptionMemory, Consensus, Decoding};
use super::towers::{self, Towers};
use crate::data::store::ImageStore;
use crate::error::{Error, Result};
use crate::eval::predict::Predictor;
use crate::export::{ModelSource, Parts};
use crate::model::photo::{PhotoVlm, PhotoVlmConfig};
use crate::model::saved::save_config;
use crate::model::weights::load_model;
use crate::model::DecodeOptions;

const TOWER_FILES: [(&str, &str); 4] = [
    ("image", "model.safetensors"),
    ("text", "config.json"),
    ("text", "model.safetensors"),
    ("text", "tokenizer.json"),
];

/// Is `dir` a real-photo model folder (rather than an `EdgeVlm` one)?
pub fn is_photo_model(dir: &Path) -> bool {
    dir.join("towers").is_dir()
}

/// Writes config, preprocessing, decoder vocabulary and (hard links to) the towers.
pub fn save_meta(
    dir: &Path,
    config: &PhotoVlmConfig,
    tokenizer: &TextTokenizer,
    towers: &Towers,
) -> Result<()> {
    save_config(dir, config, &Towers::preprocess())?;
    tokenizer.save(&dir.join("tokenizer.json"))?;
    for (tower, file) in TOWER_FILES {
        let source = if tower == "image" {
            &towers.image_dir
        } else {
            &towers.text_dir
        };
        let from = source.join(file);
        let to_dir = dir.join("towers").join(tower);
        std::fs::create_dir_all(&to_dir).map_err(|e| Error::io(&to_dir, e))?;
        let to = to_dir.join(file);
        let _ = std::fs::remove_file(&to);
        if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).map_err(|e| Error::io(&from, e))?;
        }
    }
    Ok(())
}

/// A trained real-photo model with its towers, ready for inference.
pub struct PhotoModel {
    pub config: PhotoVlmConfig,
    pub preprocess: PreprocessConfig,
    pub tokenizer: TextTokenizer,
    pub towers: Towers,
    pub model: PhotoVlm,
    pub device: Device,
    /// Training captions for consensus reranking, when the folder has them.
    pub memory: Option<CaptionMemory>,
    pub decoding: Option<Decoding>,
    /// The reranking `captions` applies (the folder's, unless changed).
    pub consensus: Option<Consensus>,
}

impl PhotoModel {
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let config_path = dir.join("config.json");
        let config = PhotoVlmConfig::load(&config_path)
            .map_err(|e| Error::record(&config_path, format!("not a real-photo model config: {e}")))?;
        let preprocess_path = dir.join("preprocess.json");
        let text = std::fs::read(&preprocess_path).map_err(|e| Error::io(&preprocess_path, e))?;
        let preprocess: PreprocessConfig = serde_json::from_slice(&text)
            .map_err(|e| Error::record(&preprocess_path, format!("malformed JSON: {e}")))?;
        let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"), config.decoder.max_len)?;
        let towers = Towers::load_from(&dir.join("towers/image"), &dir.join("towers/text"), device)?;
        let model = load_model(&dir.join("model.bpk"), config.init(device))?;
        let memory_path = dir.join(consensus::MEMORY_FILE);
        let memory = memory_path
            .is_file()
            .then(|| consensus::load_memory(&memory_path))
            .transpose()?;
        let decoding = consensus::load_decoding(dir)?;
        let consensus = match (&memory, decoding) {
            (Some(_), Some(d)) => d.consensus,
            _ => None,
        };
        Ok(Self {
            config,
            preprocess,
            tokenizer,
            towers,
            model,
            device: device.clone(),
            memory,
            decoding,
            consensus,
        })
    }

    /// What `export` turns into a bundle: both towers, the heads, both tokenizers,
    /// the caption memory and the decoding chosen on dev.
    pub fn source<'a>(&'a self, dir: &'a Path) -> Result<ModelSource<'a>> {
        let c = &self.config;
        let eps = self.towers.text.config.layer_norm_eps;
        if (eps - f64::from(crate::export::blocks::eps::BERT)).abs() > 1e-15 {
            return Err(Error::record(
                self.towers.text_dir.join("config.json"),
                format!("layer_norm_eps {eps}: the exporter writes BERT LayerNorms with 1e-12"),
            ));
        }
        Ok(ModelSource {
            parts: Parts::Imported {
                image: &self.towers.image,
                text: &self.towers.text.model,
                heads: &self.model,
            },
            dir,
            preprocess: &self.preprocess,
            tokenizer: &self.towers.text.tokenizer,
            decoder_tokenizer: Some(&self.tokenizer),
            answers: &[],
            memory: self.memory.as_ref(),
            decoding: self.decoding.map(|d| Decoding {
                consensus: self.consensus,
                ..d
            }),
            architecture: format!(
                "- image encoder: EfficientNet-Lite0 (frozen, {size} px), grid tokens projected to width {d}\n\
                 - text encoder: {text} (frozen, BERT layout, width {dt}, {lt} layers, vocabulary {vocab}), \
                 mean-pooled sentence embedding\n\
                 - ITC: two-layer projections to width {embed}; caption decoder: {ld} layers, \
                 its own vocabulary of {dv}\n",
                size = self.preprocess.image_size,
                d = c.d_model,
                text = self.towers.text_dir.display(),
                dt = c.d_text,
                lt = self.towers.text.config.layers,
                vocab = c.text_vocab,
                embed = c.d_embed,
                ld = c.decoder.layers,
                dv = c.decoder.vocab_size,
            ),
        })
    }

    fn image_tokens(&self, store: &ImageStore, indices: &[usize]) -> Tensor<3> {
        self.towers.image_tokens(store, indices, &self.device)
    }
}

const BATCH: usize = 32;

impl Predictor for PhotoModel {
    fn preprocess(&self) -> &PreprocessConfig {
        &self.preprocess
    }
    fn has_vqa(&self) -> bool {
        false
    }
    fn answers(&self, _store: &ImageStore, _questions: &[(usize, String)]) -> Result<Vec<(String, f32)>> {
        Err(Error::Invalid(
            "this real-photo model has no VQA head; it captions and matches".into(),
        ))
    }
    fn captions(&self, store: &ImageStore, indices: &[usize], opts: DecodeOptions) -> Result<Vec<String>> {
        let special = self.tokenizer.special_ids();
        let mut out = Vec::with_capacity(indices.len());
        for chunk in indices.chunks(BATCH) {
            let features = self.image_tokens(store, chunk);
            let [n, _, d] = features.dims();
            let pooled = features.clone().mean_dim(1).reshape([n, d]);
            let image = self.model.image_tokens(features);
            if let (Some(memory), Some(consensus)) = (&self.memory, self.consensus) {
                let reranked = consensus::captions(
                    &self.model,
                    image,
                    pooled,
                    &self.tokenizer,
                    opts,
                    memory,
                    consensus,
                )?;
                out.extend(reranked.chosen);
            } else {
                for ids in self.model.decoder.generate(image, special.cls, special.sep, opts) {
                    out.push(self.tokenizer.decode(&ids)?);
                }
            }
        }
        Ok(out)
    }
    fn decoding(&self) -> Option<DecodeOptions> {
        self.decoding.map(|d| d.search(self.config.decoder.max_len))
    }
    fn consensus(&self) -> Option<Consensus> {
        self.consensus
    }
    fn set_consensus(&mut self, consensus: Option<Consensus>) -> Result<()> {
        if consensus.is_some() && self.memory.is_none() {
            return Err(Error::Invalid(format!(
                "consensus reranking needs the caption memory {}, which this model folder lacks \
                 (the recipe writes it after the caption stage)",
                consensus::MEMORY_FILE
            )));
        }
        self.consensus = consensus;
        Ok(())
    }
    fn image_embeddings(&self, store: &ImageStore, indices: &[usize]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(indices.len());
        for chunk in indices.chunks(BATCH) {
            let pooled = self.image_tokens(store, chunk).mean_dim(1);
            let [n, _, d] = pooled.dims();
            out.extend(rows(self.model.image_embedding(pooled.reshape([n, d])))?);
        }
        Ok(out)
    }
    fn text_embeddings(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let sentences = self.towers.sentences(texts, &self.device)?;
        let d = self.towers.d_text();
        let mut out = Vec::with_capacity(texts.len());
        for chunk in sentences.chunks(128) {
            let flat: Vec<f32> = chunk.iter().flatten().copied().collect();
            out.extend(rows(self.model.text_embedding(Tensor::from_data(
                TensorData::new(flat, [chunk.len(), d]),
                &self.device,
            )))?);
        }
        Ok(out)
    }
}

/// The rows of a `[n, d]` tensor.
fn rows(t: Tensor<2>) -> Result<Vec<Vec<f32>>> {
    let width = t.dims()[1];
    Ok(towers::floats(t.into_data())?
        .chunks(width.max(1))
        .map(<[f32]>::to_vec)
        .collect())
}

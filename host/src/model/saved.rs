//! A model on disk: the one folder every run writes and every command reads,
//! whichever towers the model has.
//!
//! ```text
//! RUN/config.json             EdgeVlmConfig (burn Config JSON) + "format_version"
//! RUN/preprocess.json         shared PreprocessConfig
//! RUN/tokenizer.json          the text tower's HF tokenizer
//! RUN/decoder_tokenizer.json  the caption decoder's, when it has its own vocabulary
//! RUN/answers.json            VQA answer vocabulary (after VQA fine-tuning)
//! RUN/model.bpk               every weight, locked towers included (burnpack)
//! RUN/caption_memory.bin      training captions for consensus reranking (optional)
//! RUN/decoding.json           beam and reranking settings chosen on dev (optional)
//! ```
//!
//! Folders of the first format (no `format_version`) are refused with the command
//! that converts them, `edgevlm models upgrade`.

use std::path::{Path, PathBuf};

use burn::config::Config;
use burn::tensor::Device;
use edgevlm_shared::caption::{CaptionMemory, Decoding, MemoryStorage};
use edgevlm_shared::{PreprocessConfig, TextTokenizer};

use super::{EdgeVlm, EdgeVlmConfig};
use crate::error::{Error, Result};
use crate::model::weights::{load_model, write_synced};

/// The folder format this release writes and reads.
pub const MODEL_FORMAT: u64 = 2;
pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.bpk";
pub const DECODER_TOKENIZER_FILE: &str = "decoder_tokenizer.json";
pub const MEMORY_FILE: &str = "caption_memory.bin";
pub const DECODING_FILE: &str = "decoding.json";

/// Everything in a model folder but the weights.
#[derive(Debug, Clone)]
pub struct ModelMeta {
    pub config: EdgeVlmConfig,
    pub preprocess: PreprocessConfig,
    /// The text tower's tokenizer (questions, phrases, ITC texts).
    pub tokenizer: TextTokenizer,
    /// The caption decoder's, when `config.decoder_vocabulary`.
    pub decoder_tokenizer: Option<TextTokenizer>,
    pub answers: Vec<String>,
}

impl ModelMeta {
    /// The tokenizer captions are written in.
    pub fn caption_tokenizer(&self) -> &TextTokenizer {
        self.decoder_tokenizer.as_ref().unwrap_or(&self.tokenizer)
    }
}

pub struct SavedModel {
    pub dir: PathBuf,
    pub meta: ModelMeta,
    pub model: EdgeVlm,
    /// Training captions for consensus reranking, when the folder has them.
    pub memory: Option<CaptionMemory>,
    pub decoding: Option<Decoding>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::record(path, format!("malformed JSON: {e}")))
}

impl SavedModel {
    /// Loads everything but the weights (for building a model to resume into).
    pub fn load_meta(dir: &Path) -> Result<ModelMeta> {
        if !dir.is_dir() {
            return Err(Error::record(
                dir,
                "not a model folder (expected config.json, model.bpk, …)",
            ));
        }
        let config = load_model_config(&dir.join(CONFIG_FILE))?;
        let preprocess: PreprocessConfig = read_json(&dir.join("preprocess.json"))?;
        preprocess.validate()?;
        let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"), config.text_len())?;
        let decoder_tokenizer = if config.decoder_vocabulary {
            let path = dir.join(DECODER_TOKENIZER_FILE);
            let tokenizer = TextTokenizer::from_file(&path, config.decoder.max_len)?;
            check_vocabulary(&path, &tokenizer, config.decoder.vocab_size)?;
            Some(tokenizer)
        } else {
            None
        };
        let answers_path = dir.join("answers.json");
        let answers: Vec<String> = if answers_path.is_file() {
            read_json(&answers_path)?
        } else {
            Vec::new()
        };
        if answers.len() != config.answers {
            return Err(Error::record(
                &answers_path,
                format!(
                    "holds {} answers but config.json expects {}",
                    answers.len(),
                    config.answers
                ),
            ));
        }
        Ok(ModelMeta {
            config,
            preprocess,
            tokenizer,
            decoder_tokenizer,
            answers,
        })
    }

    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let meta = Self::load_meta(dir)?;
        let model = load_model(&dir.join(WEIGHTS_FILE), meta.config.init(device))?.locked(&meta.config);
        let memory_path = dir.join(MEMORY_FILE);
        let memory = memory_path
            .is_file()
            .then(|| load_memory(&memory_path))
            .transpose()?;
        Ok(Self {
            dir: dir.to_path_buf(),
            meta,
            model,
            memory,
            decoding: load_decoding(dir)?,
        })
    }

    pub fn config(&self) -> &EdgeVlmConfig {
        &self.meta.config
    }
}

fn check_vocabulary(path: &Path, tokenizer: &TextTokenizer, expected: usize) -> Result<()> {
    if tokenizer.vocab_size() != expected {
        return Err(Error::record(
            path,
            format!(
                "a vocabulary of {} words, but the decoder in config.json writes {expected}",
                tokenizer.vocab_size()
            ),
        ));
    }
    Ok(())
}

/// Reads an [`EdgeVlmConfig`] of this folder format.
pub fn load_model_config(path: &Path) -> Result<EdgeVlmConfig> {
    let not_config = |e: String| Error::record(path, format!("not a model config: {e}"));
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut json: serde_json::Value = serde_json::from_str(&text).map_err(|e| not_config(e.to_string()))?;
    let fields = json
        .as_object_mut()
        .ok_or_else(|| not_config("expected a JSON object".into()))?;
    match fields.remove("format_version").and_then(|v| v.as_u64()) {
        Some(MODEL_FORMAT) => {}
        Some(other) => {
            return Err(Error::record(
                path,
                format!("format_version {other}: this edgevlm reads model folders of format {MODEL_FORMAT}"),
            ))
        }
        None => {
            let dir = path.parent().unwrap_or(Path::new("."));
            return Err(Error::record(
                path,
                format!(
                    "a model folder of the first format (no format_version); convert it with \
                     `edgevlm models upgrade {}`",
                    dir.display()
                ),
            ));
        }
    }
    EdgeVlmConfig::load_binary(json.to_string().as_bytes()).map_err(|e| not_config(e.to_string()))
}

/// Writes a model folder's `config.json` (with its format version) and `preprocess.json`.
pub fn save_config(dir: &Path, config: &EdgeVlmConfig, preprocess: &PreprocessConfig) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut json = serde_json::to_value(config).expect("plain data");
    if let Some(fields) = json.as_object_mut() {
        fields.insert("format_version".into(), MODEL_FORMAT.into());
    }
    write_synced(
        &dir.join(CONFIG_FILE),
        serde_json::to_string_pretty(&json)
            .expect("plain data")
            .as_bytes(),
    )?;
    write_synced(
        &dir.join("preprocess.json"),
        serde_json::to_string_pretty(preprocess)
            .expect("plain data")
            .as_bytes(),
    )
}

/// Writes the non-weight files of a model folder.
pub fn save_meta(dir: &Path, meta: &ModelMeta) -> Result<()> {
    save_config(dir, &meta.config, &meta.preprocess)?;
    meta.tokenizer.save(&dir.join("tokenizer.json"))?;
    if let Some(tokenizer) = &meta.decoder_tokenizer {
        tokenizer.save(&dir.join(DECODER_TOKENIZER_FILE))?;
    }
    if !meta.answers.is_empty() {
        write_synced(
            &dir.join("answers.json"),
            serde_json::to_string_pretty(&meta.answers)
                .expect("plain data")
                .as_bytes(),
        )?;
    }
    Ok(())
}

pub fn save_decoding(decoding: &Decoding, dir: &Path) -> Result<()> {
    write_synced(
        &dir.join(DECODING_FILE),
        serde_json::to_string_pretty(decoding)
            .expect("plain data")
            .as_bytes(),
    )
}

/// The folder's settings, or `None` when it has no decoding file.
pub fn load_decoding(dir: &Path) -> Result<Option<Decoding>> {
    let path = dir.join(DECODING_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let decoding: Decoding = read_json(&path)?;
    decoding
        .validate()
        .map_err(|e| Error::record(&path, e.to_string()))?;
    Ok(Some(decoding))
}

/// Writes the memory as the board reads it (bf16 rows).
pub fn save_memory(memory: &CaptionMemory, dir: &Path) -> Result<()> {
    write_synced(&dir.join(MEMORY_FILE), &memory.to_bytes(MemoryStorage::Bf16))
}

pub fn load_memory(path: &Path) -> Result<CaptionMemory> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    CaptionMemory::from_bytes(&bytes, &path.display().to_string())
        .map_err(|e| Error::record(path, e.to_string()))
}

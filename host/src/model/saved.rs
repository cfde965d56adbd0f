//! A trained model on disk: the folder a run writes and every command reads.
//!
//! ```text
//! RUN/config.json       EdgeVlmConfig (burn Config JSON)
//! RUN/preprocess.json   shared PreprocessConfig
//! RUN/tokenizer.json    HF tokenizer
//! RUN/answers.json      VQA answer vocabulary (after VQA fine-tuning)
//! RUN/model.bpk         weights (burnpack)
//! ```

use std::path::{Path, PathBuf};

use burn::config::Config;
use burn::tensor::Device;
use edgevlm_shared::{PreprocessConfig, TextTokenizer};

use super::{EdgeVlm, EdgeVlmConfig};
use crate::error::{Error, Result};
use crate::model::weights::{load_model, write_synced};

pub struct SavedModel {
    pub dir: PathBuf,
    pub config: EdgeVlmConfig,
    pub preprocess: PreprocessConfig,
    pub tokenizer: TextTokenizer,
    pub answers: Vec<String>,
    pub model: EdgeVlm,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::record(path, format!("malformed JSON: {e}")))
}

impl SavedModel {
    /// Loads everything but the weights (for building a model to resume into).
    pub fn load_meta(dir: &Path) -> Result<(EdgeVlmConfig, PreprocessConfig, TextTokenizer, Vec<String>)> {
        if !dir.is_dir() {
            return Err(Error::record(
                dir,
                "not a model folder (expected config.json, model.bpk, …)",
            ));
        }
        let config_path = dir.join("config.json");
        let config = load_model_config(&config_path)?;
        let preprocess: PreprocessConfig = read_json(&dir.join("preprocess.json"))?;
        preprocess.validate()?;
        let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"), config.decoder.max_len)?;
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
        Ok((config, preprocess, tokenizer, answers))
    }

    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let (config, preprocess, tokenizer, answers) = Self::load_meta(dir)?;
        let model = load_model(&dir.join("model.bpk"), config.init(device))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            preprocess,
            tokenizer,
            answers,
            model,
        })
    }
}

/// Reads an [`EdgeVlmConfig`], giving fields that later versions added their
/// defaults so that model folders written before them still load.
fn load_model_config(path: &Path) -> Result<EdgeVlmConfig> {
    let not_config = |e: String| Error::record(path, format!("not a model config: {e}"));
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut json: serde_json::Value = serde_json::from_str(&text).map_err(|e| not_config(e.to_string()))?;
    if let Some(fields) = json.as_object_mut() {
        fields
            .entry("vqa_head")
            .or_insert_with(|| serde_json::Value::String("Fused".into()));
        fields.entry("grid").or_insert(serde_json::Value::Null);
    }
    EdgeVlmConfig::load_binary(json.to_string().as_bytes()).map_err(|e| not_config(e.to_string()))
}

/// Writes a model folder's `config.json` (any burn `Config`) and `preprocess.json`.
pub fn save_config(dir: &Path, config: &impl Config, preprocess: &PreprocessConfig) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let config_path = dir.join("config.json");
    config
        .save(&config_path)
        .map_err(|e| Error::io(&config_path, e))?;
    write_synced(
        &dir.join("preprocess.json"),
        serde_json::to_string_pretty(preprocess)
            .expect("plain data")
            .as_bytes(),
    )?;
    Ok(())
}

/// Writes the non-weight files of a model folder.
pub fn save_meta(
    dir: &Path,
    config: &EdgeVlmConfig,
    preprocess: &PreprocessConfig,
    tokenizer: &TextTokenizer,
    answers: &[String],
) -> Result<()> {
    save_config(dir, config, preprocess)?;
    tokenizer.save(&dir.join("tokenizer.json"))?;
    if !answers.is_empty() {
        write_synced(
            &dir.join("answers.json"),
            serde_json::to_string_pretty(answers)
                .expect("plain data")
                .as_bytes(),
        )?;
    }
    Ok(())
}

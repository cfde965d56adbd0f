//! Pretrained towers from standard Hugging Face model folders (`config.json` +
//! `model.safetensors` + `tokenizer.json`), loaded with burn-store: PyTorch names
//! and layouts are mapped onto our modules, and the import fails naming every
//! parameter left unfilled and every tensor of the file left unused.

use std::path::{Path, PathBuf};

use burn::store::{ApplyResult, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use burn::tensor::{Device, Int, Tensor, TensorData};
use edgevlm_shared::tokenizer::TextTokenizer;
use serde::Deserialize;

use super::bert::{Bert, BertConfig};
use super::efficientnet::{EfficientNet, EfficientNetConfig};
use crate::error::{Error, Result};

/// The fields of an HF BERT `config.json` that decide the module layout.
#[derive(Debug, Deserialize)]
struct HfBertConfig {
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    type_vocab_size: usize,
    layer_norm_eps: f64,
    hidden_act: String,
    #[serde(default = "absolute")]
    position_embedding_type: String,
}

fn absolute() -> String {
    "absolute".into()
}

/// HF `BertModel` names → our `Bert` fields (an optional `bert.` prefix is dropped).
const BERT_KEYS: [(&str, &str); 10] = [
    (r"^bert\.", ""),
    (r"^embeddings\.LayerNorm\.", "embeddings_norm."),
    (
        r"^embeddings\.(word|position|token_type)_embeddings\.",
        "${1}_embeddings.",
    ),
    (
        r"^encoder\.layer\.(\d+)\.attention\.self\.",
        "layers.$1.attention.",
    ),
    (
        r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.",
        "layers.$1.attention.output.",
    ),
    (
        r"^encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.",
        "layers.$1.attention_norm.",
    ),
    (
        r"^encoder\.layer\.(\d+)\.intermediate\.dense\.",
        "layers.$1.feed_forward.intermediate.",
    ),
    (
        r"^encoder\.layer\.(\d+)\.output\.dense\.",
        "layers.$1.feed_forward.output.",
    ),
    (
        r"^encoder\.layer\.(\d+)\.output\.LayerNorm\.",
        "layers.$1.output_norm.",
    ),
    (r"^pooler\.dense\.", "pooler."),
];

/// Buffers HF keeps in the file that are not weights.
const BERT_BUFFERS: [&str; 1] = ["embeddings.position_ids"];

/// `_conv_stem.weight` → `conv_stem.weight`, `_blocks.3._bn1.weight` → `blocks.3.bn1.weight`
/// (the adapter then names BatchNorm weights `gamma`, biases `beta`).
const EFFICIENTNET_KEYS: [(&str, &str); 1] = [(r"(^|\.)_", "$1")];

/// BatchNorm step counters: bookkeeping of PyTorch's training loop, not weights.
const EFFICIENTNET_BUFFERS: [&str; 1] = ["num_batches_tracked"];

/// EfficientNet-Lite0 from a folder holding the ImageNet `model.safetensors` (as
/// `models/fetch-pretrained.sh` converts it); with `classifier`, the 1000-class head too.
pub fn load_efficientnet(dir: &Path, classifier: bool, device: &Device) -> Result<EfficientNet> {
    let mut model = EfficientNetConfig::new().with_classifier(classifier).init(device);
    let mut skipped = EFFICIENTNET_BUFFERS.to_vec();
    if !classifier {
        skipped.extend(["fc.weight", "fc.bias"]);
    }
    import(
        &mut model,
        &dir.join("model.safetensors"),
        &EFFICIENTNET_KEYS,
        &skipped,
    )?;
    Ok(model)
}

/// A BERT-family text encoder with its tokenizer, as found in a model folder.
pub struct PretrainedBert {
    pub config: BertConfig,
    pub model: Bert,
    pub tokenizer: TextTokenizer,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::record(path, format!("not the expected JSON: {e}")))
}

impl PretrainedBert {
    /// Sentence-transformers embeddings: token states mean-pooled over the real
    /// tokens, then L2-normalised (how all-MiniLM-L6-v2 is used).
    pub fn sentence_embeddings(&self, texts: &[&str], device: &Device) -> Result<Vec<Vec<f32>>> {
        let batch = self.tokenizer.encode_batch(texts)?;
        let (b, len) = (batch.batch, batch.seq_len);
        let ids: Vec<i64> = batch.ids.iter().map(|&i| i64::from(i)).collect();
        let mask: Vec<f32> = batch.mask.iter().map(|&m| m as f32).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, len]), device);
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [b, len]), device);
        let hidden = self.model.forward(ids, mask.clone());
        let weights = mask.clone().reshape([b, len, 1]);
        let summed = (hidden * weights).sum_dim(1).reshape([b, self.config.d_model]);
        let counts = mask.sum_dim(1).clamp_min(1e-9);
        let mean = summed / counts;
        let norm = mean.clone().powf_scalar(2.0).sum_dim(1).sqrt().clamp_min(1e-12);
        let unit = (mean / norm).into_data();
        let values = unit
            .try_to_vec::<f32>()
            .map_err(|e| Error::Invalid(format!("embeddings: {e:?}")))?;
        Ok(values.chunks(self.config.d_model).map(<[f32]>::to_vec).collect())
    }
}

/// Loads an HF BERT folder (BERT, MiniLM, …); `max_len` bounds tokenized texts.
pub fn load_bert(dir: &Path, max_len: usize, device: &Device) -> Result<PretrainedBert> {
    let config_path = dir.join("config.json");
    let hf: HfBertConfig = read_json(&config_path)?;
    let unsupported = |what: String| Error::record(&config_path, what);
    if hf.model_type.as_deref().is_some_and(|t| t != "bert") {
        return Err(unsupported(format!(
            "model_type {:?}: expected \"bert\"",
            hf.model_type
        )));
    }
    if hf.hidden_act != "gelu" {
        return Err(unsupported(format!(
            "hidden_act {:?}: expected \"gelu\"",
            hf.hidden_act
        )));
    }
    if hf.position_embedding_type != "absolute" {
        return Err(unsupported(format!(
            "position_embedding_type {:?}: expected \"absolute\"",
            hf.position_embedding_type
        )));
    }
    let config = BertConfig::new(hf.vocab_size)
        .with_d_model(hf.hidden_size)
        .with_layers(hf.num_hidden_layers)
        .with_heads(hf.num_attention_heads)
        .with_d_intermediate(hf.intermediate_size)
        .with_max_positions(hf.max_position_embeddings)
        .with_type_vocab_size(hf.type_vocab_size)
        .with_layer_norm_eps(hf.layer_norm_eps);
    let mut model = config.init(device);
    let weights = dir.join("model.safetensors");
    import(&mut model, &weights, &BERT_KEYS, &BERT_BUFFERS)?;
    let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"), max_len)?;
    if tokenizer.vocab_size() != hf.vocab_size {
        return Err(Error::record(
            dir.join("tokenizer.json"),
            format!(
                "vocabulary of {} tokens, but config.json says {}",
                tokenizer.vocab_size(),
                hf.vocab_size
            ),
        ));
    }
    Ok(PretrainedBert {
        config,
        model,
        tokenizer,
    })
}

/// Fills every parameter of `module` from a safetensors file written by PyTorch.
pub fn import<M: ModuleSnapshot>(
    module: &mut M,
    path: &Path,
    keys: &[(&str, &str)],
    buffers: &[&str],
) -> Result<()> {
    if !path.is_file() {
        return Err(Error::io(
            PathBuf::from(path),
            std::io::Error::new(std::io::ErrorKind::NotFound, "weights not found"),
        ));
    }
    let mut store = keys.iter().fold(
        SafetensorsStore::from_file(path).with_from_adapter(PyTorchToBurnAdapter),
        |store, (from, to)| store.with_key_remapping(*from, *to),
    );
    let result = module.load_from(&mut store).map_err(|e| Error::record(path, e))?;
    check_applied(
        &result,
        path,
        |_| false,
        |k| buffers.iter().any(|b| k.ends_with(b)),
    )
}

/// Refuses a load that left a parameter empty (unless `missing_ok` says another
/// file fills it), found no place for a tensor (unless `unused_ok`), or met a
/// tensor of the wrong shape, naming each.
pub fn check_applied(
    result: &ApplyResult,
    path: &Path,
    missing_ok: impl Fn(&str) -> bool,
    unused_ok: impl Fn(&str) -> bool,
) -> Result<()> {
    let missing: Vec<&str> = result
        .missing
        .iter()
        .map(|(p, _)| p.as_str())
        .filter(|p| !missing_ok(p))
        .collect();
    let unused: Vec<&str> = result
        .unused
        .iter()
        .map(String::as_str)
        .filter(|k| !unused_ok(k))
        .collect();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("parameters not in the file: {}", missing.join(", ")));
    }
    if !unused.is_empty() {
        problems.push(format!(
            "tensors the model has no place for: {}",
            unused.join(", ")
        ));
    }
    if !result.errors.is_empty() {
        let errors: Vec<String> = result.errors.iter().map(|e| format!("{e}")).collect();
        problems.push(format!("tensors that do not fit: {}", errors.join("; ")));
    }
    if !problems.is_empty() {
        return Err(Error::record(path, problems.join("; ")));
    }
    Ok(())
}

#[cfg(test)]
mod tests;

//! `edgevlm models upgrade`: converts a model folder of the first format into the
//! one folder format ([`crate::model::saved`]) without retraining. The first format
//! came in two layouts:
//!
//! - a synthetic-scene model: `config.json` without `format_version`, a ViT tower
//!   whose weights sat at `vision.*`;
//! - a real-photo model: `towers/` (EfficientNet-Lite0, a BERT-family text tower),
//!   the heads alone in `model.bpk` under their own names, the decoder's vocabulary
//!   in `tokenizer.json` and the caption memory in `memory.bin`.
//!
//! The converted folder is written beside the old one and swapped in at the end;
//! the old one is kept as `DIR.format1`.

use std::path::{Path, PathBuf};

use burn::config::Config;
use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::Device;
use edgevlm_shared::caption::CaptionMemory;
use edgevlm_shared::{PreprocessConfig, TextTokenizer};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::features::cache;
use crate::features::towers::{Towers, TEXT_MAX_LEN};
use crate::model::decoder::CaptionDecoderConfig;
use crate::model::pretrained::check_applied;
use crate::model::saved::{self, ModelMeta, SavedModel};
use crate::model::weights::save_model_atomic;
use crate::model::{EdgeVlm, EdgeVlmConfig};

/// Where each head of the first real-photo format went.
const PHOTO_KEYS: [(&str, &str); 8] = [
    (r"^image_proj\.", "image_adapter.proj."),
    (r"^image_norm\.", "image_adapter.norm."),
    (r"^itc_image\.hidden\.", "itc.image_proj."),
    (r"^itc_image\.output\.", "itc.image_residual."),
    (r"^itc_text\.hidden\.", "itc.text_proj."),
    (r"^itc_text\.output\.", "itc.text_residual."),
    (r"^logit_scale$", "itc.logit_scale"),
    (r"^vision\.", "vision.Vit."),
];

/// What `upgrade` did.
pub struct Upgraded {
    pub layout: &'static str,
    pub backup: PathBuf,
}

/// Converts `dir` in place (the old folder kept as `DIR.format1`), or into `out`.
pub fn upgrade(dir: &Path, out: Option<&Path>, device: &Device) -> Result<Upgraded> {
    let config_path = dir.join(saved::CONFIG_FILE);
    let text = std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| Error::record(&config_path, format!("malformed JSON: {e}")))?;
    if json.get("format_version").is_some() {
        return Err(Error::record(
            &config_path,
            "already has a format_version: nothing to upgrade",
        ));
    }
    let staging = sibling(out.unwrap_or(dir), "upgrading");
    let _ = std::fs::remove_dir_all(&staging);
    let layout = if dir.join("towers").is_dir() {
        photo(dir, &json, &staging, device)?;
        "real-photo"
    } else {
        synthetic(dir, json, &staging, device)?;
        "synthetic-scene"
    };
    // Check what was written reads back before anything is moved.
    SavedModel::load(&staging, device)?;
    let backup = match out {
        Some(out) => {
            rename(&staging, out)?;
            dir.to_path_buf()
        }
        None => {
            let backup = sibling(dir, "format1");
            rename(dir, &backup)?;
            rename(&staging, dir)?;
            backup
        }
    };
    Ok(Upgraded { layout, backup })
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(format!(".{suffix}"));
    PathBuf::from(name)
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    if to.exists() {
        return Err(Error::record(to, "already exists: move it away first"));
    }
    std::fs::rename(from, to).map_err(|e| Error::io(to, e))
}

fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::record(path, format!("malformed JSON: {e}")))
}

fn field<T: serde::de::DeserializeOwned>(json: &Value, name: &str, path: &Path) -> Result<T> {
    json.get(name)
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(|| Error::record(path, format!("no usable `{name}`")))
}

/// Fills `model` from a first-format record, names moved by [`PHOTO_KEYS`]; only
/// the parameters named by `loaded_elsewhere` may be missing from it.
fn load_renamed(model: &mut EdgeVlm, path: &Path, loaded_elsewhere: &[&str]) -> Result<()> {
    let mut store = PHOTO_KEYS.iter().fold(
        BurnpackStore::from_file(path).allow_partial(true),
        |store, (from, to)| store.with_remap_pattern(*from, *to),
    );
    let result = model.load_from(&mut store).map_err(|e| Error::record(path, e))?;
    check_applied(
        &result,
        path,
        |p| loaded_elsewhere.iter().any(|prefix| p.starts_with(prefix)),
        |_| false,
    )
}

fn photo(dir: &Path, json: &Value, out: &Path, device: &Device) -> Result<()> {
    let config_path = dir.join(saved::CONFIG_FILE);
    let towers = Towers::load_from(&dir.join("towers/image"), &dir.join("towers/text"), device)?;
    let decoder: CaptionDecoderConfig = field(json, "decoder", &config_path)?;
    let d_model: usize = field(json, "d_model", &config_path)?;
    let mut config = EdgeVlmConfig::photo(towers.text.config.clone(), TEXT_MAX_LEN, decoder)
        .with_d_embed(field(json, "d_embed", &config_path)?)
        .with_image_width(Some(d_model));
    config.fusion.d_image = d_model;
    config.fusion.layers = field(json, "fusion_layers", &config_path)?;
    config.fusion.heads = field(json, "fusion_heads", &config_path)?;
    config.fusion.d_intermediate = field(json, "fusion_intermediate", &config_path)?;
    let mut model = towers.install(config.init(device));
    load_renamed(&mut model, &dir.join(saved::WEIGHTS_FILE), &["vision.", "text."])?;
    let decoder_tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"), config.decoder.max_len)?;
    let meta = ModelMeta {
        preprocess: read::<PreprocessConfig>(&dir.join("preprocess.json"))?,
        config,
        tokenizer: towers.text.tokenizer.clone(),
        decoder_tokenizer: Some(decoder_tokenizer),
        answers: Vec::new(),
    };
    saved::save_meta(out, &meta)?;
    save_model_atomic(&model, &out.join(saved::WEIGHTS_FILE))?;
    let memory = dir.join("memory.bin");
    if memory.is_file() {
        saved::save_memory(&load_memory(&memory)?, out)?;
    }
    if let Some(decoding) = saved::load_decoding(dir)? {
        saved::save_decoding(&decoding, out)?;
    }
    Ok(())
}

fn synthetic(dir: &Path, mut json: Value, out: &Path, device: &Device) -> Result<()> {
    let config_path = dir.join(saved::CONFIG_FILE);
    let fields = json
        .as_object_mut()
        .ok_or_else(|| Error::record(&config_path, "expected a JSON object"))?;
    let vision = fields
        .remove("vision")
        .ok_or_else(|| Error::record(&config_path, "no `vision`: not an edgevlm model config"))?;
    fields.insert("vision".into(), serde_json::json!({ "Vit": vision }));
    // Fields the first format did not have, at the values its models were built with.
    let added = [
        ("vqa_head", Value::from("Fused")),
        ("grid", Value::Null),
        ("spatial_mlm", Value::from(false)),
        ("image_width", Value::Null),
        ("text_pooling", Value::from("Cls")),
        ("itc_residual", Value::from(false)),
        ("mim", Value::from(true)),
        ("lock_image", Value::from(false)),
        ("lock_text", Value::from(false)),
        ("decoder_vocabulary", Value::from(false)),
        ("text_max_len", Value::Null),
    ];
    for (name, value) in added {
        fields.entry(name).or_insert(value);
    }
    let config = EdgeVlmConfig::load_binary(json.to_string().as_bytes())
        .map_err(|e| Error::record(&config_path, format!("not a model config: {e}")))?;
    let mut model = config.init(device);
    load_renamed(&mut model, &dir.join(saved::WEIGHTS_FILE), &[])?;
    let answers_path = dir.join("answers.json");
    let answers: Vec<String> = if answers_path.is_file() {
        read(&answers_path)?
    } else {
        Vec::new()
    };
    let meta = ModelMeta {
        tokenizer: TextTokenizer::from_file(&dir.join("tokenizer.json"), config.text_len())?,
        preprocess: read(&dir.join("preprocess.json"))?,
        config,
        decoder_tokenizer: None,
        answers,
    };
    saved::save_meta(out, &meta)?;
    save_model_atomic(&model, &out.join(saved::WEIGHTS_FILE))
}

/// A first-format caption memory: the board's format, or a feature-cache file of
/// bf16 rows from before the memory had one.
fn load_memory(path: &Path) -> Result<CaptionMemory> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if !bytes.starts_with(cache::MAGIC) {
        return saved::load_memory(path);
    }
    #[derive(serde::Deserialize)]
    struct Header {
        captions: Vec<Vec<String>>,
        width: usize,
    }
    let (header, body): (Header, _) = cache::read_file(path)?;
    let captions = header.captions.iter().map(Vec::len).sum::<usize>();
    let expected = captions * header.width * 2;
    if body.len() != expected {
        return Err(Error::record(
            path,
            format!(
                "expected {expected} bytes of embeddings for {captions} captions, found {}",
                body.len()
            ),
        ));
    }
    let embeddings = cache::u16s(&body).into_iter().map(cache::from_bf16).collect();
    CaptionMemory::new(header.captions, embeddings, header.width)
        .map_err(|e| Error::record(path, e.to_string()))
}

#[cfg(test)]
mod tests {
    use burn::store::burn_pack::Tensor as PackTensor;
    use burn::store::{ModuleAdapter, ModuleContext};

    use super::*;
    use crate::model::params::max_difference;

    /// Writes records as the first format named a ViT tower's weights.
    #[derive(Clone)]
    struct FirstFormatNames;

    impl ModuleAdapter for FirstFormatNames {
        fn adapt(&self, mut tensor: PackTensor, _: ModuleContext<'_>) -> PackTensor {
            if let Some(rest) = tensor.name.strip_prefix("vision.Vit.") {
                tensor.name = format!("vision.{rest}");
            }
            tensor
        }
        fn clone_box(&self) -> Box<dyn ModuleAdapter> {
            Box::new(self.clone())
        }
    }

    /// A first-format synthetic folder is refused with the command that converts
    /// it; converted, it holds the very same weights and loads like any other.
    #[test]
    fn a_first_format_synthetic_folder_is_refused_then_converted_weight_for_weight() {
        let device = Device::flex();
        device.seed(5);
        let corpus = ["a red circle left of a blue square", "how many objects are there"];
        let tokenizer = TextTokenizer::train(
            corpus.iter(),
            &edgevlm_shared::TokenizerConfig {
                vocab_size: 60,
                min_frequency: 1,
                max_len: 16,
                lowercase: true,
            },
        )
        .unwrap();
        let config = EdgeVlmConfig::tiny(tokenizer.vocab_size());
        let model = config.init(&device);
        let root = tempfile::tempdir().unwrap();
        let old = root.path().join("old");
        let meta = ModelMeta {
            config: config.clone(),
            preprocess: PreprocessConfig::symmetric(16),
            tokenizer,
            decoder_tokenizer: None,
            answers: Vec::new(),
        };
        saved::save_meta(&old, &meta).unwrap();
        let mut store = BurnpackStore::from_file(old.join(saved::WEIGHTS_FILE))
            .with_to_adapter(FirstFormatNames)
            .overwrite(true);
        model.save_into(&mut store).unwrap();
        // The first format's config: no version, the ViT's settings as `vision`.
        let path = old.join(saved::CONFIG_FILE);
        let mut json: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let fields = json.as_object_mut().unwrap();
        fields.remove("format_version");
        let vit = fields["vision"]["Vit"].clone();
        fields.insert("vision".into(), vit);
        for added in [
            "image_width",
            "text_pooling",
            "itc_residual",
            "mim",
            "lock_image",
            "lock_text",
            "decoder_vocabulary",
            "text_max_len",
        ] {
            fields.remove(added);
        }
        std::fs::write(&path, json.to_string()).unwrap();

        let err = SavedModel::load(&old, &device).err().unwrap().to_string();
        assert!(err.contains("edgevlm models upgrade"), "{err}");

        let new = root.path().join("new");
        let done = upgrade(&old, Some(&new), &device).unwrap();
        assert_eq!(done.layout, "synthetic-scene");
        let loaded = SavedModel::load(&new, &device).unwrap();
        assert_eq!(max_difference(&model, &loaded.model).unwrap(), 0.0);
        assert!(
            old.join(saved::CONFIG_FILE).is_file(),
            "with --out the old folder stays"
        );

        // In place, the old folder is kept beside the converted one.
        let done = upgrade(&old, None, &device).unwrap();
        assert!(done.backup.ends_with("old.format1"));
        SavedModel::load(&old, &device).unwrap();
        let again = upgrade(&old, None, &device).err().unwrap().to_string();
        assert!(again.contains("nothing to upgrade"), "{again}");
    }
}

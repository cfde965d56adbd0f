//! `edgevlm join`: one model folder from two fine-tunings of the same pretrained
//! model that trained disjoint parts.
//!
//! Captioning trains the vision encoder and the decoder; the spatial VQA head
//! trains the text encoder, the grid and itself, and reads neither of the other
//! two. So VQA started from the pretrained model, joined with the caption model's
//! vision and decoder, is the model VQA started from the caption model would give,
//! and the two fine-tunings can run side by side (one core each: this CPU backend
//! gains little from a second thread on these small matrices).

use std::path::Path;

use burn::tensor::Device;
use serde::Serialize;

use super::saved::{save_meta, SavedModel};
use crate::error::{Error, Result};
use crate::model::weights::save_model_atomic;

/// Writes to `out` the model in `base` with `parts` (vision, text, fusion, decoder,
/// grid) taken from `donor`. Both must share the tokenizer, the preprocessing and
/// the configuration of every part taken, or nothing is written.
pub fn join(base: &Path, donor: &Path, parts: &[String], out: &Path, device: &Device) -> Result<()> {
    let mut joined = SavedModel::load(base, device)?;
    let other = SavedModel::load(donor, device)?;
    let tokenizers = [base, donor].map(|dir| {
        let path = dir.join("tokenizer.json");
        std::fs::read(&path).map_err(|e| Error::io(&path, e))
    });
    let [ours, theirs] = tokenizers;
    if ours? != theirs? {
        return Err(mismatch(donor, "tokenizer.json", base));
    }
    same(
        &joined.meta.preprocess,
        &other.meta.preprocess,
        donor,
        "preprocess.json",
        base,
    )?;
    let (model, taken) = (&mut joined.model, other.model);
    for part in parts {
        let (a, b) = (&joined.meta.config, &other.meta.config);
        match part.as_str() {
            "vision" => {
                same(&a.vision, &b.vision, donor, "vision", base)?;
                model.vision = taken.vision.clone();
            }
            "text" => {
                same(&a.text, &b.text, donor, "text", base)?;
                model.text = taken.text.clone();
            }
            "fusion" => {
                same(&a.fusion, &b.fusion, donor, "fusion", base)?;
                model.fusion = taken.fusion.clone();
            }
            "decoder" => {
                same(&a.decoder, &b.decoder, donor, "decoder", base)?;
                model.decoder = taken.decoder.clone();
            }
            "grid" => {
                if b.grid.is_none() {
                    return Err(Error::record(donor, "has no grid encoder to take"));
                }
                same(&a.grid, &b.grid, donor, "grid", base)?;
                model.grid = taken.grid.clone();
            }
            other => {
                return Err(Error::Invalid(format!(
                    "unknown model part `{other}`: expected vision, text, fusion, decoder or grid"
                )))
            }
        }
    }
    save_meta(out, &joined.meta)?;
    save_model_atomic(&joined.model, &out.join("model.bpk"))
}

fn same<T: Serialize>(a: &T, b: &T, donor: &Path, what: &str, base: &Path) -> Result<()> {
    let json = |v: &T| serde_json::to_value(v).expect("plain config data");
    if json(a) == json(b) {
        Ok(())
    } else {
        Err(mismatch(donor, what, base))
    }
}

fn mismatch(donor: &Path, what: &str, base: &Path) -> Error {
    Error::record(
        donor,
        format!(
            "its {what} differs from that of {}: join fine-tunings of one pretrained model",
            base.display()
        ),
    )
}

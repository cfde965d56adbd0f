//! Named parts of a model that a run keeps frozen (`TrainConfig::freeze`) or
//! trains more slowly (`TrainConfig::slow`).

use burn::module::{list_param_ids, Module, ParamId};

use super::EdgeVlm;
use crate::error::{Error, Result};

/// A model whose named parts a run can keep frozen (`TrainConfig::freeze`) or
/// train more slowly (`TrainConfig::slow`).
pub trait Freeze: Module + Sized {
    fn freeze_parts(self, parts: &[String]) -> Result<Self>;
    /// The parameters of the named parts.
    fn part_params(&self, parts: &[String]) -> Result<Vec<ParamId>>;
}

impl Freeze for EdgeVlm {
    fn freeze_parts(self, parts: &[String]) -> Result<Self> {
        apply_freeze(self, parts)
    }

    fn part_params(&self, parts: &[String]) -> Result<Vec<ParamId>> {
        let mut ids = Vec::new();
        for part in parts {
            ids.extend(match part.as_str() {
                "vision" => list_param_ids(&self.vision),
                "text" => list_param_ids(&self.text),
                "fusion" => list_param_ids(&self.fusion),
                "decoder" => list_param_ids(&self.decoder),
                "grid" => list_param_ids(&self.grid),
                other => return Err(unknown_part(other)),
            });
        }
        Ok(ids)
    }
}

fn unknown_part(part: &str) -> Error {
    Error::Invalid(format!(
        "unknown model part `{part}`: expected vision, text, fusion, decoder or grid"
    ))
}

fn apply_freeze(mut model: EdgeVlm, parts: &[String]) -> Result<EdgeVlm> {
    for part in parts {
        match part.as_str() {
            "vision" => model.vision = model.vision.freeze(),
            "text" => model.text = model.text.freeze(),
            "fusion" => model.fusion = model.fusion.freeze(),
            "decoder" => model.decoder = model.decoder.freeze(),
            "grid" => model.grid = model.grid.map(|grid| grid.freeze()),
            other => return Err(unknown_part(other)),
        }
    }
    Ok(model)
}

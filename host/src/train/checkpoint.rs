//! Checkpoints that survive a kill -9 at any instant.
//!
//! A checkpoint is a folder (`model.bpk`, `optim.bpk`, `state.json`) written under a
//! temporary name, synced, then renamed into place; the previous one is moved aside
//! first and removed last, so at every moment one complete checkpoint exists.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::{ModuleOptimizer, OptimizerRecord};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::weights::sync;
pub use crate::model::weights::{load_model, save_model_atomic, write_synced};

pub const CHECKPOINT: &str = "checkpoint";
const STAGING: &str = "checkpoint.tmp";
const PREVIOUS: &str = "checkpoint.old";

/// Where training stands.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps completed.
    pub step: usize,
}

/// Writes model, optimizer and state as the run's checkpoint.
pub fn save<M: Module>(run: &Path, model: &M, optim: &ModuleOptimizer, state: TrainState) -> Result<()> {
    let staging = run.join(STAGING);
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    }
    fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    let model_path = staging.join("model.bpk");
    model
        .clone()
        .save_file(&model_path)
        .map_err(|e| Error::record(&model_path, e))?;
    let optim_path = staging.join("optim.bpk");
    optim
        .to_record()
        .save(&optim_path)
        .map_err(|e| Error::record(&optim_path, e))?;
    write_synced(
        &staging.join("state.json"),
        &serde_json::to_vec(&state).expect("plain data"),
    )?;
    for f in ["model.bpk", "optim.bpk"] {
        sync(&staging.join(f))?;
    }
    sync(&staging)?;

    promote(run)
}

fn complete(dir: &Path) -> bool {
    dir.join("state.json").is_file()
}

/// Makes the synced staging folder the checkpoint. The previous checkpoint is
/// removed only once a complete one is in place for good (renamed and the run
/// folder synced): after a crash between the two renames, `checkpoint.old` is the
/// only complete checkpoint, and the next save must keep it until it has another.
fn promote(run: &Path) -> Result<()> {
    let (staging, current, previous) = (run.join(STAGING), run.join(CHECKPOINT), run.join(PREVIOUS));
    let remove = |dir: &Path| match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(dir, e)),
        _ => Ok(()),
    };
    if complete(&current) {
        remove(&previous)?;
        fs::rename(&current, &previous).map_err(|e| Error::io(&current, e))?;
    } else {
        // Never complete (renames are atomic), so nothing to keep.
        remove(&current)?;
    }
    fs::rename(&staging, &current).map_err(|e| Error::io(&staging, e))?;
    sync(run)?;
    remove(&previous)
}

/// The newest complete checkpoint folder, if any (falls back to the one moved aside
/// when a crash came between the two renames).
pub fn latest(run: &Path) -> Option<PathBuf> {
    [CHECKPOINT, PREVIOUS]
        .iter()
        .map(|name| run.join(name))
        .find(|dir| dir.join("state.json").is_file())
}

/// Loads a checkpoint into `model` (built from the run's config) and `optim`.
pub fn load<M: Module>(
    dir: &Path,
    model: M,
    optim: ModuleOptimizer,
) -> Result<(M, ModuleOptimizer, TrainState)> {
    let state_path = dir.join("state.json");
    let text = fs::read(&state_path).map_err(|e| Error::io(&state_path, e))?;
    let state: TrainState = serde_json::from_slice(&text).map_err(|e| Error::record(&state_path, e))?;
    let model = load_model(&dir.join("model.bpk"), model)?;
    let optim_path = dir.join("optim.bpk");
    let record = OptimizerRecord::load(&optim_path).map_err(|e| Error::record(&optim_path, e))?;
    Ok((model, optim.load_record(record), state))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint_at(dir: &Path, step: usize) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("state.json"), format!("{{\"step\":{step}}}")).unwrap();
    }

    /// A crash between the two renames left only `checkpoint.old`; the next save
    /// failing before its own rename must not take that one with it.
    #[test]
    fn the_only_complete_checkpoint_survives_a_failed_save() {
        let run = tempfile::tempdir().unwrap();
        checkpoint_at(&run.path().join(PREVIOUS), 7);
        // No staging folder: the rename into place fails.
        assert!(promote(run.path()).is_err());
        assert_eq!(latest(run.path()), Some(run.path().join(PREVIOUS)));

        checkpoint_at(&run.path().join(STAGING), 9);
        promote(run.path()).unwrap();
        assert_eq!(latest(run.path()), Some(run.path().join(CHECKPOINT)));
        assert!(!run.path().join(PREVIOUS).exists());

        checkpoint_at(&run.path().join(STAGING), 11);
        promote(run.path()).unwrap();
        let state = fs::read_to_string(run.path().join(CHECKPOINT).join("state.json")).unwrap();
        assert_eq!(state, "{\"step\":11}");
        assert!(!run.path().join(PREVIOUS).exists() && !run.path().join(STAGING).exists());
    }
}

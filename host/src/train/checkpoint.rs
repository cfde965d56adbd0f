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

use super::error::{Result, TrainError};

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
        fs::remove_dir_all(&staging).map_err(|e| TrainError::io(&staging, e))?;
    }
    fs::create_dir_all(&staging).map_err(|e| TrainError::io(&staging, e))?;
    let model_path = staging.join("model.bpk");
    model
        .clone()
        .save_file(&model_path)
        .map_err(|e| TrainError::record(&model_path, e))?;
    let optim_path = staging.join("optim.bpk");
    optim
        .to_record()
        .save(&optim_path)
        .map_err(|e| TrainError::record(&optim_path, e))?;
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
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(TrainError::io(dir, e)),
        _ => Ok(()),
    };
    if complete(&current) {
        remove(&previous)?;
        fs::rename(&current, &previous).map_err(|e| TrainError::io(&current, e))?;
    } else {
        // Never complete (renames are atomic), so nothing to keep.
        remove(&current)?;
    }
    fs::rename(&staging, &current).map_err(|e| TrainError::io(&staging, e))?;
    sync(run)?;
    remove(&previous)
}

/// Saves a model's weights to `path` so that a crash leaves the old file or the
/// new one: a staging file of its own, synced, renamed, then the folder synced.
pub fn save_model_atomic<M: Module>(model: &M, path: &Path) -> Result<()> {
    let mut staging = path.as_os_str().to_owned();
    staging.push(".tmp");
    let staging = PathBuf::from(staging);
    model
        .clone()
        .save_file(&staging)
        .map_err(|e| TrainError::record(&staging, e))?;
    sync(&staging)?;
    fs::rename(&staging, path).map_err(|e| TrainError::io(path, e))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    sync(dir)
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
    let text = fs::read(&state_path).map_err(|e| TrainError::io(&state_path, e))?;
    let state: TrainState = serde_json::from_slice(&text).map_err(|e| TrainError::record(&state_path, e))?;
    let model = load_model(&dir.join("model.bpk"), model)?;
    let optim_path = dir.join("optim.bpk");
    let record = OptimizerRecord::load(&optim_path).map_err(|e| TrainError::record(&optim_path, e))?;
    Ok((model, optim.load_record(record), state))
}

/// Loads model weights, naming the file on any mismatch.
pub fn load_model<M: Module>(path: &Path, model: M) -> Result<M> {
    if !path.is_file() {
        return Err(TrainError::record(path, "no such model file"));
    }
    model.try_load_file(path).map_err(|e| TrainError::record(path, e))
}

pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = fs::File::create(path).map_err(|e| TrainError::io(path, e))?;
    f.write_all(bytes).map_err(|e| TrainError::io(path, e))?;
    f.sync_all().map_err(|e| TrainError::io(path, e))
}

/// Flushes a file or a folder (its entries, after renames) to disk.
fn sync(path: &Path) -> Result<()> {
    fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| TrainError::io(path, e))
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

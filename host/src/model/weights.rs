//! Model weights on disk (burnpack): loaded naming the file on any mismatch, and
//! written so that a crash leaves the old file or the new one, never half of one.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;

use crate::error::{Error, Result};

/// Saves a model's weights to `path` so that a crash leaves the old file or the
/// new one: a staging file of its own, synced, renamed, then the folder synced.
pub fn save_model_atomic<M: Module>(model: &M, path: &Path) -> Result<()> {
    let mut staging = path.as_os_str().to_owned();
    staging.push(".tmp");
    let staging = PathBuf::from(staging);
    model
        .clone()
        .save_file(&staging)
        .map_err(|e| Error::record(&staging, e))?;
    sync(&staging)?;
    fs::rename(&staging, path).map_err(|e| Error::io(path, e))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    sync(dir)
}

/// Loads model weights, naming the file on any mismatch.
pub fn load_model<M: Module>(path: &Path, model: M) -> Result<M> {
    if !path.is_file() {
        return Err(Error::record(path, "no such model file"));
    }
    model.try_load_file(path).map_err(|e| Error::record(path, e))
}

pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = fs::File::create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

/// Flushes a file or a folder (its entries, after renames) to disk.
pub(crate) fn sync(path: &Path) -> Result<()> {
    fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(path, e))
}

/// A tensor's values as f32, read back from its device.
pub fn floats(data: burn::tensor::TensorData) -> Result<Vec<f32>> {
    data.try_to_vec::<f32>()
        .map_err(|e| Error::Invalid(format!("tensor readback: {e:?}")))
}

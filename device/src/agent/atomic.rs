//! Files of the state folder replaced so that a crash leaves the old file or the
//! new one, never a mix: write a staging copy, fsync it, rename it over, fsync
//! the folder.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::slots::{io, AgentError};

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AgentError> {
    write_atomic_mode(path, bytes, 0o644)
}

/// `model.bundle.tmp`, not `model.tmp`: every file gets a staging name of its
/// own, so writing one never removes or replaces another's half-written copy.
fn staging_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    name.into()
}

pub(super) fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AgentError> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = staging_path(path);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_file_of_a_slot_stages_under_its_own_name() {
        let slot = Path::new("state/slots/a");
        let names: std::collections::BTreeSet<PathBuf> = ["model.bundle", "model.sig", "edgevlm-device"]
            .iter()
            .map(|f| staging_path(&slot.join(f)))
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert_eq!(
            staging_path(&slot.join("model.bundle")),
            slot.join("model.bundle.tmp")
        );
    }
}

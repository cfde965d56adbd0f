//! The anti-rollback floor: `STATE/min_version`, the version of the newest model
//! ever activated here. It lives on its own, so deleting a slot's signature or a
//! trusted key cannot make an older bundle look new; it is only ever raised, and
//! written atomically. A read-only root keeps it with the trusted keys.

use std::path::{Path, PathBuf};

use super::atomic::write_atomic;
use super::slots::AgentError;

pub const FLOOR_FILE: &str = "min_version";

/// Longest floor file read: one decimal u64 and a newline.
const MAX_FLOOR_LEN: u64 = 32;

pub struct VersionFloor {
    path: PathBuf,
}

impl VersionFloor {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join(FLOOR_FILE),
        }
    }

    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The floor: 0 when the file has never been written. A file that exists but
    /// does not hold a number fails closed (no install until it is fixed), since
    /// treating it as 0 would reopen every downgrade.
    pub fn get(&self) -> Result<u64, AgentError> {
        use std::io::Read;
        let mut text = String::new();
        match std::fs::File::open(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(source) => {
                return Err(AgentError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
            Ok(f) => f
                .take(MAX_FLOOR_LEN)
                .read_to_string(&mut text)
                .map_err(|source| AgentError::Io {
                    path: self.path.clone(),
                    source,
                })?,
        };
        text.trim()
            .parse()
            .map_err(|_| AgentError::Floor(self.path.clone(), format!("{:?}", text.trim())))
    }

    /// Raises the floor to `version`; a lower or equal `version` changes nothing.
    pub fn raise(&self, version: u64) -> Result<(), AgentError> {
        if version > self.get()? {
            write_atomic(&self.path, format!("{version}\n").as_bytes())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_only_rises_and_a_damaged_file_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let floor = VersionFloor::new(dir.path());
        assert_eq!(floor.get().unwrap(), 0);
        floor.raise(3).unwrap();
        floor.raise(2).unwrap();
        assert_eq!(floor.get().unwrap(), 3);
        assert_eq!(std::fs::read_to_string(floor.path()).unwrap(), "3\n");
        std::fs::write(floor.path(), "garbage").unwrap();
        let err = floor.get().unwrap_err().to_string();
        assert!(err.contains(FLOOR_FILE) && err.contains("garbage"), "{err}");
        assert!(floor.raise(9).is_err());
    }
}

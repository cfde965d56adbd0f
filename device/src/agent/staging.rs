//! `STATE/staging/`: partial transfers kept for resuming, named by the sha256
//! of the bundle they will become. Bounded: one transfer at a time per bundle,
//! and a new transfer removes every other idle part, so a peer that walks away
//! leaves at most one bundle's worth of bytes behind. Anything else found there
//! (a stray file, a leftover `.tmp`) is removed when the agent starts.

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::slots::AgentError;

pub struct Staging {
    dir: PathBuf,
    /// Bundles whose parts a connection is writing now.
    busy: Mutex<HashSet<[u8; 32]>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_part_name(name: &str) -> bool {
    name.strip_suffix(".part")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AgentError + '_ {
    move |source| AgentError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One transfer's part file, held by one connection until dropped.
pub struct Part<'a> {
    staging: &'a Staging,
    sha256: [u8; 32],
    pub path: PathBuf,
    file: std::fs::File,
    /// Bytes the part holds.
    pub held: u64,
}

impl Staging {
    /// Opens `dir`, removing whatever is not a part file.
    pub fn open(dir: &Path) -> Result<Self, AgentError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        for entry in std::fs::read_dir(dir).map_err(io(dir))?.flatten() {
            let name = entry.file_name();
            if !name.to_str().is_some_and(is_part_name) {
                let path = entry.path();
                let removed = match entry.file_type() {
                    Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
                    _ => std::fs::remove_file(&path),
                };
                removed.map_err(io(&path))?;
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            busy: Mutex::new(HashSet::new()),
        })
    }

    /// The part for the bundle `sha256` of `size` bytes, or `None` when another
    /// connection is writing it. Every other part nobody is writing is removed.
    pub fn begin(&self, sha256: [u8; 32], size: u64) -> Result<Option<Part<'_>>, AgentError> {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        if busy.contains(&sha256) {
            return Ok(None);
        }
        let path = self.dir.join(format!("{}.part", hex(&sha256)));
        for entry in std::fs::read_dir(&self.dir).map_err(io(&self.dir))?.flatten() {
            let other = entry.path();
            let in_use = busy.iter().any(|s| other.ends_with(format!("{}.part", hex(s))));
            if other != path && !in_use {
                std::fs::remove_file(&other).map_err(io(&other))?;
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        let mut held = file.metadata().map_err(io(&path))?.len();
        if held > size {
            file.set_len(0).map_err(io(&path))?;
            held = 0;
        }
        busy.insert(sha256);
        Ok(Some(Part {
            staging: self,
            sha256,
            path,
            file,
            held,
        }))
    }
}

impl Part<'_> {
    /// sha256 of the bytes held.
    pub fn prefix_sha256(&mut self) -> Result<[u8; 32], AgentError> {
        let path = self.path.clone();
        self.file.seek(SeekFrom::Start(0)).map_err(io(&path))?;
        let mut hasher = Sha256::new();
        let mut reader = (&mut self.file).take(self.held);
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = reader.read(&mut buf).map_err(io(&path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hasher.finalize().into())
    }

    /// Drops what is held: its bytes were not the sender's.
    pub fn discard(&mut self) -> Result<(), AgentError> {
        self.file.set_len(0).map_err(io(&self.path))?;
        self.held = 0;
        Ok(())
    }

    /// Appends `data`, durable before it is acknowledged.
    pub fn append(&mut self, data: &[u8]) -> Result<(), AgentError> {
        let path = self.path.clone();
        self.file.seek(SeekFrom::Start(self.held)).map_err(io(&path))?;
        self.file.write_all(data).map_err(io(&path))?;
        self.file.sync_data().map_err(io(&path))?;
        self.held += data.len() as u64;
        Ok(())
    }

    /// Every byte held, for the install.
    pub fn read_all(&mut self) -> Result<Vec<u8>, AgentError> {
        let path = self.path.clone();
        self.file.seek(SeekFrom::Start(0)).map_err(io(&path))?;
        let mut bytes = Vec::with_capacity(self.held as usize);
        (&mut self.file)
            .take(self.held)
            .read_to_end(&mut bytes)
            .map_err(io(&path))?;
        Ok(bytes)
    }

    /// Removes the part: installed, or refused for good.
    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for Part<'_> {
    fn drop(&mut self) {
        let mut busy = self.staging.busy.lock().unwrap_or_else(|p| p.into_inner());
        busy.remove(&self.sha256);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_keeps_one_idle_part_and_cleans_strays() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("junk.bin"), b"x").unwrap();
        std::fs::write(dir.path().join(format!("{}.part.tmp", hex(&[1; 32]))), b"x").unwrap();
        let staging = Staging::open(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        let mut first = staging.begin([1; 32], 10).unwrap().unwrap();
        first.append(b"hello").unwrap();
        assert!(staging.begin([1; 32], 10).unwrap().is_none(), "in use");
        // A second bundle while the first is being written: both exist.
        let second = staging.begin([2; 32], 10).unwrap().unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        drop(second);
        drop(first);
        // A third removes both idle ones.
        let third = staging.begin([3; 32], 10).unwrap().unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        drop(third);

        let mut again = staging.begin([3; 32], 4).unwrap().unwrap();
        again.append(b"abcd").unwrap();
        assert_eq!(
            again.prefix_sha256().unwrap(),
            <[u8; 32]>::from(Sha256::digest(b"abcd"))
        );
        drop(again);
        // Held more than the bundle's size: a stale part, started over.
        let again = staging.begin([3; 32], 2).unwrap().unwrap();
        assert_eq!(again.held, 0);
    }
}

//! Reading and writing the bundle file, with every check a truncated, corrupt or
//! foreign file needs to fail clearly.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{FileEntry, FileKind, Manifest, FORMAT_VERSION, MAGIC};

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: not an edgevlm bundle (expected the magic bytes \"EDGEVLMB\" at the start)")]
    NotABundle { origin: String },
    #[error(
        "{origin}: bundle format {found} is not supported (this build reads format {supported}); \
         export the model again with the edgevlm of this release"
    )]
    Version {
        origin: String,
        found: u32,
        supported: u32,
    },
    #[error("{origin}: truncated: {what} needs bytes {start}..{end} but the bundle has {len} bytes")]
    Truncated {
        origin: String,
        what: String,
        start: u64,
        end: u64,
        len: u64,
    },
    #[error("{origin}: malformed manifest: {reason}")]
    Manifest { origin: String, reason: String },
    #[error("{origin}: file `{file}` fails its sha256 check (corrupt or tampered)")]
    Checksum { origin: String, file: String },
    #[error("{origin}: the bundle has no file `{file}`")]
    MissingFile { origin: String, file: String },
}

/// Where [`Bundle::parse`] reads from: a byte slice, or a file read piece by piece.
pub(super) trait Pieces {
    fn len(&self) -> u64;
    /// Bytes `start..end`, which the caller has checked lie within [`Self::len`];
    /// asked for in ascending order.
    fn piece(&mut self, start: u64, end: u64) -> std::io::Result<Vec<u8>>;
    /// The sha256 of bytes `start..end`, for a file the reader does not keep.
    fn checksum(&mut self, start: u64, end: u64) -> std::io::Result<[u8; 32]> {
        Ok(sha256(&self.piece(start, end)?))
    }
}

impl Pieces for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn piece(&mut self, start: u64, end: u64) -> std::io::Result<Vec<u8>> {
        Ok(self[start as usize..end as usize].to_vec())
    }
}

struct FilePieces {
    file: std::fs::File,
    len: u64,
}

impl Pieces for FilePieces {
    fn len(&self) -> u64 {
        self.len
    }
    fn piece(&mut self, start: u64, end: u64) -> std::io::Result<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        self.file.seek(SeekFrom::Start(start))?;
        let mut out = vec![0; (end - start) as usize];
        self.file.read_exact(&mut out)?;
        Ok(out)
    }
    fn checksum(&mut self, start: u64, end: u64) -> std::io::Result<[u8; 32]> {
        use std::io::{Read, Seek, SeekFrom};
        self.file.seek(SeekFrom::Start(start))?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut (&mut self.file).take(end - start), &mut hasher)?;
        Ok(hasher.finalize().into())
    }
}

/// A parse failure: the bundle is wrong, or reading it failed.
pub(super) enum PieceError {
    Bundle(BundleError),
    Io(std::io::Error),
}

impl From<BundleError> for PieceError {
    fn from(e: BundleError) -> Self {
        PieceError::Bundle(e)
    }
}

impl From<std::io::Error> for PieceError {
    fn from(e: std::io::Error) -> Self {
        PieceError::Io(e)
    }
}

impl PieceError {
    pub(super) fn with_path(self, path: &Path) -> BundleError {
        match self {
            PieceError::Bundle(e) => e,
            PieceError::Io(source) => BundleError::Io {
                path: path.to_path_buf(),
                source,
            },
        }
    }
}

/// A bundle in memory: the manifest and the bytes of each file.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    pub manifest: Manifest,
    files: BTreeMap<String, Vec<u8>>,
    origin: String,
}

/// Magic, format version, manifest length, manifest sha256.
const HEADER: usize = 8 + 4 + 4 + 32;

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl Bundle {
    /// Lays out `files` after the manifest; `manifest.files` is filled in here.
    pub fn new(mut manifest: Manifest, files: Vec<(String, FileKind, Vec<u8>)>) -> Self {
        let mut offset = 0u64;
        manifest.files = files
            .iter()
            .map(|(name, kind, bytes)| {
                let entry = FileEntry {
                    name: name.clone(),
                    kind: *kind,
                    offset,
                    len: bytes.len() as u64,
                    sha256: sha256(bytes),
                };
                offset += bytes.len() as u64;
                entry
            })
            .collect();
        manifest.format_version = FORMAT_VERSION;
        Self {
            manifest,
            files: files.into_iter().map(|(name, _, bytes)| (name, bytes)).collect(),
            origin: "<memory>".into(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let manifest = postcard::to_stdvec(&self.manifest).expect("manifest serializes");
        let payload: u64 = self.manifest.files.iter().map(|f| f.len).sum();
        let mut out = Vec::with_capacity(HEADER + manifest.len() + payload as usize);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(manifest.len() as u32).to_le_bytes());
        out.extend_from_slice(&sha256(&manifest));
        out.extend_from_slice(&manifest);
        for entry in &self.manifest.files {
            out.extend_from_slice(&self.files[&entry.name]);
        }
        out
    }

    /// Writes atomically: a temporary file beside `path`, fsync, rename, fsync of
    /// the folder. A crash leaves the old file or the new one, never a mix.
    pub fn write(&self, path: &Path) -> Result<(), BundleError> {
        let io = |source| BundleError::Io {
            path: path.to_path_buf(),
            source,
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        tmp.write_all(&self.to_bytes()).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
                .map_err(io)?;
        }
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    pub fn read(path: &Path) -> Result<Self, BundleError> {
        Self::read_keeping(path, None)
    }

    /// [`Self::read`], keeping only the named files: every file is still checked
    /// against its sha256, but the others are never held.
    pub fn read_only(path: &Path, keep: &[&str]) -> Result<Self, BundleError> {
        Self::read_keeping(path, Some(keep))
    }

    fn read_keeping(path: &Path, keep: Option<&[&str]>) -> Result<Self, BundleError> {
        let io = |source| BundleError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        Self::parse(FilePieces { file, len }, &path.display().to_string(), keep)
            .map_err(|e| e.with_path(path))
    }

    /// Parses and verifies a bundle; `origin` names it in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self, BundleError> {
        Self::parse(bytes, origin, None).map_err(|e| e.with_path(Path::new(origin)))
    }

    /// Parses and verifies a bundle piece by piece: each file's bytes are read once,
    /// into the buffer the bundle keeps (a file on disk is never held twice), and
    /// only once its place is known to lie inside the bundle. With `keep`, files not
    /// named are checked and not kept.
    pub(super) fn parse(
        mut source: impl Pieces,
        origin: &str,
        keep: Option<&[&str]>,
    ) -> Result<Self, PieceError> {
        let len = source.len();
        let truncated = |what: &str, start: u64, end: u64| BundleError::Truncated {
            origin: origin.into(),
            what: what.into(),
            start,
            end,
            len,
        };
        let header = source.piece(0, (HEADER as u64).min(len))?;
        if header.len() < 8 || header[..8] != MAGIC {
            return Err(BundleError::NotABundle {
                origin: origin.into(),
            }
            .into());
        }
        if header.len() < HEADER {
            return Err(truncated("the header", 0, HEADER as u64).into());
        }
        let word = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
        let version = word(8);
        if version != FORMAT_VERSION {
            return Err(BundleError::Version {
                origin: origin.into(),
                found: version,
                supported: FORMAT_VERSION,
            }
            .into());
        }
        let manifest_end = HEADER as u64 + u64::from(word(12));
        if manifest_end > len {
            return Err(truncated("the manifest", HEADER as u64, manifest_end).into());
        }
        let manifest_bytes = source.piece(HEADER as u64, manifest_end)?;
        if sha256(&manifest_bytes)[..] != header[16..HEADER] {
            return Err(BundleError::Checksum {
                origin: origin.into(),
                file: "manifest".into(),
            }
            .into());
        }
        let manifest: Manifest =
            postcard::from_bytes(&manifest_bytes).map_err(|e| BundleError::Manifest {
                origin: origin.into(),
                reason: e.to_string(),
            })?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(BundleError::Version {
                origin: origin.into(),
                found: manifest.format_version,
                supported: FORMAT_VERSION,
            }
            .into());
        }
        let layout = |reason: String| BundleError::Manifest {
            origin: origin.into(),
            reason,
        };
        let mut files = BTreeMap::new();
        let mut listed = std::collections::BTreeSet::new();
        let mut expected_offset = 0u64;
        for entry in &manifest.files {
            // The one layout the writer produces: files back to back, in order.
            if entry.offset != expected_offset {
                return Err(layout(format!(
                    "file `{}` at offset {}, expected {expected_offset} (files follow each other)",
                    entry.name, entry.offset
                ))
                .into());
            }
            if let Some(problem) = super::names::name_problem(&entry.name) {
                return Err(layout(format!("file name {:?} refused: {problem}", entry.name)).into());
            }
            if !listed.insert(entry.name.as_str()) {
                return Err(layout(format!("file `{}` is listed twice", entry.name)).into());
            }
            expected_offset = expected_offset.saturating_add(entry.len);
            let start = manifest_end.saturating_add(entry.offset);
            let end = start.saturating_add(entry.len);
            if end > len {
                return Err(truncated(&format!("file `{}`", entry.name), start, end).into());
            }
            let kept = keep.is_none_or(|names| names.contains(&entry.name.as_str()));
            let (data, checksum) = if kept {
                let data = source.piece(start, end)?;
                let checksum = sha256(&data);
                (Some(data), checksum)
            } else {
                (None, source.checksum(start, end)?)
            };
            if checksum != entry.sha256 {
                return Err(BundleError::Checksum {
                    origin: origin.into(),
                    file: entry.name.clone(),
                }
                .into());
            }
            if let Some(data) = data {
                files.insert(entry.name.clone(), data);
            }
        }
        manifest.validate().map_err(layout)?;
        let end = manifest_end.saturating_add(expected_offset);
        if len > end {
            return Err(layout(format!("{} stray bytes after the last file", len - end)).into());
        }
        Ok(Self {
            manifest,
            files,
            origin: origin.into(),
        })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn file(&self, name: &str) -> Result<&[u8], BundleError> {
        self.files
            .get(name)
            .map(Vec::as_slice)
            .ok_or_else(|| BundleError::MissingFile {
                origin: self.origin.clone(),
                file: name.into(),
            })
    }

    /// Every file with its kind, in manifest order (to rebuild a bundle).
    pub fn entries(&self) -> Vec<(String, FileKind, Vec<u8>)> {
        self.manifest
            .files
            .iter()
            .map(|f| (f.name.clone(), f.kind, self.files[&f.name].clone()))
            .collect()
    }

    pub fn has_file(&self, name: &str) -> bool {
        self.files.contains_key(name)
    }

    /// Moves a file's bytes out (a loader that parses each file once keeps no
    /// second copy of the bundle in memory).
    pub fn take_file(&mut self, name: &str) -> Result<Vec<u8>, BundleError> {
        self.files.remove(name).ok_or_else(|| BundleError::MissingFile {
            origin: self.origin.clone(),
            file: name.into(),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests;

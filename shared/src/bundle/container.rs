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
    #[error("{origin}: bundle format {found} is not supported (this build reads format {supported})")]
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
        let bytes = std::fs::read(path).map_err(|source| BundleError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Parses and verifies a bundle; `origin` names it in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self, BundleError> {
        let len = bytes.len() as u64;
        let truncated = |what: &str, start: usize, end: usize| BundleError::Truncated {
            origin: origin.into(),
            what: what.into(),
            start: start as u64,
            end: end as u64,
            len,
        };
        if bytes.len() < 8 || bytes[..8] != MAGIC {
            return Err(BundleError::NotABundle {
                origin: origin.into(),
            });
        }
        if bytes.len() < HEADER {
            return Err(truncated("the header", 0, HEADER));
        }
        let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let version = word(8);
        if version != FORMAT_VERSION {
            return Err(BundleError::Version {
                origin: origin.into(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let manifest_end = HEADER + word(12) as usize;
        let manifest_bytes = bytes
            .get(HEADER..manifest_end)
            .ok_or_else(|| truncated("the manifest", HEADER, manifest_end))?;
        if sha256(manifest_bytes)[..] != bytes[16..HEADER] {
            return Err(BundleError::Checksum {
                origin: origin.into(),
                file: "manifest".into(),
            });
        }
        let manifest: Manifest = postcard::from_bytes(manifest_bytes).map_err(|e| BundleError::Manifest {
            origin: origin.into(),
            reason: e.to_string(),
        })?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(BundleError::Version {
                origin: origin.into(),
                found: manifest.format_version,
                supported: FORMAT_VERSION,
            });
        }
        let layout = |reason: String| BundleError::Manifest {
            origin: origin.into(),
            reason,
        };
        let mut files = BTreeMap::new();
        let mut expected_offset = 0u64;
        for entry in &manifest.files {
            // The one layout the writer produces: files back to back, in order.
            if entry.offset != expected_offset {
                return Err(layout(format!(
                    "file `{}` at offset {}, expected {expected_offset} (files follow each other)",
                    entry.name, entry.offset
                )));
            }
            if let Some(problem) = super::names::name_problem(&entry.name) {
                return Err(layout(format!("file name {:?} refused: {problem}", entry.name)));
            }
            if files.contains_key(&entry.name) {
                return Err(layout(format!("file `{}` is listed twice", entry.name)));
            }
            expected_offset = expected_offset.saturating_add(entry.len);
            let start = manifest_end.saturating_add(entry.offset as usize);
            let end = start.saturating_add(entry.len as usize);
            let data = bytes
                .get(start..end)
                .ok_or_else(|| truncated(&format!("file `{}`", entry.name), start, end))?;
            if sha256(data) != entry.sha256 {
                return Err(BundleError::Checksum {
                    origin: origin.into(),
                    file: entry.name.clone(),
                });
            }
            files.insert(entry.name.clone(), data.to_vec());
        }
        let end = manifest_end.saturating_add(expected_offset as usize);
        if bytes.len() > end {
            return Err(layout(format!(
                "{} stray bytes after the last file",
                bytes.len() - end
            )));
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{DecoderSpec, WeightStorage};
    use crate::config::PreprocessConfig;

    fn sample() -> Bundle {
        let manifest = Manifest {
            format_version: 0,
            name: "t".into(),
            model_version: 3,
            created: 0,
            weights: WeightStorage::F32,
            preprocess: PreprocessConfig::imagenet(64),
            max_text_len: 32,
            answers: vec!["yes".into(), "no".into()],
            decoder: DecoderSpec {
                layers: 1,
                heads: 2,
                d_head: 4,
                max_len: 8,
                vocab: 10,
            },
            files: vec![],
            selftest: None,
        };
        Bundle::new(
            manifest,
            vec![
                ("a.onnx".into(), FileKind::Graph, vec![1, 2, 3]),
                ("tokenizer.json".into(), FileKind::Tokenizer, b"{}".to_vec()),
            ],
        )
    }

    #[test]
    fn round_trips_and_lists_each_file() {
        let b = sample();
        let back = Bundle::from_bytes(&b.to_bytes(), "x").unwrap();
        assert_eq!(back.manifest, b.manifest);
        assert_eq!(back.file("a.onnx").unwrap(), &[1, 2, 3]);
        assert_eq!(back.manifest.files[1].offset, 3);
        assert!(matches!(back.file("nope"), Err(BundleError::MissingFile { .. })));
    }

    #[test]
    fn every_truncation_and_any_flipped_byte_is_refused() {
        let bytes = sample().to_bytes();
        for cut in 0..bytes.len() {
            let err = Bundle::from_bytes(&bytes[..cut], "b").unwrap_err();
            assert!(
                matches!(
                    err,
                    BundleError::NotABundle { .. } | BundleError::Truncated { .. }
                ),
                "cut at {cut}: {err}"
            );
        }
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            assert!(
                Bundle::from_bytes(&bad, "b").is_err(),
                "flip at byte {at} accepted"
            );
        }
        let mut payload = bytes.clone();
        let last = payload.len() - 1;
        payload[last] ^= 1;
        let err = Bundle::from_bytes(&payload, "b.bundle").unwrap_err();
        assert_eq!(
            err.to_string(),
            "b.bundle: file `tokenizer.json` fails its sha256 check (corrupt or tampered)"
        );
        let mut version = bytes;
        version[8] = 9;
        assert!(matches!(
            Bundle::from_bytes(&version, "b"),
            Err(BundleError::Version { found: 9, .. })
        ));
    }

    /// A manifest re-signed after editing, as an attacker or a buggy writer could.
    fn with_manifest(bundle: &Bundle, edit: impl Fn(&mut Manifest), trailing: &[u8]) -> Vec<u8> {
        let mut manifest = bundle.manifest.clone();
        edit(&mut manifest);
        let mut out = bundle.to_bytes();
        let old_len = u32::from_le_bytes(out[12..16].try_into().unwrap()) as usize;
        let body = postcard::to_stdvec(&manifest).unwrap();
        out.splice(HEADER..HEADER + old_len, body.iter().copied());
        out[12..16].copy_from_slice(&(body.len() as u32).to_le_bytes());
        out[16..HEADER].copy_from_slice(&sha256(&body));
        out.extend_from_slice(trailing);
        out
    }

    /// Found by the `bundle_manifest` fuzzer: a file table with gaps, overlaps or
    /// repeated names read back, but could not be written back the same way.
    #[test]
    fn only_the_layout_the_writer_produces_is_read() {
        let b = sample();
        let reason = |bytes: Vec<u8>| Bundle::from_bytes(&bytes, "b").unwrap_err().to_string();
        let gap = with_manifest(&b, |m| m.files[1].offset = 4, b"x");
        assert!(reason(gap).contains("file `tokenizer.json` at offset 4, expected 3"));
        let twice = with_manifest(
            &b,
            |m| {
                m.files[1].name = "a.onnx".into();
                m.files[1].len = 3;
                m.files[1].sha256 = sha256(&[1, 2, 3]);
            },
            &[1, 2, 3],
        );
        assert!(reason(twice).contains("listed twice"));
        let stray = with_manifest(&b, |_| {}, b"??");
        assert!(reason(stray).contains("2 stray bytes after the last file"));
    }

    /// A signed-looking bundle whose file names climb out of the folder a reader
    /// unpacks into is refused before any byte of it is used.
    #[test]
    fn unsafe_file_names_are_refused_at_parse_time() {
        let b = sample();
        for name in [
            "../evil.onnx",
            "/etc/cron.d/x",
            "a\\..\\b",
            "firmware/../../x",
            "deep/er/x",
            "",
        ] {
            let bytes = with_manifest(&b, |m| m.files[0].name = name.into(), &[]);
            let err = Bundle::from_bytes(&bytes, "evil.bundle").unwrap_err().to_string();
            assert!(
                err.starts_with("evil.bundle: malformed manifest: file name") && err.contains("refused"),
                "{name:?}: {err}"
            );
        }
    }
}

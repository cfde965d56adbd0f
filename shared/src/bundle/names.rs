//! What a file inside a bundle may be called. Readers join these names onto
//! folders (`edgevlm-device unpack`, a slot), so a crafted manifest must not be
//! able to name anything outside: only plain relative names, at most one folder
//! deep and only in a folder this format knows.

use std::path::{Path, PathBuf};

use super::{Bundle, BundleError, FileKind};

/// The folders a bundle may put files in ([`super::FIRMWARE_FILE`] lives in one).
pub const KNOWN_FOLDERS: &[&str] = &["firmware"];

/// Longest name accepted, in bytes (file systems stop at 255 per component).
pub const MAX_NAME_LEN: usize = 255;

/// Why `name` may not name a file in a bundle, if it may not.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("the name is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Some(format!("the name is longer than {MAX_NAME_LEN} bytes"));
    }
    if name.starts_with('/') {
        return Some("absolute names are not allowed".into());
    }
    if name.contains('\\') {
        return Some("backslashes are not allowed (use `/` between a folder and a file)".into());
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Some(format!("control character {:?} in the name", c));
    }
    let parts: Vec<&str> = name.split('/').collect();
    if let Some(part) = parts.iter().find(|p| p.is_empty() || **p == "." || **p == "..") {
        return Some(format!(
            "`{part}` is not a file or folder name (no empty, `.` or `..` components)"
        ));
    }
    match parts.as_slice() {
        [_] => None,
        [folder, _] if KNOWN_FOLDERS.contains(folder) => None,
        [folder, _] => Some(format!(
            "unknown folder `{folder}` (known: {})",
            KNOWN_FOLDERS.join(", ")
        )),
        _ => Some("more than one folder level".into()),
    }
}

/// `dir` joined with a bundle file name that passed [`name_problem`]; `None`
/// for any other name, so a caller can never be talked into leaving `dir`.
pub fn path_in(dir: &Path, name: &str) -> Option<PathBuf> {
    if name_problem(name).is_some() {
        return None;
    }
    Some(name.split('/').fold(dir.to_path_buf(), |p, part| p.join(part)))
}

impl Bundle {
    /// Writes every file under `dir` (creating its known folders) and returns
    /// the paths written; firmware is made executable.
    pub fn unpack(&self, dir: &Path) -> Result<Vec<PathBuf>, BundleError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BundleError::Io { path, source }
        };
        let mut written = Vec::new();
        for entry in &self.manifest.files {
            // `from_bytes` refused bad names already; a bundle built in memory may
            // still carry one.
            let path = path_in(dir, &entry.name).ok_or_else(|| BundleError::Manifest {
                origin: self.origin().into(),
                reason: format!(
                    "file name {:?} refused: {}",
                    entry.name,
                    name_problem(&entry.name).unwrap_or_default()
                ),
            })?;
            let parent = path.parent().unwrap_or(dir);
            std::fs::create_dir_all(parent).map_err(io(parent))?;
            // A link planted in the folder would carry the write elsewhere.
            for p in [parent, path.as_path()] {
                if p != dir && p.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
                    return Err(BundleError::Io {
                        path: p.to_path_buf(),
                        source: std::io::Error::other("a symbolic link: refusing to write through it"),
                    });
                }
            }
            std::fs::write(&path, self.file(&entry.name)?).map_err(io(&path))?;
            #[cfg(unix)]
            if entry.kind == FileKind::Firmware {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).map_err(io(&path))?;
            }
            written.push(path);
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::container::tests::bundle_of;

    #[test]
    fn plain_names_and_the_firmware_folder_pass() {
        for name in [
            "image_encoder.onnx",
            "tokenizer.json",
            "MODEL_CARD.md",
            "my photo.png",
            "firmware/edgevlm-device",
        ] {
            assert_eq!(name_problem(name), None, "{name}");
        }
        assert_eq!(
            path_in(Path::new("/out"), "firmware/edgevlm-device").unwrap(),
            Path::new("/out/firmware/edgevlm-device")
        );
    }

    #[test]
    fn names_that_could_leave_the_folder_are_refused() {
        for name in [
            "",
            "..",
            ".",
            "../x",
            "firmware/../../etc/passwd",
            "/etc/passwd",
            "a\\b",
            "..\\..\\x",
            "firmware//x",
            "firmware/",
            "a/b",
            "firmware/a/b",
            "x\0y",
            "x\ny",
        ] {
            assert!(name_problem(name).is_some(), "{name:?} accepted");
            assert!(path_in(Path::new("out"), name).is_none(), "{name:?} joined");
        }
        assert!(name_problem(&"a".repeat(MAX_NAME_LEN + 1)).is_some());
    }

    /// Firmware bundles failed to unpack: `firmware/` was never created.
    #[test]
    fn unpack_creates_the_firmware_folder_and_stays_inside() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let b = bundle_of(vec![
            ("a.onnx".into(), FileKind::Graph, vec![1]),
            (
                crate::bundle::FIRMWARE_FILE.into(),
                FileKind::Firmware,
                b"\x7fELF".to_vec(),
            ),
        ]);
        let b = Bundle::from_bytes(&b.to_bytes(), "fw.bundle").unwrap();
        let written = b.unpack(&out).unwrap();
        assert_eq!(
            written,
            vec![out.join("a.onnx"), out.join("firmware/edgevlm-device")]
        );
        assert_eq!(
            std::fs::read(out.join("firmware/edgevlm-device")).unwrap(),
            b"\x7fELF"
        );

        let evil = bundle_of(vec![("../escaped".into(), FileKind::Graph, vec![1])]);
        let err = evil.unpack(&out).unwrap_err().to_string();
        assert!(err.contains("\"../escaped\" refused"), "{err}");
        assert!(!dir.path().join("escaped").exists());

        // Links planted in the folder, to a file or in place of `firmware/`,
        // do not carry the writes outside it.
        #[cfg(unix)]
        {
            let victim = dir.path().join("victim");
            std::fs::write(&victim, b"keep").unwrap();
            let again = tempfile::tempdir().unwrap();
            std::os::unix::fs::symlink(&victim, again.path().join("a.onnx")).unwrap();
            let err = b.unpack(again.path()).unwrap_err().to_string();
            assert!(err.contains("symbolic link"), "{err}");
            assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
            let third = tempfile::tempdir().unwrap();
            std::os::unix::fs::symlink(dir.path(), third.path().join("firmware")).unwrap();
            let err = b.unpack(third.path()).unwrap_err().to_string();
            assert!(err.contains("symbolic link"), "{err}");
            assert!(!dir.path().join("edgevlm-device").exists());
        }
    }
}

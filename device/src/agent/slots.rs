use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use edgevlm_shared::bundle::signature::{self, KeyError};
use edgevlm_shared::bundle::{Bundle, BundleError, FIRMWARE_FILE};

use super::firmware::{self, FirmwareError};

use crate::runtime::{Runtime, RuntimeError};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("{0}")]
    Key(#[from] KeyError),
    #[error(
        "refused: model version {offered} is not newer than the installed {installed} (downgrade or replay)"
    )]
    NotNewer { offered: u64, installed: u64 },
    #[error("refused: the bundle fails on this device: {0}")]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Firmware(#[from] FirmwareError),
    #[error("{0}: differs from the firmware its bundle carries")]
    FirmwareMismatch(PathBuf),
    #[error("{0}: no trusted keys (add ed25519 public keys as trusted/*.pub)")]
    NoTrustedKeys(PathBuf),
    #[error("no slot holds a valid model: {0}")]
    NoValidSlot(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AgentError + '_ {
    move |source| AgentError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn name(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct InstallReport {
    pub slot: Slot,
    pub name: String,
    pub model_version: u64,
    pub selftest_caption: String,
}

pub struct State {
    pub dir: PathBuf,
    trusted: Vec<VerifyingKey>,
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AgentError> {
    write_atomic_mode(path, bytes, 0o644)
}

/// `model.bundle.tmp`, not `model.tmp`: every file gets a staging name of its
/// own, so writing one never removes or replaces another's half-written copy.
fn staging_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    name.into()
}

fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AgentError> {
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

impl State {
    /// Opens (creating the folders of) a state directory and reads its trusted keys.
    pub fn open(dir: &Path) -> Result<Self, AgentError> {
        for sub in ["trusted", "slots/a", "slots/b", "staging"] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).map_err(io(&p))?;
        }
        let trusted_dir = dir.join("trusted");
        let mut keys = Vec::new();
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&trusted_dir)
            .map_err(io(&trusted_dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "pub"))
            .collect();
        entries.sort();
        for p in entries {
            // One bad file (a truncated copy, a stray note) must not take the
            // agent down with every good key; it is named so it gets fixed.
            match signature::load_verifying_key(&p) {
                Ok(key) => keys.push(key),
                Err(e) => eprintln!("agent: skipping a trusted key: {e}"),
            }
        }
        if keys.is_empty() {
            return Err(AgentError::NoTrustedKeys(trusted_dir));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            trusted: keys,
        })
    }

    pub fn slot_dir(&self, slot: Slot) -> PathBuf {
        self.dir.join("slots").join(slot.name())
    }

    pub fn bundle_path(&self, slot: Slot) -> PathBuf {
        self.slot_dir(slot).join("model.bundle")
    }

    /// Where a slot keeps the firmware its bundle carried.
    pub fn firmware_path(&self, slot: Slot) -> PathBuf {
        self.slot_dir(slot).join("edgevlm-device")
    }

    /// The executable that runs a slot's model: its own firmware when its bundle
    /// carried one, otherwise `None` (the installed binary).
    pub fn executable(&self, slot: Slot) -> Option<PathBuf> {
        Some(self.firmware_path(slot)).filter(|p| p.is_file())
    }

    /// The slot `active` names (A when the file is missing or unreadable).
    pub fn active(&self) -> Slot {
        match std::fs::read_to_string(self.dir.join("active"))
            .as_deref()
            .map(str::trim)
        {
            Ok("b") => Slot::B,
            _ => Slot::A,
        }
    }

    fn set_active(&self, slot: Slot) -> Result<(), AgentError> {
        write_atomic(&self.dir.join("active"), format!("{}\n", slot.name()).as_bytes())
    }

    /// Reads, verifies (checksums + signature) and self-tests one slot.
    pub fn check(&self, slot: Slot) -> Result<(Bundle, Runtime), AgentError> {
        let path = self.bundle_path(slot);
        let sig_path = self.slot_dir(slot).join("model.sig");
        let sig = std::fs::read(&sig_path).map_err(io(&sig_path))?;
        // One read: the bytes whose signature holds are the bytes parsed, and
        // nothing unsigned reaches the parser.
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        signature::verify(&bytes, &sig, &self.trusted)?;
        let bundle = Bundle::from_bytes(&bytes, &path.display().to_string())?;
        let runtime = Runtime::from_bundle(&bundle)?;
        runtime.selftest()?;
        if bundle.has_file(FIRMWARE_FILE) {
            let exe = self.firmware_path(slot);
            let on_disk = std::fs::read(&exe).map_err(io(&exe))?;
            if on_disk != bundle.file(FIRMWARE_FILE)? {
                return Err(AgentError::FirmwareMismatch(exe));
            }
            firmware::selftest(&exe, &path)?;
        }
        Ok((bundle, runtime))
    }

    /// Loads a bundle kept outside the slots (`run` with `bundle =` beside an
    /// [agent] section) only if `BUNDLE.sig` holds a trusted key's signature
    /// over the very bytes loaded.
    pub fn load_signed(&self, path: &Path) -> Result<Runtime, AgentError> {
        let mut sig_path = path.as_os_str().to_owned();
        sig_path.push(".sig");
        let sig_path = PathBuf::from(sig_path);
        let sig = std::fs::read(&sig_path).map_err(io(&sig_path))?;
        let bytes = std::fs::read(path).map_err(io(path))?;
        signature::verify(&bytes, &sig, &self.trusted)?;
        let bundle = Bundle::from_bytes(&bytes, &path.display().to_string())?;
        drop(bytes);
        Ok(Runtime::from_owned(bundle)?)
    }

    /// The model to run at start: the active slot, or the other one (made active)
    /// when the active one fails to load or self-test.
    pub fn select(&self) -> Result<(Slot, Runtime, Option<String>), AgentError> {
        let active = self.active();
        match self.check(active) {
            Ok((_, runtime)) => Ok((active, runtime, None)),
            Err(first) => match self.check(active.other()) {
                Ok((_, runtime)) => {
                    self.set_active(active.other())?;
                    let note = format!(
                        "slot {} failed ({first}); rolled back to slot {}",
                        active.name(),
                        active.other().name()
                    );
                    Ok((active.other(), runtime, Some(note)))
                }
                Err(second) => Err(AgentError::NoValidSlot(format!(
                    "slot {}: {first}; slot {}: {second}",
                    active.name(),
                    active.other().name()
                ))),
            },
        }
    }

    /// The version of the model that runs now, if any slot is valid.
    pub fn installed_version(&self) -> Option<u64> {
        self.select()
            .ok()
            .map(|(_, runtime, _)| runtime.manifest.model_version)
    }

    /// Installs a signed bundle: verify everything, write the inactive slot, then
    /// switch. Nothing the running model needs is touched before the switch.
    pub fn install(&self, bytes: &[u8], sig: &[u8]) -> Result<InstallReport, AgentError> {
        // The signature first: only trusted bytes reach the parser.
        signature::verify(bytes, sig, &self.trusted)?;
        let bundle = Bundle::from_bytes(bytes, "received bundle")?;
        let firmware = match bundle.has_file(FIRMWARE_FILE) {
            true => Some(bundle.file(FIRMWARE_FILE)?),
            false => None,
        };
        if let Some(binary) = firmware {
            firmware::check_architecture(binary)?;
        }
        let current = self.select().ok();
        if let Some((_, runtime, _)) = &current {
            let installed = runtime.manifest.model_version;
            if bundle.manifest.model_version <= installed {
                return Err(AgentError::NotNewer {
                    offered: bundle.manifest.model_version,
                    installed,
                });
            }
        }
        let runtime = Runtime::from_bundle(&bundle)?;
        let report = runtime.selftest()?;
        let target = match &current {
            Some((slot, _, _)) => slot.other(),
            None => self.active(),
        };
        // The signature first: a slot with a new bundle and an old signature fails
        // its check at start and is never chosen.
        let sig_path = self.slot_dir(target).join("model.sig");
        write_atomic(&sig_path, sig)?;
        let exe = self.firmware_path(target);
        match firmware {
            Some(binary) => write_atomic_mode(&exe, binary, 0o755)?,
            None => match std::fs::remove_file(&exe) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&exe)(e)),
                _ => {}
            },
        }
        write_atomic(&self.bundle_path(target), bytes)?;
        if firmware.is_some() {
            if let Err(e) = firmware::selftest(&exe, &self.bundle_path(target)) {
                // Never a fallback candidate: without its signature the slot fails its check.
                let _ = std::fs::remove_file(&sig_path);
                return Err(e.into());
            }
        }
        self.set_active(target)?;
        Ok(InstallReport {
            slot: target,
            name: bundle.manifest.name.clone(),
            model_version: bundle.manifest.model_version,
            selftest_caption: report.caption,
        })
    }
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

    #[test]
    fn a_malformed_trusted_key_is_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let trusted = dir.path().join("trusted");
        std::fs::create_dir_all(&trusted).unwrap();
        std::fs::write(trusted.join("0-broken.pub"), "not a key\n").unwrap();
        let key = signature::generate().unwrap();
        signature::save(&key, &trusted, "good").unwrap();
        std::fs::remove_file(trusted.join("good.key")).unwrap();
        let state = State::open(dir.path()).unwrap();
        assert_eq!(state.trusted, vec![key.verifying_key()]);

        // Unsigned bytes never reach the bundle parser: garbage with a wrong
        // signature is refused for its signature, in an install and at start.
        let garbage = b"EDGEVLMB\x01\0\0\0\xff\xff\xff\xff not a bundle";
        let err = state.install(garbage, &[0u8; 64]).err().unwrap();
        assert!(matches!(err, AgentError::Key(KeyError::Untrusted)), "{err}");
        std::fs::write(state.bundle_path(Slot::A), garbage).unwrap();
        std::fs::write(state.slot_dir(Slot::A).join("model.sig"), [0u8; 64]).unwrap();
        let err = state.check(Slot::A).err().unwrap();
        assert!(matches!(err, AgentError::Key(KeyError::Untrusted)), "{err}");

        // The same for a bundle outside the slots: no signature, no load.
        let loose = dir.path().join("loose.bundle");
        std::fs::write(&loose, garbage).unwrap();
        let err = state.load_signed(&loose).err().unwrap().to_string();
        assert!(err.contains("loose.bundle.sig"), "{err}");
        std::fs::write(dir.path().join("loose.bundle.sig"), [7u8; 64]).unwrap();
        let err = state.load_signed(&loose).err().unwrap();
        assert!(matches!(err, AgentError::Key(KeyError::Untrusted)), "{err}");

        std::fs::remove_file(trusted.join("good.pub")).unwrap();
        assert!(matches!(
            State::open(dir.path()),
            Err(AgentError::NoTrustedKeys(_))
        ));
    }
}

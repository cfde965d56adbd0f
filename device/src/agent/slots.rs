use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use edgevlm_shared::bundle::signature::{self, KeyError};
use edgevlm_shared::bundle::{sha256, Bundle, BundleError, FIRMWARE_FILE};

use super::atomic::{write_atomic, write_atomic_mode};
use super::board::{Board, InstallReport, Slot, SlotStatus};
use super::firmware::{self, FirmwareError};
use super::trust::{trusted_keys, verified_chunks};
use super::version_floor::VersionFloor;

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
    #[error("{0}: expected the decimal version of the newest model installed, found {1} (fix or restore it; installs stay refused until then)")]
    Floor(PathBuf, String),
    #[error("{0}: the state folder stays locked by another process")]
    Locked(PathBuf),
}

pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AgentError + '_ {
    move |source| AgentError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub struct State {
    pub dir: PathBuf,
    trusted: Vec<VerifyingKey>,
    floor: VersionFloor,
    board: Board,
}

/// A slot that fails its check at start gets one more try after this pause
/// before the board rolls back for good (a card that was slow to wake, a
/// self-test that met a busy core).
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// Longest wait for another process's install to finish.
const LOCK_WAIT: Duration = Duration::from_secs(300);

impl State {
    /// Opens (creating the folders of) this board's state directory and reads
    /// its trusted keys.
    pub fn open(dir: &Path) -> Result<Self, AgentError> {
        Self::open_for(dir, Board::this())
    }

    /// Opens the state directory of `board`, which may be another machine's
    /// (a card mounted here).
    pub fn open_for(dir: &Path, board: Board) -> Result<Self, AgentError> {
        for sub in ["trusted", "slots/a", "slots/b", "staging"] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).map_err(io(&p))?;
        }
        let keys = trusted_keys(&dir.join("trusted"))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            trusted: keys,
            floor: VersionFloor::new(dir),
            board,
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

    /// The anti-rollback floor: no install at or below it.
    pub fn min_version(&self) -> Result<u64, AgentError> {
        self.floor.get()
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

    /// Runs `f` holding the state folder's lock, so two processes (the agent and
    /// an `install`, or two agents) never write the slots at once.
    fn locked<T>(&self, f: impl FnOnce() -> Result<T, AgentError>) -> Result<T, AgentError> {
        let path = self.dir.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        let until = Instant::now() + LOCK_WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(std::fs::TryLockError::WouldBlock) => return Err(AgentError::Locked(path)),
                Err(std::fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
            }
        }
        // The lock goes with the file when `file` drops.
        f()
    }

    /// A slot's bundle, its signature checked over the very bytes parsed.
    pub fn verified(&self, slot: Slot) -> Result<Bundle, AgentError> {
        self.verified_only(slot, None)
    }

    /// [`Self::verified`], keeping only the files named in `keep` (all with `None`).
    pub fn verified_only(&self, slot: Slot, keep: Option<&[&str]>) -> Result<Bundle, AgentError> {
        let path = self.bundle_path(slot);
        let sig_path = self.slot_dir(slot).join("model.sig");
        let sig = std::fs::read(&sig_path).map_err(io(&sig_path))?;
        verified_chunks(&path, &sig, &self.trusted, keep)
    }

    /// Reads, verifies (checksums + signature) and self-tests one slot.
    pub fn check(&self, slot: Slot) -> Result<Runtime, AgentError> {
        let mut bundle = self.verified(slot)?;
        let carried = if bundle.has_file(FIRMWARE_FILE) {
            Some(bundle.take_file(FIRMWARE_FILE)?)
        } else {
            None
        };
        // The loader takes each graph's bytes as it builds it, so the bundle is
        // never held whole beside the plans.
        let runtime = Runtime::from_owned(bundle)?;
        runtime.selftest()?;
        if let Some(carried) = carried {
            let exe = self.firmware_path(slot);
            let on_disk = std::fs::read(&exe).map_err(io(&exe))?;
            if on_disk != carried {
                return Err(AgentError::FirmwareMismatch(exe));
            }
            if self.board.run_firmware {
                firmware::selftest(&exe, &self.bundle_path(slot))?;
            }
        }
        Ok(runtime)
    }

    /// The firmware to start a slot with, opened and matched against the
    /// signed bundle's copy now, at launch: `None` when the bundle carries none
    /// (a file planted in the slot is never run).
    pub fn firmware_to_run(&self, slot: Slot, bundle: &Bundle) -> Result<Option<std::fs::File>, AgentError> {
        let exe = self.firmware_path(slot);
        if !bundle.has_file(FIRMWARE_FILE) {
            if exe.exists() {
                eprintln!(
                    "start: ignoring {}: slot {}'s signed bundle carries no firmware",
                    exe.display(),
                    slot.name()
                );
            }
            return Ok(None);
        }
        let mut file = std::fs::File::open(&exe).map_err(io(&exe))?;
        let mut on_disk = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut on_disk).map_err(io(&exe))?;
        if sha256(&on_disk) != sha256(bundle.file(FIRMWARE_FILE)?) {
            return Err(AgentError::FirmwareMismatch(exe));
        }
        Ok(Some(file))
    }

    /// The keys bundles must be signed by.
    pub fn trusted(&self) -> &[VerifyingKey] {
        &self.trusted
    }

    /// The active slot's model after its check, retried once; only when it fails
    /// twice does the board roll back to the other slot (made active). Also
    /// raises the anti-rollback floor to the running version, which an install
    /// cut off between its switch and its floor write left behind.
    pub fn select(&self) -> Result<(Slot, Runtime, Option<String>), AgentError> {
        let active = self.active();
        let first = match self.check(active) {
            Ok(found) => return self.started(active, found, None),
            Err(first) => first,
        };
        std::thread::sleep(RETRY_PAUSE);
        if let Ok(found) = self.check(active) {
            return self.started(active, found, None);
        }
        match self.check(active.other()) {
            Ok(found) => {
                self.locked(|| self.set_active(active.other()))?;
                let note = format!(
                    "slot {} failed twice ({first}); rolled back to slot {}",
                    active.name(),
                    active.other().name()
                );
                self.started(active.other(), found, Some(note))
            }
            Err(second) => Err(AgentError::NoValidSlot(format!(
                "slot {}: {first}; slot {}: {second}",
                active.name(),
                active.other().name()
            ))),
        }
    }

    fn started(
        &self,
        slot: Slot,
        runtime: Runtime,
        note: Option<String>,
    ) -> Result<(Slot, Runtime, Option<String>), AgentError> {
        let version = runtime.manifest.model_version;
        if slot == self.active() && version > self.floor.get()? {
            self.locked(|| self.floor.raise(version))?;
        }
        Ok((slot, runtime, note))
    }

    /// The slot `start` would run and its version, found without writing anything.
    fn running(&self) -> Option<(Slot, u64)> {
        let active = self.active();
        [active, active.other()].into_iter().find_map(|slot| {
            self.check(slot)
                .ok()
                .map(|runtime| (slot, runtime.manifest.model_version))
        })
    }

    /// What the active slot holds (or the other, when the active one fails its
    /// signature), without running a model or changing anything: a status
    /// query must never be able to trigger a rollback.
    pub fn status(&self) -> Result<SlotStatus, AgentError> {
        let active = self.active();
        let found = self.verified(active).map(|b| (active, b)).or_else(|first| {
            self.verified(active.other())
                .map(|b| (active.other(), b))
                .map_err(|second| {
                    AgentError::NoValidSlot(format!(
                        "slot {}: {first}; slot {}: {second}",
                        active.name(),
                        active.other().name()
                    ))
                })
        })?;
        let (slot, bundle) = found;
        Ok(SlotStatus {
            slot,
            name: bundle.manifest.name.clone(),
            model_version: bundle.manifest.model_version,
        })
    }

    /// Installs a signed bundle: verify everything, write the inactive slot, then
    /// switch and raise the floor. Nothing the running model needs is touched
    /// before the switch.
    pub fn install(&self, bytes: &[u8], sig: &[u8]) -> Result<InstallReport, AgentError> {
        // The signature first: only trusted bytes reach the parser.
        signature::verify(bytes, sig, &self.trusted)?;
        let bundle = Bundle::from_bytes(bytes, "received bundle")?;
        let firmware = match bundle.has_file(FIRMWARE_FILE) {
            true => Some(bundle.file(FIRMWARE_FILE)?),
            false => None,
        };
        if let Some(binary) = firmware {
            firmware::check_architecture(binary, &self.board.arch)?;
        }
        self.locked(|| {
            let floor = self.floor.get()?;
            let current = self.running();
            let offered = bundle.manifest.model_version;
            // Checked against the floor even when no slot passes its check now (a
            // deleted signature, a removed key), so an old bundle never looks new.
            let installed = current.map_or(floor, |(_, v)| v.max(floor));
            if (current.is_some() || floor > 0) && offered <= installed {
                return Err(AgentError::NotNewer { offered, installed });
            }
            let runtime = Runtime::from_bundle(&bundle)?;
            let report = runtime.selftest()?;
            let target = match current {
                Some((slot, _)) => slot.other(),
                None => self.active(),
            };
            // The signature first: a slot with a new bundle and an old signature
            // fails its check at start and is never chosen.
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
            if firmware.is_some() && self.board.run_firmware {
                if let Err(e) = firmware::selftest(&exe, &self.bundle_path(target)) {
                    // Never a fallback candidate: without its signature the slot fails its check.
                    let _ = std::fs::remove_file(&sig_path);
                    return Err(e.into());
                }
            }
            self.set_active(target)?;
            self.floor.raise(offered)?;
            Ok(InstallReport {
                slot: target,
                name: bundle.manifest.name.clone(),
                model_version: offered,
                selftest_caption: report.caption,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::read_signed;

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
        let err = read_signed(&loose, state.trusted(), None)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("loose.bundle.sig"), "{err}");
        std::fs::write(dir.path().join("loose.bundle.sig"), [7u8; 64]).unwrap();
        let err = read_signed(&loose, state.trusted(), None).err().unwrap();
        assert!(matches!(err, AgentError::Key(KeyError::Untrusted)), "{err}");

        std::fs::remove_file(trusted.join("good.pub")).unwrap();
        assert!(matches!(
            State::open(dir.path()),
            Err(AgentError::NoTrustedKeys(_))
        ));
    }
}

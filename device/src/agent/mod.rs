//! The update agent: installs signed bundles into A/B slots so that the device
//! always has a complete, verified model to start, whatever happens mid-update.
//!
//! ```text
//! STATE/trusted/*.pub      ed25519 keys whose signatures are accepted
//! STATE/slots/{a,b}/       model.bundle + model.sig (+ edgevlm-device when the
//!                          bundle carries firmware), each replaced atomically
//! STATE/active             "a" or "b", replaced atomically (write, fsync, rename)
//! STATE/min_version        the anti-rollback floor, only ever raised
//! STATE/staging/           partial transfers by sha256, kept for resuming
//! STATE/lock               held by whichever process writes the slots
//! ```
//!
//! A new bundle goes to the inactive slot only after its checksums, signature,
//! version (strictly newer than both the running model and the floor: no
//! downgrades, no replays) and golden self-test pass; then `active` flips and the
//! floor rises. At start, a slot that fails its check twice is abandoned for the
//! other one. Firmware in a bundle must match the board's architecture and pass
//! the self-test itself, run as its own process; a slot's executable runs only
//! when its signed bundle carries it, matched again at launch.

mod atomic;
mod board;
mod firmware;
mod gate;
mod server;
mod session;
mod slots;
mod staging;
mod trust;
mod version_floor;

pub use board::{Board, InstallReport, Slot, SlotStatus};
pub use firmware::{elf_architecture, FirmwareError, SELFTEST_LIMIT};
pub use server::{serve, serve_on, serve_serial, Limits, ServerConfig, Timed, Timeouts};
pub use session::{Admitted, Agent, Outcome};
pub use slots::{AgentError, State};
pub use trust::{read_signed, trusted_keys};
pub use version_floor::FLOOR_FILE;

#[cfg(test)]
mod tests;

//! The update agent: installs signed bundles into A/B slots so that the device
//! always has a complete, verified model to start, whatever happens mid-update.
//!
//! ```text
//! STATE/trusted/*.pub      ed25519 keys whose signatures are accepted
//! STATE/slots/{a,b}/       model.bundle + model.sig (+ edgevlm-device when the
//!                          bundle carries firmware), each replaced atomically
//! STATE/active             "a" or "b", replaced atomically (write, fsync, rename)
//! STATE/staging/           partial transfers by sha256, kept for resuming
//! ```
//!
//! A new bundle goes to the inactive slot only after its checksums, signature,
//! version (strictly newer than the active one: no downgrades, no replays) and
//! golden self-test pass; then `active` flips. At start, a slot that fails to load
//! or self-test is abandoned for the other one. Firmware in a bundle must match the
//! board's architecture and pass the self-test itself, run as its own process.

mod firmware;
mod server;
mod slots;

pub use firmware::{elf_architecture, FirmwareError};
pub use server::{serve, serve_serial, ServerConfig};
pub use slots::{AgentError, InstallReport, Slot, State};

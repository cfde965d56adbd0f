//! The update agent: installs signed bundles into A/B slots so that the device
//! always has a complete, verified model to start, whatever happens mid-update.
//!
//! ```text
//! STATE/trusted/*.pub      ed25519 keys whose signatures are accepted
//! STATE/slots/{a,b}/       model.bundle + model.sig, each replaced atomically
//! STATE/active             "a" or "b", replaced atomically (write, fsync, rename)
//! STATE/staging/           partial transfers by sha256, kept for resuming
//! ```
//!
//! A new bundle goes to the inactive slot only after its checksums, signature,
//! version (strictly newer than the active one: no downgrades, no replays) and
//! golden self-test pass; then `active` flips. At start, a slot that fails to load
//! or self-test is abandoned for the other one.

mod server;
mod slots;

pub use server::{serve, ServerConfig};
pub use slots::{AgentError, InstallReport, Slot, State};

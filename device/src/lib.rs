//! edgevlm-device: the firmware side. It shares preprocessing, tokenization, the
//! bundle format and caption search with the trainer through `edgevlm-shared`, and
//! runs the exported graphs with tract; it never links burn.

pub mod agent;
pub mod camera;
pub mod events;
pub mod run;
pub mod runtime;
pub mod trigger;

pub use edgevlm_shared as shared;

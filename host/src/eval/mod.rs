//! Evaluation: standard metrics ([`metrics`]), batched inference ([`predict`]) and
//! the `edgevlm eval` tasks ([`tasks`], [`reasoning`], [`dialog`]).

/// The metrics live in the shared crate: the board reranks captions with CIDEr-D too.
pub use edgevlm_shared::metrics;
pub mod bundle_predictor;
pub mod burn_predictor;
pub mod clips;
pub mod dialog;
pub mod explain;
pub mod predict;
pub mod reasoning;
pub mod tasks;

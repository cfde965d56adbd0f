//! What each `edgevlm` command does, one module per job; `main.rs` parses the
//! command line and calls in here.

pub mod data;
pub mod eval;
pub mod inference;
pub mod models;
pub mod ship;
pub mod training;

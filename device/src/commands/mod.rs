//! What each `edgevlm-device` command does, one module per job; `main.rs` parses
//! the command line and calls in here.

pub mod agent;
pub mod bundle;
pub mod explain;
pub mod inference;
pub mod preprocess;
pub mod run;

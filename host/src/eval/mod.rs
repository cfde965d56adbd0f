//! Evaluation: standard metrics ([`metrics`]), batched inference ([`predict`]) and
//! the `edgevlm eval` tasks ([`tasks`]).

pub mod metrics;
pub mod predict;
pub mod tasks;

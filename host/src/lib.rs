//! edgevlm, the workstation side: datasets, training, evaluation and export of a
//! small vision-language model whose firmware twin is `edgevlm-device`.

pub mod bench;
pub mod data;
pub mod error;
pub mod eval;
pub mod export;
pub mod features;
pub mod flash;
pub mod model;
pub mod recipe;
pub mod train;
pub mod upgrade;

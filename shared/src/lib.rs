//! Shared core of edgevlm: the one definition of what the model sees.
//!
//! The trainer (`edgevlm`) and the firmware (`edgevlm-device`) both call into this
//! crate, so an image or a sentence becomes the same tensor on the workstation and
//! on the board: preprocessing, tokenization, configuration types and the synthetic
//! scene generator live here and nowhere else. No burn or tract types appear here.

pub mod bundle;
pub mod caption;
pub mod config;
pub mod dialog;
pub mod error;
pub mod explain;
pub mod frames;
pub mod metrics;
pub mod preprocess;
pub mod rng;
pub mod search;
pub mod synth;
pub mod tokenizer;
pub mod wire;

pub use config::{PreprocessConfig, TokenizerConfig};
pub use error::{Error, Result};
pub use preprocess::{decode_image, preprocess_file, preprocess_image, ImageTensor};
pub use tokenizer::{EncodedBatch, TextTokenizer};

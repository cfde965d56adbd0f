//! Model bundles: what `edgevlm export` writes and the device loads and flashes.
//!
//! A bundle is one file: an 8-byte magic, the format version (u32, little endian),
//! the manifest's length (u32) and sha256, the manifest (postcard), then the payload: the
//! files the manifest lists, back to back. The manifest records each file's offset,
//! length and sha256, so truncation and tampering are found before anything is used.

mod container;
pub mod io;
pub mod names;
pub mod signature;

pub use container::{sha256, Bundle, BundleError};

use serde::{Deserialize, Serialize};

use crate::config::PreprocessConfig;

pub const MAGIC: [u8; 8] = *b"EDGEVLMB";
/// Bumped when the layout or the manifest changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub name: String,
    /// Monotonic: the update agent refuses a bundle whose version is not newer.
    pub model_version: u64,
    /// Seconds since the Unix epoch at export.
    pub created: u64,
    pub weights: WeightStorage,
    pub preprocess: PreprocessConfig,
    /// Longest token sequence the text encoder takes, special tokens included.
    pub max_text_len: usize,
    /// VQA answer vocabulary, in logit order (empty: no VQA graph).
    pub answers: Vec<String>,
    pub decoder: DecoderSpec,
    pub files: Vec<FileEntry>,
    /// Inputs with the outputs they must give (`edgevlm-device selftest`).
    pub selftest: Option<SelfTest>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WeightStorage {
    F32,
    /// Weights int8, one scale per output channel, dequantized by the graph.
    Int8PerChannel,
}

/// What the device needs to drive the caption decoder's KV cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecoderSpec {
    pub layers: usize,
    pub heads: usize,
    pub d_head: usize,
    /// Longest caption, [CLS] and [SEP] included.
    pub max_len: usize,
    pub vocab: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileKind {
    /// An ONNX graph; its name is one of [`io`]'s graph names.
    Graph,
    /// HF `tokenizer.json`.
    Tokenizer,
    /// Model card (Markdown).
    ModelCard,
    /// The self-test image (PNG).
    SelfTestImage,
    /// A new `edgevlm-device` executable for the board, named [`FIRMWARE_FILE`].
    Firmware,
}

/// Where a bundle carries firmware.
pub const FIRMWARE_FILE: &str = "firmware/edgevlm-device";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub kind: FileKind,
    /// From the start of the payload.
    pub offset: u64,
    pub len: u64,
    pub sha256: [u8; 32],
}

/// The golden outputs of the bundle on its self-test image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelfTest {
    /// Name of a [`FileKind::SelfTestImage`] file.
    pub image: String,
    /// Greedy caption.
    pub caption: String,
    /// (question, expected answer), when the bundle answers questions.
    pub vqa: Option<(String, String)>,
    /// The first values of the image's ITC embedding, compared within `tolerance`.
    pub embedding_head: Vec<f32>,
    pub tolerance: f32,
}

impl Manifest {
    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }
}

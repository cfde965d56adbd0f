//! Model bundles: what `edgevlm export` writes and the device loads and flashes.
//!
//! A bundle is one file: an 8-byte magic, the format version (u32, little endian),
//! the manifest's length (u32) and sha256, the manifest (postcard), then the payload: the
//! files the manifest lists, back to back. The manifest records each file's offset,
//! length and sha256, so truncation and tampering are found before anything is used.

mod chunks;
mod container;
pub mod io;
pub mod names;
pub mod signature;

pub use chunks::Chunks;
pub use container::{sha256, Bundle, BundleError};

use serde::{Deserialize, Serialize};

use crate::config::PreprocessConfig;

pub const MAGIC: [u8; 8] = *b"EDGEVLMB";
/// Bumped when the layout or the manifest changes incompatibly.
pub const FORMAT_VERSION: u32 = 2;

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
    /// How captions are decoded unless the user says otherwise: the beam and the
    /// reranking its trainer chose on held-out data. `None`: greedy.
    pub decoding: Option<crate::caption::Decoding>,
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
    /// HF `tokenizer.json` of the text encoder, named [`TEXT_TOKENIZER_FILE`].
    Tokenizer,
    /// Model card (Markdown).
    ModelCard,
    /// The self-test image (PNG).
    SelfTestImage,
    /// A new `edgevlm-device` executable for the board, named [`FIRMWARE_FILE`].
    Firmware,
    /// HF `tokenizer.json` of a caption decoder with its own vocabulary, named
    /// [`DECODER_TOKENIZER_FILE`]; without one the decoder shares the text encoder's.
    DecoderTokenizer,
    /// Training captions with their ITC embeddings for consensus reranking, named
    /// [`CAPTION_MEMORY_FILE`] (`caption::CaptionMemory::to_bytes`).
    CaptionMemory,
}

pub const TEXT_TOKENIZER_FILE: &str = "tokenizer.json";
pub const DECODER_TOKENIZER_FILE: &str = "decoder_tokenizer.json";
pub const CAPTION_MEMORY_FILE: &str = "caption_memory.bin";

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

/// Upper bounds on the sizes a manifest may claim. Far above any model meant for
/// a board, yet low enough that buffers sized from them cannot exhaust its memory.
pub mod limits {
    /// Side of the square model input, in pixels.
    pub const MAX_IMAGE_SIZE: u32 = 2048;
    /// Tokens of a question or caption.
    pub const MAX_SEQ_LEN: usize = 4096;
    pub const MAX_VOCAB: usize = 1 << 20;
    pub const MAX_LAYERS: usize = 256;
    pub const MAX_HEADS: usize = 256;
    pub const MAX_D_HEAD: usize = 4096;
    /// Beams of a caption search (each costs a decoder row per step).
    pub const MAX_BEAM: usize = 64;
    /// Training captions a reranker compares each candidate with.
    pub const MAX_NEIGHBOURS: usize = 1000;
}

impl Manifest {
    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }

    /// Every size the runtime divides by or allocates from is in range, so a
    /// hostile or broken manifest is an error at load, never a panic later.
    /// The reason names the field.
    pub fn validate(&self) -> Result<(), String> {
        use limits::*;
        let range = |field: &str, value: usize, min: usize, max: usize| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(format!("`{field}` is {value}, expected {min}..={max}"))
            }
        };
        let d = &self.decoder;
        range("decoder.layers", d.layers, 1, MAX_LAYERS)?;
        range("decoder.heads", d.heads, 1, MAX_HEADS)?;
        range("decoder.d_head", d.d_head, 1, MAX_D_HEAD)?;
        // [CLS] and [SEP] at least.
        range("decoder.max_len", d.max_len, 2, MAX_SEQ_LEN)?;
        range("decoder.vocab", d.vocab, 1, MAX_VOCAB)?;
        range("max_text_len", self.max_text_len, 3, MAX_SEQ_LEN)?;
        range(
            "preprocess.image_size",
            self.preprocess.image_size as usize,
            1,
            MAX_IMAGE_SIZE as usize,
        )?;
        self.preprocess.validate().map_err(|e| e.to_string())?;
        if let Some(d) = &self.decoding {
            d.validate()?;
        }
        for f in &self.files {
            let expected = match f.kind {
                FileKind::Tokenizer => TEXT_TOKENIZER_FILE,
                FileKind::DecoderTokenizer => DECODER_TOKENIZER_FILE,
                FileKind::CaptionMemory => CAPTION_MEMORY_FILE,
                FileKind::Firmware => FIRMWARE_FILE,
                FileKind::Graph | FileKind::ModelCard | FileKind::SelfTestImage => continue,
            };
            if f.name != expected {
                return Err(format!(
                    "file `{}` of kind {:?} must be named `{expected}`",
                    f.name, f.kind
                ));
            }
        }
        if let Some(test) = &self.selftest {
            match self.file(&test.image) {
                Some(f) if f.kind == FileKind::SelfTestImage => {}
                _ => {
                    return Err(format!(
                        "`selftest.image` names `{}`, which is not a self-test image of this bundle",
                        test.image
                    ))
                }
            }
            if !(test.tolerance.is_finite() && test.tolerance >= 0.0) {
                return Err(format!(
                    "`selftest.tolerance` is {}, expected a finite number >= 0",
                    test.tolerance
                ));
            }
            if test.embedding_head.iter().any(|v| !v.is_finite()) {
                return Err("`selftest.embedding_head` holds a non-finite value".into());
            }
        }
        Ok(())
    }
}

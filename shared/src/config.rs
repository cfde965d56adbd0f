//! Serde configuration types read by both the trainer and the firmware.
//!
//! They are plain data (no burn, no tract) so a bundle's manifest can carry them
//! to the board unchanged.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How an image becomes the model's input tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreprocessConfig {
    /// Side of the square input, in pixels: the shorter side is resized to this,
    /// then the centre is cropped.
    pub image_size: u32,
    /// Per-channel (R, G, B) mean subtracted after scaling pixels to [0, 1].
    pub mean: [f32; 3],
    /// Per-channel (R, G, B) standard deviation divided by after the mean.
    pub std: [f32; 3],
}

impl PreprocessConfig {
    /// ImageNet statistics, as used by EfficientNet and most ImageNet models.
    pub fn imagenet(image_size: u32) -> Self {
        Self {
            image_size,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }

    /// Scale to [-1, 1]; a neutral choice for encoders trained from scratch.
    pub fn symmetric(image_size: u32) -> Self {
        Self {
            image_size,
            mean: [0.5; 3],
            std: [0.5; 3],
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.image_size == 0 {
            return Err(Error::Config {
                field: "image_size".into(),
                reason: "must be at least 1 pixel".into(),
            });
        }
        if let Some(s) = self.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(Error::Config {
                field: "std".into(),
                reason: format!("every channel must be a positive number, got {s}"),
            });
        }
        if self.mean.iter().any(|m| !m.is_finite()) {
            return Err(Error::Config {
                field: "mean".into(),
                reason: "every channel must be a finite number".into(),
            });
        }
        Ok(())
    }
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        Self::imagenet(224)
    }
}

/// How text becomes token ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenizerConfig {
    /// Vocabulary size targeted when training a WordPiece vocabulary.
    pub vocab_size: usize,
    /// Words seen fewer times than this stay out of the trained vocabulary.
    pub min_frequency: u64,
    /// Sequences are truncated to this many tokens, special tokens included.
    pub max_len: usize,
    /// Lower-case and strip accents before splitting (BERT "uncased").
    pub lowercase: bool,
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        Self {
            vocab_size: 4096,
            min_frequency: 2,
            max_len: 32,
            lowercase: true,
        }
    }
}

impl TokenizerConfig {
    pub fn validate(&self) -> Result<()> {
        if self.max_len < 3 {
            return Err(Error::Config {
                field: "max_len".into(),
                reason: format!(
                    "must leave room for [CLS], [SEP] and one token, got {}",
                    self.max_len
                ),
            });
        }
        if self.vocab_size < crate::tokenizer::SPECIAL_TOKENS.len() + 1 {
            return Err(Error::Config {
                field: "vocab_size".into(),
                reason: format!("must exceed the special tokens, got {}", self.vocab_size),
            });
        }
        Ok(())
    }
}

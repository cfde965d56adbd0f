//! The shared crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the shared core. Each variant names the file or
/// field involved so the binaries can report it without more context.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a decodable image (expected JPEG, PNG or BMP): {reason}")]
    Image { path: PathBuf, reason: String },
    #[error("{what}: expected {expected}, got {got}")]
    Shape {
        what: String,
        expected: String,
        got: String,
    },
    #[error("invalid config field `{field}`: {reason}")]
    Config { field: String, reason: String },
    #[error("tokenizer{}: {reason}", .path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Tokenizer { path: Option<PathBuf>, reason: String },
    #[error("{path}: {reason}")]
    Frames { path: PathBuf, reason: String },
    #[error("{path}: malformed JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

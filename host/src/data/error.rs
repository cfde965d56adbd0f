//! Errors of the dataset loaders.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: malformed JSON at line {line}, column {column}: {reason}")]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("{path}: {reason}")]
    Layout { path: PathBuf, reason: String },
    /// A bad record under `--strict`.
    #[error("{path}, {location}: {reason}")]
    BadRecord {
        path: PathBuf,
        location: String,
        reason: String,
    },
    #[error("{path}: no usable records ({skipped} skipped)")]
    Empty { path: PathBuf, skipped: usize },
    #[error(transparent)]
    Shared(#[from] edgevlm_shared::Error),
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;

impl DataError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn json(path: impl Into<PathBuf>, e: &serde_json::Error) -> Self {
        DataError::Json {
            path: path.into(),
            line: e.line(),
            column: e.column(),
            reason: e.to_string(),
        }
    }

    pub fn layout(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        DataError::Layout {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Reads and parses a whole JSON file, naming the file and position on error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| DataError::json(path, &e))
}

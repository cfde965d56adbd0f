//! The crate's error type: every failure names the file, field or step involved.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Record { path: PathBuf, reason: String },
    #[error(
        "loss became {value} at step {step} ({part}); stopped. The last good checkpoint in {dir} is kept: \
         lower the learning rate or check the data, then --resume"
    )]
    NonFinite {
        step: usize,
        part: String,
        value: f32,
        dir: PathBuf,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Shared(#[from] edgevlm_shared::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn record(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        Error::Record {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}

//! The agent's control token: a shared secret of at least [`MIN_TOKEN_LEN`]
//! bytes, read from a file on both sides (never a command-line argument, which
//! every user of the machine can read in the process list).

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Shortest token accepted: 16 random bytes is the least a LAN guesser cannot
/// enumerate, even without the agent's backoff.
pub const MIN_TOKEN_LEN: usize = 16;
/// Longest token file read: a token is a line, not a document.
pub const MAX_TOKEN_LEN: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("token file {path}: {problem} (expected one line of {MIN_TOKEN_LEN} to {MAX_TOKEN_LEN} bytes, e.g. from `openssl rand -hex 16`)")]
    Format { path: PathBuf, problem: String },
}

/// A token that passed the length rules; compares in time independent of the
/// offered token's content and length.
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

impl Token {
    /// Reads the first line of `path` (a trailing newline is not part of it).
    pub fn read(path: &Path) -> Result<Self, TokenError> {
        let io = |source| TokenError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .map_err(io)?
            .take(MAX_TOKEN_LEN as u64 + 2)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        let format = |problem: String| TokenError::Format {
            path: path.to_path_buf(),
            problem,
        };
        let text = String::from_utf8(bytes).map_err(|_| format("not UTF-8 text".into()))?;
        let token = text.strip_suffix('\n').unwrap_or(&text);
        let token = token.strip_suffix('\r').unwrap_or(token);
        Self::new(token).map_err(format)
    }

    /// Checks the length rules; the error says which one failed.
    pub fn new(token: &str) -> Result<Self, String> {
        if token.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "the token is {} bytes, shorter than {MIN_TOKEN_LEN}",
                token.len()
            ));
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(format!("the token is longer than {MAX_TOKEN_LEN} bytes"));
        }
        if token.contains(['\n', '\r']) {
            return Err("the token spans more than one line".into());
        }
        Ok(Self(token.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `offered` is this token. Fixed-size digests compared in full:
    /// the time taken tells neither how much matched nor how long the token is.
    pub fn matches(&self, offered: &str) -> bool {
        let (a, b) = (
            Sha256::digest(offered.as_bytes()),
            Sha256::digest(self.0.as_bytes()),
        );
        a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_empty_multiline_and_oversized_tokens_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        for (text, says) in [
            ("", "0 bytes"),
            ("\n", "0 bytes"),
            ("fifteen-bytes!!\n", "15 bytes"),
            ("sixteen-bytes-ok\nsecond line\n", "more than one line"),
        ] {
            let path = dir.path().join("token");
            std::fs::write(&path, text).unwrap();
            let err = Token::read(&path).unwrap_err().to_string();
            assert!(err.contains(says) && err.contains("token"), "{text:?}: {err}");
            assert!(err.contains(&path.display().to_string()), "{err}");
        }
        let path = dir.path().join("huge");
        std::fs::write(&path, "x".repeat(10 * MAX_TOKEN_LEN)).unwrap();
        assert!(Token::read(&path).unwrap_err().to_string().contains("longer"));
        let err = Token::read(&dir.path().join("missing")).unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
    }

    #[test]
    fn a_token_matches_itself_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "a-long-enough-secret-token\r\n").unwrap();
        let token = Token::read(&path).unwrap();
        assert!(token.matches("a-long-enough-secret-token"));
        for guess in [
            "",
            "a",
            "a-long-enough-secret-toke",
            "a-long-enough-secret-tokenX",
        ] {
            assert!(!token.matches(guess), "{guess:?}");
        }
        assert_eq!(format!("{token:?}"), "Token(…)");
    }
}

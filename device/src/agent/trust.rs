//! What a board trusts: the ed25519 keys in a folder of `*.pub` files, and
//! bundles signed by one of them (`BUNDLE.sig` beside `BUNDLE`), checked over the
//! very bytes that are then parsed.

use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use edgevlm_shared::bundle::signature;
use edgevlm_shared::bundle::Bundle;

use super::slots::{io, AgentError};
use crate::runtime::Runtime;

/// Every `*.pub` in `dir`; a malformed one (a truncated copy, a stray note) is
/// skipped with a warning naming it, so it cannot take every good key down.
pub fn trusted_keys(dir: &Path) -> Result<Vec<VerifyingKey>, AgentError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pub"))
        .collect();
    entries.sort();
    let mut keys = Vec::new();
    for p in entries {
        match signature::load_verifying_key(&p) {
            Ok(key) => keys.push(key),
            Err(e) => eprintln!("skipping a trusted key: {e}"),
        }
    }
    if keys.is_empty() {
        return Err(AgentError::NoTrustedKeys(dir.to_path_buf()));
    }
    Ok(keys)
}

/// Loads `path` only if `path.sig` holds a signature by one of `keys` over the
/// bytes read; nothing unsigned reaches the parser.
pub fn load_signed(path: &Path, keys: &[VerifyingKey]) -> Result<Runtime, AgentError> {
    let mut sig_path = path.as_os_str().to_owned();
    sig_path.push(".sig");
    let sig_path = PathBuf::from(sig_path);
    let sig = std::fs::read(&sig_path).map_err(io(&sig_path))?;
    let bytes = std::fs::read(path).map_err(io(path))?;
    signature::verify(&bytes, &sig, keys)?;
    let bundle = Bundle::from_bytes(&bytes, &path.display().to_string())?;
    drop(bytes);
    Ok(Runtime::from_owned(bundle)?)
}

//! What a board trusts: the ed25519 keys in a folder of `*.pub` files, and
//! bundles signed by one of them (`BUNDLE.sig` beside `BUNDLE`), checked over the
//! very bytes that are then parsed.

use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use edgevlm_shared::bundle::signature;
use edgevlm_shared::bundle::{Bundle, Chunks};

use super::slots::{io, AgentError};

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

/// Reads `path` only if `path.sig` holds a signature by one of `keys` over the
/// bytes read; nothing unsigned reaches the parser. Only the files named in
/// `keep` are kept (all with `None`), the others checked against their sha256.
pub fn read_signed(path: &Path, keys: &[VerifyingKey], keep: Option<&[&str]>) -> Result<Bundle, AgentError> {
    let mut sig_path = path.as_os_str().to_owned();
    sig_path.push(".sig");
    let sig_path = PathBuf::from(sig_path);
    let sig = std::fs::read(&sig_path).map_err(io(&sig_path))?;
    verified_chunks(path, &sig, keys, keep)
}

/// The bundle at `path`, read once, its signature checked over the bytes read
/// before any is parsed, and parsed from them, never held twice.
pub(super) fn verified_chunks(
    path: &Path,
    sig: &[u8],
    keys: &[VerifyingKey],
    keep: Option<&[&str]>,
) -> Result<Bundle, AgentError> {
    let chunks = Chunks::read(path)?;
    signature::verify_chunks(chunks.iter(), sig, keys)?;
    Ok(chunks.into_bundle(keep)?)
}

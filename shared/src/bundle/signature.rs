//! ed25519 signatures over whole bundle files. Keys are stored as hex text: a
//! secret key file (`NAME.key`, 32-byte seed) and a public key file (`NAME.pub`).

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a key: expected {expected}")]
    Format { path: PathBuf, expected: &'static str },
    #[error("signature does not verify against any trusted key")]
    Untrusted,
    #[error("signature: expected 64 bytes, got {0}")]
    SignatureLength(usize),
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.trim();
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
    }
    Some(out)
}

fn read(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A new signing key from the operating system's randomness.
pub fn generate() -> Result<SigningKey, KeyError> {
    let mut seed = [0u8; 32];
    let path = Path::new("/dev/urandom");
    let mut f = std::fs::File::open(path).map_err(|source| KeyError::Io {
        path: path.into(),
        source,
    })?;
    std::io::Read::read_exact(&mut f, &mut seed).map_err(|source| KeyError::Io {
        path: path.into(),
        source,
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Writes `dir/NAME.key` (owner-only) and `dir/NAME.pub`.
pub fn save(key: &SigningKey, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), KeyError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let secret = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    std::fs::write(&secret, hex_encode(&key.to_bytes()) + "\n").map_err(io(&secret))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).map_err(io(&secret))?;
    }
    std::fs::write(&public, hex_encode(key.verifying_key().as_bytes()) + "\n").map_err(io(&public))?;
    Ok((secret, public))
}

pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    hex_decode::<32>(&read(path)?)
        .map(|b| SigningKey::from_bytes(&b))
        .ok_or(KeyError::Format {
            path: path.into(),
            expected: "64 hex digits (an ed25519 secret key written by `edgevlm keygen`)",
        })
}

pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let format = || KeyError::Format {
        path: path.into(),
        expected: "64 hex digits (an ed25519 public key written by `edgevlm keygen`)",
    };
    let bytes = hex_decode::<32>(&read(path)?).ok_or_else(format)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| format())
}

pub fn sign(bytes: &[u8], key: &SigningKey) -> [u8; 64] {
    key.sign(bytes).to_bytes()
}

/// Index of the trusted key that signed `bytes`.
pub fn verify(bytes: &[u8], signature: &[u8], trusted: &[VerifyingKey]) -> Result<usize, KeyError> {
    let sig: [u8; 64] = signature
        .try_into()
        .map_err(|_| KeyError::SignatureLength(signature.len()))?;
    let sig = Signature::from_bytes(&sig);
    trusted
        .iter()
        .position(|k| k.verify(bytes, &sig).is_ok())
        .ok_or(KeyError::Untrusted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_verifies_and_refuses_other_keys_and_changed_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let key = generate().unwrap();
        let (secret, public) = save(&key, dir.path(), "k").unwrap();
        let key = load_signing_key(&secret).unwrap();
        let trusted = vec![
            generate().unwrap().verifying_key(),
            load_verifying_key(&public).unwrap(),
        ];
        let sig = sign(b"bundle bytes", &key);
        assert_eq!(verify(b"bundle bytes", &sig, &trusted).unwrap(), 1);
        assert!(matches!(
            verify(b"bundle bytez", &sig, &trusted),
            Err(KeyError::Untrusted)
        ));
        assert!(matches!(
            verify(b"bundle bytes", &sig, &trusted[..1]),
            Err(KeyError::Untrusted)
        ));
        assert!(matches!(
            verify(b"x", &sig[..10], &trusted),
            Err(KeyError::SignatureLength(10))
        ));
        std::fs::write(dir.path().join("bad.pub"), "zz").unwrap();
        let err = load_verifying_key(&dir.path().join("bad.pub"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.pub") && err.contains("64 hex digits"), "{err}");
    }
}

//! ed25519 signatures over whole bundle files. Keys are stored as hex text: a
//! secret key file (`NAME.key`, 32-byte seed) and a public key file (`NAME.pub`).

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

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
    #[error("{0}: already exists; refusing to overwrite a key (move it away or pick another name)")]
    Exists(PathBuf),
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

/// Writes `dir/NAME.key` (owner-only) and `dir/NAME.pub`, never over existing
/// files: a second `keygen` with the same name would otherwise orphan every
/// device that trusts the first key.
pub fn save(key: &SigningKey, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), KeyError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let secret = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    for path in [&secret, &public] {
        if path.symlink_metadata().is_ok() {
            return Err(KeyError::Exists(path.clone()));
        }
    }
    write_new(&secret, &(hex_encode(&key.to_bytes()) + "\n"), 0o600)?;
    write_new(
        &public,
        &(hex_encode(key.verifying_key().as_bytes()) + "\n"),
        0o644,
    )?;
    Ok((secret, public))
}

/// Creates `path` with `mode` from the first byte (no window where a secret is
/// world-readable) and fails if it exists, even if it appeared a moment ago.
fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), KeyError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let io = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::AlreadyExists => KeyError::Exists(path.to_path_buf()),
        _ => KeyError::Io {
            path: path.to_path_buf(),
            source,
        },
    };
    let mut f = options.open(path).map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
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
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| format())?;
    // A small-order key "verifies" forged signatures under the lax check.
    if key.is_weak() {
        return Err(KeyError::Format {
            path: path.into(),
            expected: "an ed25519 public key of large order (this one is weak: anyone can sign for it)",
        });
    }
    Ok(key)
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
        // Strict: refuses small-order keys and R, and non-canonical encodings, so
        // no signature verifies under a key nobody holds the secret of.
        .position(|k| k.verify_strict(bytes, &sig).is_ok())
        .ok_or(KeyError::Untrusted)
}

/// [`verify`] of a message held in chunks (a bundle read piece by piece), as
/// strict: a weak key or a small-order R verifies nothing.
pub fn verify_chunks<'a, I>(chunks: I, signature: &[u8], trusted: &[VerifyingKey]) -> Result<usize, KeyError>
where
    I: Iterator<Item = &'a [u8]> + Clone,
{
    let sig: [u8; 64] = signature
        .try_into()
        .map_err(|_| KeyError::SignatureLength(signature.len()))?;
    let r = curve25519_dalek::edwards::CompressedEdwardsY(sig[..32].try_into().expect("32 bytes"));
    if r.decompress().is_none_or(|point| point.is_small_order()) {
        return Err(KeyError::Untrusted);
    }
    let sig = Signature::from_bytes(&sig);
    trusted
        .iter()
        .position(|key| {
            !key.is_weak()
                && key.verify_stream(&sig).is_ok_and(|mut verifier| {
                    chunks.clone().for_each(|chunk| verifier.update(chunk));
                    verifier.finalize_and_verify().is_ok()
                })
        })
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

    #[test]
    fn chunked_verification_agrees_with_whole_verification() {
        let key = generate().unwrap();
        let trusted = vec![generate().unwrap().verifying_key(), key.verifying_key()];
        let message: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let sig = sign(&message, &key);
        for cuts in [vec![], vec![0, 0, 1], vec![4096, 4096, 9999], vec![1, 2, 3, 5000]] {
            let mut pieces = Vec::new();
            let mut at = 0;
            for cut in cuts.into_iter().chain([message.len()]) {
                pieces.push(&message[at..cut]);
                at = cut;
            }
            assert_eq!(verify_chunks(pieces.iter().copied(), &sig, &trusted).unwrap(), 1);
        }
        let mut changed = message.clone();
        changed[5000] ^= 1;
        let halves = [&changed[..5000], &changed[5000..]];
        assert!(matches!(
            verify_chunks(halves.iter().copied(), &sig, &trusted),
            Err(KeyError::Untrusted)
        ));
        // A small-order R (the identity) is refused before any hashing, as strict does.
        let mut small_r = sig;
        small_r[..32].copy_from_slice(&[1; 1].iter().copied().chain([0; 31]).collect::<Vec<u8>>());
        assert!(verify(&message, &small_r, &trusted).is_err());
        assert!(matches!(
            verify_chunks([message.as_slice()].into_iter(), &small_r, &trusted),
            Err(KeyError::Untrusted)
        ));
        assert!(matches!(
            verify_chunks([message.as_slice()].into_iter(), &sig[..63], &trusted),
            Err(KeyError::SignatureLength(63))
        ));
    }

    #[test]
    fn save_never_overwrites_and_the_secret_is_owner_only_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let first = generate().unwrap();
        let (secret, public) = save(&first, dir.path(), "k").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let before = std::fs::read(&secret).unwrap();
        let err = save(&generate().unwrap(), dir.path(), "k").unwrap_err();
        assert!(matches!(&err, KeyError::Exists(p) if p == &secret), "{err}");
        assert!(err.to_string().contains("k.key: already exists"), "{err}");
        assert_eq!(std::fs::read(&secret).unwrap(), before);
        assert_eq!(load_verifying_key(&public).unwrap(), first.verifying_key());
        // A lone public key (the secret moved away) is not replaced either.
        std::fs::remove_file(&secret).unwrap();
        let err = save(&generate().unwrap(), dir.path(), "k").unwrap_err();
        assert!(matches!(&err, KeyError::Exists(p) if p == &public), "{err}");
        assert!(!secret.exists());
    }

    /// The identity point as a key and (R = identity, s = 0) as a signature pass
    /// the lax check for every message.
    #[test]
    fn small_order_keys_and_signatures_never_verify() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = VerifyingKey::from_bytes(&identity).unwrap();
        let mut forged = [0u8; 64];
        forged[0] = 1;
        let lax =
            ed25519_dalek::Verifier::verify(&weak, b"any bundle at all", &Signature::from_bytes(&forged));
        assert!(lax.is_ok(), "the lax check is what this test guards against");
        assert!(matches!(
            verify(b"any bundle at all", &forged, &[weak]),
            Err(KeyError::Untrusted)
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weak.pub");
        std::fs::write(&path, hex_encode(&identity)).unwrap();
        let err = load_verifying_key(&path).unwrap_err().to_string();
        assert!(err.contains("weak.pub") && err.contains("weak"), "{err}");
    }
}

//! The bundle reader on arbitrary bytes: raw, and as a manifest behind a valid
//! header (magic, version, length, sha256) so the postcard manifest parser and the
//! file table checks are reached. It must return an error, never panic.
#![no_main]

use edgevlm_shared::bundle::Bundle;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fuzz_target!(|data: &[u8]| {
    let _ = Bundle::from_bytes(data, "fuzz");
    let split = data.first().map_or(0, |&b| b as usize).min(data.len().saturating_sub(1));
    let (manifest, files) = data.split_at(split.min(data.len()));
    let mut bytes = b"EDGEVLMB".to_vec();
    bytes.extend_from_slice(&edgevlm_shared::bundle::FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(manifest.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&Sha256::digest(manifest));
    bytes.extend_from_slice(manifest);
    bytes.extend_from_slice(files);
    if let Ok(bundle) = Bundle::from_bytes(&bytes, "fuzz") {
        // What parsed must survive a round trip.
        let again = Bundle::from_bytes(&bundle.to_bytes(), "fuzz").expect("re-written bundle reads");
        assert_eq!(again.manifest.files.len(), bundle.manifest.files.len());
    }
});

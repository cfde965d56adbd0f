//! Feature caches of the frozen towers: computed once, reused across epochs and
//! runs. A cache file is named by a key hashed from everything its values depend
//! on (the tower's weight file, the preprocessing or tokenizer, the inputs and the
//! layout), so changing any of them makes a new file instead of reusing a stale one.
//!
//! ```text
//! header: b"EVLMFC01", u64 LE length of a JSON header, the JSON header
//! body:   bf16 values (little-endian), then for text caches u32 token ids
//! ```
//! Values are stored as bfloat16 (round to nearest even): half the bytes of f32,
//! and the tower features lose nothing that matters to the heads trained on them.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

pub(crate) const MAGIC: &[u8; 8] = b"EVLMFC01";

pub use edgevlm_shared::caption::{from_bf16, to_bf16};

/// Hex sha256 of a file's bytes (streamed).
pub fn file_sha256(path: &Path) -> Result<String> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = BufReader::new(file);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A cache key from the parts a cache depends on.
pub fn key(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hex(&hasher.finalize())[..20].to_string()
}

/// Per-image tower tokens: `tokens` rows of width `width` for each image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageHeader {
    pub images: Vec<String>,
    pub tokens: usize,
    pub width: usize,
}

pub struct ImageFeatures {
    pub header: ImageHeader,
    values: Vec<u16>,
    /// Mean of each image's tokens, computed once at load.
    means: Vec<f32>,
}

impl ImageFeatures {
    pub fn new(header: ImageHeader, values: Vec<u16>) -> Self {
        let (t, w) = (header.tokens, header.width);
        let mut means = vec![0f32; header.images.len() * w];
        for (image, acc) in values.chunks(t * w).zip(means.chunks_mut(w)) {
            for token in image.chunks(w) {
                for (a, &v) in acc.iter_mut().zip(token) {
                    *a += from_bf16(v);
                }
            }
            acc.iter_mut().for_each(|a| *a /= t as f32);
        }
        Self {
            header,
            values,
            means,
        }
    }

    pub fn len(&self) -> usize {
        self.header.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.header.images.is_empty()
    }

    /// Tokens of several images as f32: `[indices.len(), tokens, width]` flattened.
    pub fn tokens(&self, indices: &[usize]) -> Vec<f32> {
        let per = self.header.tokens * self.header.width;
        let mut out = Vec::with_capacity(indices.len() * per);
        for &i in indices {
            out.extend(self.values[i * per..(i + 1) * per].iter().map(|&v| from_bf16(v)));
        }
        out
    }

    /// Mean of each image's tokens (the tower's global average pool): `[n, width]`.
    pub fn pooled(&self, indices: &[usize]) -> Vec<f32> {
        let w = self.header.width;
        indices
            .iter()
            .flat_map(|&i| self.means[i * w..(i + 1) * w].iter().copied())
            .collect()
    }

    /// [`tokens`](Self::tokens) as a tensor `[indices.len(), tokens, width]`.
    pub fn token_tensor(&self, indices: &[usize], device: &Device) -> Tensor<3> {
        let shape = [indices.len(), self.header.tokens, self.header.width];
        Tensor::from_data(TensorData::new(self.tokens(indices), shape), device)
    }

    /// [`pooled`](Self::pooled) as a tensor `[indices.len(), width]`.
    pub fn pooled_tensor(&self, indices: &[usize], device: &Device) -> Tensor<2> {
        let shape = [indices.len(), self.header.width];
        Tensor::from_data(TensorData::new(self.pooled(indices), shape), device)
    }
}

/// Token states and sentence embeddings of texts (ragged: each text keeps only
/// its real tokens).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TextHeader {
    pub texts: usize,
    pub width: usize,
    /// Start of each text's tokens, and the total at the end (`texts + 1` entries).
    pub offsets: Vec<usize>,
}

pub struct TextFeatures {
    pub header: TextHeader,
    /// `[texts, width]` unit sentence embeddings, then the token states.
    values: Vec<u16>,
    ids: Vec<u32>,
}

impl TextFeatures {
    pub fn new(header: TextHeader, sentences: &[f32], states: &[f32], ids: Vec<u32>) -> Self {
        let values = sentences.iter().chain(states).map(|&v| to_bf16(v)).collect();
        Self { header, values, ids }
    }

    pub fn len(&self) -> usize {
        self.header.texts
    }

    pub fn is_empty(&self) -> bool {
        self.header.texts == 0
    }

    pub fn sentences(&self, indices: &[usize]) -> Vec<f32> {
        let w = self.header.width;
        indices
            .iter()
            .flat_map(|&i| self.values[i * w..(i + 1) * w].iter().map(|&v| from_bf16(v)))
            .collect()
    }

    /// Token ids of one text ([CLS] … [SEP]).
    pub fn ids(&self, text: usize) -> &[u32] {
        &self.ids[self.header.offsets[text]..self.header.offsets[text + 1]]
    }

    /// Token states padded to the longest of `indices`, with the padding mask:
    /// (`[n, len, width]`, `[n, len]`, len).
    pub fn states(&self, indices: &[usize]) -> (Vec<f32>, Vec<f32>, usize) {
        let w = self.header.width;
        let base = self.header.texts * w;
        let len = indices.iter().map(|&i| self.ids(i).len()).max().unwrap_or(1);
        let mut states = vec![0f32; indices.len() * len * w];
        let mut mask = vec![0f32; indices.len() * len];
        for (row, &i) in indices.iter().enumerate() {
            let (start, end) = (self.header.offsets[i], self.header.offsets[i + 1]);
            for (pos, token) in (start..end).enumerate() {
                let src = &self.values[base + token * w..base + (token + 1) * w];
                let dst = &mut states[(row * len + pos) * w..(row * len + pos + 1) * w];
                dst.iter_mut().zip(src).for_each(|(d, &s)| *d = from_bf16(s));
                mask[row * len + pos] = 1.0;
            }
        }
        (states, mask, len)
    }
}

/// `DIR/NAME-KEY.bin`.
pub fn path(dir: &Path, name: &str, key: &str) -> PathBuf {
    dir.join(format!("{name}-{key}.bin"))
}

pub(crate) fn write_file(path: &Path, header: &impl Serialize, values: &[u16], ids: &[u32]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let staging = path.with_extension("bin.tmp");
    let json = serde_json::to_vec(header).expect("plain data");
    let io = |e| Error::io(&staging, e);
    let file = std::fs::File::create(&staging).map_err(io)?;
    let mut w = BufWriter::new(file);
    w.write_all(MAGIC).map_err(io)?;
    w.write_all(&(json.len() as u64).to_le_bytes()).map_err(io)?;
    w.write_all(&json).map_err(io)?;
    for chunk in values.chunks(1 << 16) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
        w.write_all(&bytes).map_err(io)?;
    }
    for chunk in ids.chunks(1 << 16) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
        w.write_all(&bytes).map_err(io)?;
    }
    let file = w.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&staging, path).map_err(|e| Error::io(path, e))?;
    // The rename itself survives a power cut only once the folder is synced.
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    crate::model::weights::sync(dir)
}

/// Reads a cache file: its JSON header and the raw body.
pub(crate) fn read_file<H: for<'de> Deserialize<'de>>(path: &Path) -> Result<(H, Vec<u8>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |what: &str| Error::record(path, format!("not an edgevlm feature file: {what}"));
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return Err(bad("missing the EVLMFC01 signature"));
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
    let json = bytes
        .get(16..16usize.saturating_add(len))
        .ok_or_else(|| bad("header cut short"))?;
    let header = serde_json::from_slice(json).map_err(|e| bad(&format!("header: {e}")))?;
    Ok((header, bytes[16 + len..].to_vec()))
}

pub(crate) fn u16s(bytes: &[u8]) -> Vec<u16> {
    bytes
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect()
}

pub fn save_images(path: &Path, features: &ImageFeatures) -> Result<()> {
    write_file(path, &features.header, &features.values, &[])
}

pub fn load_images(path: &Path) -> Result<ImageFeatures> {
    let (header, body): (ImageHeader, _) = read_file(path)?;
    let expected = header.images.len() * header.tokens * header.width * 2;
    if body.len() != expected {
        return Err(Error::record(
            path,
            format!("expected {expected} bytes of features, found {}", body.len()),
        ));
    }
    Ok(ImageFeatures::new(header, u16s(&body)))
}

pub fn save_texts(path: &Path, features: &TextFeatures) -> Result<()> {
    write_file(path, &features.header, &features.values, &features.ids)
}

pub fn load_texts(path: &Path) -> Result<TextFeatures> {
    let (header, body): (TextHeader, _) = read_file(path)?;
    let tokens = header.offsets.last().copied().unwrap_or(0);
    let values = (header.texts + tokens) * header.width;
    if header.offsets.len() != header.texts + 1 || body.len() != values * 2 + tokens * 4 {
        return Err(Error::record(
            path,
            format!(
                "expected {} bytes for {} texts of {} tokens, found {}",
                values * 2 + tokens * 4,
                header.texts,
                tokens,
                body.len()
            ),
        ));
    }
    let ids = body[values * 2..]
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(TextFeatures {
        values: u16s(&body[..values * 2]),
        ids,
        header,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounds_to_nearest_and_keeps_three_significant_digits() {
        for x in [0.0f32, 1.0, -2.5, 2.71, 1e-3, 6.0, 123.456] {
            let back = from_bf16(to_bf16(x));
            assert!((back - x).abs() <= x.abs() / 256.0, "{x} -> {back}");
        }
        // 1 + 2^-8 lies halfway between two bf16 values: ties go to even (1.0).
        assert_eq!(from_bf16(to_bf16(1.0 + 1.0 / 256.0)), 1.0);
    }

    #[test]
    fn text_cache_round_trips_and_a_cut_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let header = TextHeader {
            texts: 2,
            width: 2,
            offsets: vec![0, 3, 5],
        };
        let sentences = [0.5, -0.5, 1.0, 0.0];
        let states: Vec<f32> = (0..10).map(|v| v as f32).collect();
        let features = TextFeatures::new(header, &sentences, &states, vec![1, 7, 2, 1, 2]);
        let file = path(dir.path(), "text", &key(&["a"]));
        save_texts(&file, &features).unwrap();
        let back = load_texts(&file).unwrap();
        assert_eq!(back.sentences(&[1]), vec![1.0, 0.0]);
        assert_eq!(back.ids(0), &[1, 7, 2]);
        let (s, mask, len) = back.states(&[1, 0]);
        assert_eq!(len, 3);
        assert_eq!(mask, vec![1.0, 1.0, 0.0, 1.0, 1.0, 1.0]);
        assert_eq!(&s[..4], &[6.0, 7.0, 8.0, 9.0]);
        assert_eq!(&s[6..12], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);

        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..bytes.len() - 3]).unwrap();
        let err = load_texts(&file).err().unwrap().to_string();
        assert!(
            err.contains("expected") && err.contains(&file.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn keys_change_with_any_part() {
        assert_ne!(key(&["ab", "c"]), key(&["a", "bc"]));
        assert_eq!(key(&["x"]), key(&["x"]));
    }
}

//! The caption memory: training captions grouped by image, with their unit ITC
//! embeddings, and its byte format (what a model folder's `memory.bin` and a
//! bundle's `caption_memory.bin` hold).
//!
//! ```text
//! magic "EVLMCMEM" | version u32 | storage u8 | width u32 | images u32 | captions u32
//! | captions per image: u32 × images | caption byte lengths: u32 × captions
//! | the captions' UTF-8, back to back
//! | rows: bf16 (u16) × width per caption, or (f32 scale, i8 × width) per caption
//! ```
//! All integers little endian. Rows stay in their stored form in memory and are
//! widened one at a time while searching, so a board holds 2 (bf16) or about 1
//! (int8) byte per value instead of 4.

use super::Consensus;
use crate::metrics::CiderReward;

const MAGIC: &[u8; 8] = b"EVLMCMEM";
const VERSION: u32 = 1;

/// How the embeddings are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemoryStorage {
    /// bfloat16: the top half of each f32, rounded to nearest even.
    #[default]
    Bf16,
    /// int8 with one f32 scale per caption (the row's largest magnitude / 127).
    Int8,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MemoryError {
    #[error("{origin}: caption memory field `{field}`: {reason}")]
    Malformed {
        origin: String,
        field: &'static str,
        reason: String,
    },
    #[error("caption memory: {0}")]
    Invalid(String),
}

enum Rows {
    F32(Vec<f32>),
    Bf16(Vec<u16>),
    Int8 { values: Vec<i8>, scales: Vec<f32> },
}

/// The training captions, grouped by image, and their unit ITC embeddings.
pub struct CaptionMemory {
    /// Captions per image, in order.
    per_image: Vec<usize>,
    captions: Vec<String>,
    width: usize,
    rows: Rows,
    /// CIDEr-D with document frequencies from the training captions.
    reward: CiderReward,
}

/// bfloat16 of `x`, rounded to nearest even (NaN stays NaN).
pub fn to_bf16(x: f32) -> u16 {
    if x.is_nan() {
        return 0x7fc0;
    }
    let bits = x.to_bits();
    let rounding = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(rounding) >> 16) as u16
}

pub fn from_bf16(x: u16) -> f32 {
    f32::from_bits(u32::from(x) << 16)
}

impl CaptionMemory {
    /// `embeddings` holds one row of `width` per caption, in the flat order of `captions`.
    pub fn new(captions: Vec<Vec<String>>, embeddings: Vec<f32>, width: usize) -> Result<Self, MemoryError> {
        let per_image = captions.iter().map(Vec::len).collect();
        Self::build(
            per_image,
            captions.into_iter().flatten().collect(),
            width,
            Rows::F32(embeddings),
        )
    }

    fn build(
        per_image: Vec<usize>,
        captions: Vec<String>,
        width: usize,
        rows: Rows,
    ) -> Result<Self, MemoryError> {
        let values = match &rows {
            Rows::F32(v) => v.len(),
            Rows::Bf16(v) => v.len(),
            Rows::Int8 { values, .. } => values.len(),
        };
        if captions.is_empty() || width == 0 || values != captions.len() * width {
            return Err(MemoryError::Invalid(format!(
                "{values} embedding values for {} captions of width {width}",
                captions.len()
            )));
        }
        let mut grouped: Vec<Vec<&str>> = Vec::with_capacity(per_image.len());
        let mut rest = captions.as_slice();
        for &n in &per_image {
            let (these, more) = rest.split_at(n.min(rest.len()));
            grouped.push(these.iter().map(String::as_str).collect());
            rest = more;
        }
        let reward = CiderReward::frequencies(&grouped).map_err(|e| MemoryError::Invalid(e.to_string()))?;
        Ok(Self {
            per_image,
            captions,
            width,
            rows,
            reward,
        })
    }

    pub fn len(&self) -> usize {
        self.captions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.captions.is_empty()
    }

    pub fn width(&self) -> usize {
        self.width
    }

    /// Dot product of caption `i`'s embedding with `query`. Every storage sums in
    /// the same lane order, so f32 rows holding bf16 values (a host folder) and bf16
    /// rows (a bundle) give bit-identical similarities.
    fn similarity(&self, i: usize, query: &[f32]) -> f32 {
        let range = i * self.width..(i + 1) * self.width;
        match &self.rows {
            Rows::F32(v) => dot(&v[range], query, |x| *x),
            Rows::Bf16(v) => dot(&v[range], query, |x| from_bf16(*x)),
            Rows::Int8 { values, scales } => dot(&values[range], query, |x| f32::from(*x)) * scales[i],
        }
    }

    /// The `k` captions whose embeddings are closest (dot product) to `image`.
    pub fn nearest(&self, image: &[f32], k: usize) -> Vec<&str> {
        let mut scored: Vec<(usize, f32)> = (0..self.len()).map(|i| (i, self.similarity(i, image))).collect();
        let k = k.min(scored.len());
        if k == 0 {
            return Vec::new();
        }
        scored.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(k);
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.iter().map(|&(i, _)| self.captions[i].as_str()).collect()
    }

    /// Index of the candidate (caption, beam score) that agrees best with the
    /// captions retrieved for `image`.
    pub fn choose(&self, image: &[f32], candidates: &[(String, f32)], consensus: Consensus) -> usize {
        let references = self.nearest(image, consensus.neighbours);
        let texts: Vec<&str> = candidates.iter().map(|c| c.0.as_str()).collect();
        let agreement = self.reward.score_all_against(&texts, &references);
        candidates
            .iter()
            .zip(agreement)
            .map(|((_, score), cider)| cider + consensus.weight as f64 * *score as f64)
            .enumerate()
            // The first of equals: the beam's own order breaks ties.
            .fold(None, |best: Option<(usize, f64)>, (i, v)| match best {
                Some((_, b)) if b >= v => best,
                _ => Some((i, v)),
            })
            .map_or(0, |(i, _)| i)
    }

    /// The embedding of caption `i`, widened to f32.
    fn row(&self, i: usize) -> Vec<f32> {
        let range = i * self.width..(i + 1) * self.width;
        match &self.rows {
            Rows::F32(v) => v[range].to_vec(),
            Rows::Bf16(v) => v[range].iter().map(|&x| from_bf16(x)).collect(),
            Rows::Int8 { values, scales } => {
                values[range].iter().map(|&x| f32::from(x) * scales[i]).collect()
            }
        }
    }

    pub fn to_bytes(&self, storage: MemoryStorage) -> Vec<u8> {
        let text: usize = self.captions.iter().map(String::len).sum();
        let mut out = Vec::with_capacity(
            32 + 4 * (self.per_image.len() + self.len()) + text + 2 * self.len() * self.width,
        );
        let u32le = |out: &mut Vec<u8>, v: usize| out.extend_from_slice(&(v as u32).to_le_bytes());
        out.extend_from_slice(MAGIC);
        u32le(&mut out, VERSION as usize);
        out.push(match storage {
            MemoryStorage::Bf16 => 0,
            MemoryStorage::Int8 => 1,
        });
        for v in [self.width, self.per_image.len(), self.len()] {
            u32le(&mut out, v);
        }
        for &n in &self.per_image {
            u32le(&mut out, n);
        }
        for c in &self.captions {
            u32le(&mut out, c.len());
        }
        for c in &self.captions {
            out.extend_from_slice(c.as_bytes());
        }
        for i in 0..self.len() {
            let row = self.row(i);
            match storage {
                MemoryStorage::Bf16 => row
                    .iter()
                    .for_each(|&v| out.extend_from_slice(&to_bf16(v).to_le_bytes())),
                MemoryStorage::Int8 => {
                    let scale = row.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
                    out.extend_from_slice(&scale.to_le_bytes());
                    let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
                    out.extend(
                        row.iter()
                            .map(|v| (v * inverse).round().clamp(-127.0, 127.0) as i8 as u8),
                    );
                }
            }
        }
        out
    }

    /// Reads [`Self::to_bytes`]'s format. Every count is checked against the bytes
    /// present before anything is allocated from it; `origin` names the file.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self, MemoryError> {
        let mut r = Reader { bytes, at: 0, origin };
        if r.take("magic", MAGIC.len())? != MAGIC {
            return Err(r.error(
                "magic",
                "expected the bytes \"EVLMCMEM\": not a caption memory".into(),
            ));
        }
        let version = r.u32("version")?;
        if version != VERSION as usize {
            return Err(r.error("version", format!("{version}, this build reads {VERSION}")));
        }
        let storage = match r.take("storage", 1)?[0] {
            0 => MemoryStorage::Bf16,
            1 => MemoryStorage::Int8,
            other => return Err(r.error("storage", format!("{other}, expected 0 (bf16) or 1 (int8)"))),
        };
        let width = r.u32("width")?;
        let images = r.u32("images")?;
        let captions = r.u32("captions")?;
        if width == 0 || captions == 0 {
            return Err(r.error(
                "width",
                format!("width {width}, captions {captions}: expected both > 0"),
            ));
        }
        let row_bytes = match storage {
            MemoryStorage::Bf16 => width.checked_mul(2),
            MemoryStorage::Int8 => width.checked_add(4),
        };
        // The rows alone must fit in what is left, before any table is allocated.
        let needed = row_bytes
            .and_then(|b| b.checked_mul(captions))
            .and_then(|b| images.checked_add(captions)?.checked_mul(4)?.checked_add(b));
        if needed.is_none_or(|n| n > r.left()) {
            return Err(r.error(
                "captions",
                format!(
                    "{captions} captions of width {width} and {images} images need more than the {} bytes left",
                    r.left()
                ),
            ));
        }
        let per_image = (0..images)
            .map(|_| r.u32("captions per image"))
            .collect::<Result<Vec<_>, _>>()?;
        if per_image.iter().sum::<usize>() != captions {
            return Err(r.error(
                "captions per image",
                format!(
                    "they add up to {}, expected {captions}",
                    per_image.iter().sum::<usize>()
                ),
            ));
        }
        let lengths = (0..captions)
            .map(|_| r.u32("caption length"))
            .collect::<Result<Vec<_>, _>>()?;
        let mut texts = Vec::with_capacity(captions);
        for len in lengths {
            let raw = r.take("caption text", len)?;
            let text =
                std::str::from_utf8(raw).map_err(|e| r.error("caption text", format!("not UTF-8: {e}")))?;
            texts.push(text.to_string());
        }
        let body = r.take("rows", captions * row_bytes.unwrap_or(0))?;
        if r.left() != 0 {
            return Err(r.error(
                "rows",
                format!("{} bytes follow the last row, expected none", r.left()),
            ));
        }
        let rows = match storage {
            MemoryStorage::Bf16 => Rows::Bf16(
                body.chunks_exact(2)
                    .map(|b| u16::from_le_bytes([b[0], b[1]]))
                    .collect(),
            ),
            MemoryStorage::Int8 => {
                let mut values = Vec::with_capacity(captions * width);
                let mut scales = Vec::with_capacity(captions);
                for row in body.chunks_exact(width + 4) {
                    let scale = f32::from_le_bytes([row[0], row[1], row[2], row[3]]);
                    if !scale.is_finite() {
                        return Err(r.error("rows", "a row's scale is not finite".into()));
                    }
                    scales.push(scale);
                    values.extend(row[4..].iter().map(|&b| b as i8));
                }
                Rows::Int8 { values, scales }
            }
        };
        Self::build(per_image, texts, width, rows).map_err(|e| r.error("captions", e.to_string()))
    }
}

/// `Σ widen(row[j]) · query[j]` over eight independent lanes (which the compiler
/// vectorizes; one running sum would wait on each addition), added up in a fixed order.
fn dot<T>(row: &[T], query: &[f32], widen: impl Fn(&T) -> f32) -> f32 {
    const LANES: usize = 8;
    let mut lanes = [0f32; LANES];
    let rows = row.chunks_exact(LANES);
    let queries = query.chunks_exact(LANES);
    let (row_tail, query_tail) = (rows.remainder(), queries.remainder());
    for (r, q) in rows.zip(queries) {
        for l in 0..LANES {
            lanes[l] += widen(&r[l]) * q[l];
        }
    }
    let tail: f32 = row_tail.iter().zip(query_tail).map(|(r, q)| widen(r) * q).sum();
    lanes.iter().sum::<f32>() + tail
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    origin: &'a str,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn error(&self, field: &'static str, reason: String) -> MemoryError {
        MemoryError::Malformed {
            origin: self.origin.to_string(),
            field,
            reason,
        }
    }

    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], MemoryError> {
        if n > self.left() {
            return Err(self.error(
                field,
                format!(
                    "needs {n} bytes at offset {}, only {} left (truncated?)",
                    self.at,
                    self.left()
                ),
            ));
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    fn u32(&mut self, field: &'static str) -> Result<usize, MemoryError> {
        let b = self.take(field, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
}

#[cfg(test)]
mod tests;

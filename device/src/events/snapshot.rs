//! The frame behind an event, as a JPEG no larger than the configured cap: saved
//! next to the event's JSON line and published for a Home Assistant camera, so a
//! notification can show what the caption is about. Off unless configured.

use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::RgbImage;
use serde::Deserialize;

/// Smallest and largest cap a config may set.
pub const MIN_BYTES: usize = 4 * 1024;
pub const MAX_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// Folder the JPEGs go to (`<seq>.jpg`), relative to device.toml.
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
    /// The most bytes a snapshot may take; larger frames are re-encoded at a lower
    /// quality, then at half the size, until they fit.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
}

fn default_dir() -> PathBuf {
    PathBuf::from("snapshots")
}
fn default_max_bytes() -> usize {
    150_000
}

impl SnapshotConfig {
    /// Why the config cannot be used, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if !(MIN_BYTES..=MAX_BYTES).contains(&self.max_bytes) {
            return Err(format!(
                "events.snapshot.max_bytes is {}; expected {MIN_BYTES} to {MAX_BYTES}",
                self.max_bytes
            ));
        }
        Ok(())
    }
}

/// Qualities tried at each size, best first; then the size halves.
const QUALITIES: [u8; 3] = [85, 65, 45];
/// The smallest side a snapshot is shrunk to.
const MIN_SIDE: u32 = 16;

/// The image as a JPEG of at most `max_bytes`, or why none fits.
pub fn jpeg(image: &RgbImage, max_bytes: usize) -> Result<Vec<u8>, String> {
    let mut scaled = image.clone();
    loop {
        for quality in QUALITIES {
            let mut bytes = Vec::new();
            JpegEncoder::new_with_quality(&mut bytes, quality)
                .encode_image(&scaled)
                .map_err(|e| format!("JPEG encoder: {e}"))?;
            if bytes.len() <= max_bytes {
                return Ok(bytes);
            }
        }
        let (w, h) = (scaled.width() / 2, scaled.height() / 2);
        if w.min(h) < MIN_SIDE {
            return Err(format!(
                "a {}x{} frame does not fit in {max_bytes} bytes as a JPEG",
                image.width(),
                image.height()
            ));
        }
        scaled = image::imageops::resize(&scaled, w, h, FilterType::Triangle);
    }
}

/// Writes the snapshot of event `seq` into `dir` (created if needed).
pub fn save(dir: &Path, seq: u64, bytes: &[u8]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{seq:08}.jpg"));
    let partial = dir.join(format!("{seq:08}.jpg.partial"));
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(w: u32, h: u32) -> RgbImage {
        let mut state = 1u32;
        RgbImage::from_fn(w, h, |_, _| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let b = state.to_le_bytes();
            image::Rgb([b[1], b[2], b[3]])
        })
    }

    #[test]
    fn snapshots_fit_their_cap_and_decode_to_the_frame_size_or_smaller() {
        let frame = noise(320, 240);
        let full = jpeg(&frame, MAX_BYTES).unwrap();
        let decoded = image::load_from_memory(&full).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (320, 240));
        let small = jpeg(&frame, 20_000).unwrap();
        assert!(small.len() <= 20_000 && small.len() < full.len());
        let decoded = image::load_from_memory(&small).unwrap();
        assert!(decoded.width() < 320, "noise at 320x240 cannot fit 20 kB");
        assert!(jpeg(&frame, 100)
            .unwrap_err()
            .contains("does not fit in 100 bytes"));
    }
}

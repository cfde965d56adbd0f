//! A bundle file held as the chunks it was read in. A signature is checked over
//! every byte before any is parsed (`signature::verify_chunks`), then the bundle
//! is parsed from the chunks, each freed once passed: a signed bundle is never
//! in memory twice, and the bytes parsed are the bytes checked.

use std::collections::VecDeque;
use std::io::Read;
use std::path::Path;

use super::container::Pieces;
use super::{Bundle, BundleError};

const CHUNK: usize = 1 << 20;

pub struct Chunks {
    chunks: VecDeque<Vec<u8>>,
    /// Offset in the file of the first chunk held.
    start: u64,
    len: u64,
    origin: String,
}

impl Chunks {
    pub fn read(path: &Path) -> Result<Self, BundleError> {
        let io = |source| BundleError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let expected = file.metadata().map_err(io)?.len();
        let mut chunks = VecDeque::new();
        let mut len = 0u64;
        // Bounded by what the file said it holds: one that grows while read is
        // cut there, and a later check finds the difference.
        let mut reader = file.take(expected);
        loop {
            let mut chunk = Vec::with_capacity(CHUNK);
            let n = (&mut reader)
                .take(CHUNK as u64)
                .read_to_end(&mut chunk)
                .map_err(io)?;
            if n == 0 {
                break;
            }
            len += n as u64;
            chunks.push_back(chunk);
        }
        Ok(Self {
            chunks,
            start: 0,
            len,
            origin: path.display().to_string(),
        })
    }

    /// The bytes, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + Clone {
        self.chunks.iter().map(Vec::as_slice)
    }

    /// Parses the bundle, keeping only the files named in `keep` (all with
    /// `None`); the chunks are freed as the parse passes them.
    pub fn into_bundle(self, keep: Option<&[&str]>) -> Result<Bundle, BundleError> {
        let origin = self.origin.clone();
        Bundle::parse(self, &origin, keep).map_err(|e| e.with_path(Path::new(&origin)))
    }

    /// Frees the chunks that end at or before `at`: reads come in ascending order.
    fn release_before(&mut self, at: u64) {
        while let Some(front) = self.chunks.front() {
            let end = self.start + front.len() as u64;
            if end > at {
                break;
            }
            self.start = end;
            self.chunks.pop_front();
        }
    }
}

impl Pieces for Chunks {
    fn len(&self) -> u64 {
        self.len
    }

    fn piece(&mut self, start: u64, end: u64) -> std::io::Result<Vec<u8>> {
        self.release_before(start);
        if start < self.start {
            return Err(std::io::Error::other(format!(
                "bytes {start}..{end} asked for after they were released"
            )));
        }
        let mut out = Vec::with_capacity((end - start) as usize);
        let mut at = self.start;
        for chunk in &self.chunks {
            let chunk_end = at + chunk.len() as u64;
            if chunk_end > start && at < end {
                let from = start.max(at) - at;
                let to = end.min(chunk_end) - at;
                out.extend_from_slice(&chunk[from as usize..to as usize]);
            }
            if chunk_end >= end {
                break;
            }
            at = chunk_end;
        }
        self.release_before(end);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_across_chunk_borders_are_the_file_bytes_and_passed_chunks_are_freed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..(2 * CHUNK + 123)).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let mut chunks = Chunks::read(&path).unwrap();
        assert_eq!(chunks.len(), bytes.len() as u64);
        assert_eq!(chunks.iter().map(<[u8]>::len).sum::<usize>(), bytes.len());
        let cuts = [0, 10, CHUNK - 1, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 123];
        for w in cuts.windows(2) {
            let piece = chunks.piece(w[0] as u64, w[1] as u64).unwrap();
            assert_eq!(piece, bytes[w[0]..w[1]]);
        }
        assert!(chunks.chunks.is_empty(), "every chunk is freed once passed");
        assert!(chunks.piece(0, 4).is_err());
    }
}

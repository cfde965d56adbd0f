//! Clips: short sequences of frames with captions of what happened in them.
//!
//! `edgevlm data synth --clips N` writes them beside the scenes:
//!
//! ```text
//! OUT/clips/000000/00.png …  the frames, in order
//! OUT/clips.jsonl            {"clip", "frames": [paths], "captions": [...], "event": {...}}
//! ```
//!
//! Readers take that file (or the folder holding it), and a bare folder of frames
//! (a camera's stills, in name order) is a clip of its own.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use edgevlm_shared::rng::SplitMix64;
use edgevlm_shared::synth::{self, Clip, ClipEvent, MAX_FRAMES, MIN_FRAMES};
use image::ImageFormat;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use edgevlm_shared::frames::{frame_paths, sample_frames};

use super::{DataError, Result};

/// Longest line read (a clip's frame paths and captions take well under 4 kB).
const MAX_LINE: usize = 64 * 1024;

/// One clip as training and evaluation read it.
#[derive(Debug, Clone)]
pub struct ClipRecord {
    pub clip: String,
    pub frames: Vec<PathBuf>,
    pub captions: Vec<String>,
    /// What happened, when the data says (synthetic clips do).
    pub event: Option<ClipEvent>,
}

#[derive(Serialize, Deserialize)]
struct ClipLine {
    clip: String,
    frames: Vec<String>,
    captions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event: Option<ClipEvent>,
}

/// Writes `count` clips of `frames` frames under `out` (`clips/`, `clips.jsonl`); clip i
/// comes from its own random stream, so a seed gives the same bytes on any machine.
pub fn write(out: &Path, count: usize, frames: usize, size: u32, seed: u64) -> Result<()> {
    let mut lines = Vec::new();
    for chunk_start in (0..count).step_by(256) {
        let chunk_end = (chunk_start + 256).min(count);
        let rendered: Vec<(ClipLine, Vec<Vec<u8>>)> = (chunk_start..chunk_end)
            .into_par_iter()
            .map(|i| render_clip(i, frames, size, seed))
            .collect::<Result<_>>()?;
        for (line, pngs) in rendered {
            let dir = out.join(&line.clip);
            std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
            for (name, png) in line.frames.iter().zip(pngs) {
                let path = out.join(name);
                std::fs::write(&path, png).map_err(|e| DataError::io(&path, e))?;
            }
            serde_json::to_writer(&mut lines, &line).expect("in-memory write");
            lines.push(b'\n');
        }
    }
    let path = out.join("clips.jsonl");
    std::fs::write(&path, lines).map_err(|e| DataError::io(&path, e))
}

fn render_clip(i: usize, frames: usize, size: u32, seed: u64) -> Result<(ClipLine, Vec<Vec<u8>>)> {
    // Streams of their own: a seed's scenes stay as they were with clips beside them.
    let mut rng = SplitMix64::fork(seed ^ 0xC11B_5EED, i as u64);
    let clip = Clip::generate(&mut rng, size, frames);
    let name = format!("clips/{i:06}");
    let pngs = clip
        .frames
        .iter()
        .map(|scene| {
            let mut png = Vec::new();
            synth::render(scene)
                .write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png)
                .map_err(|e| DataError::layout("png encoder", e.to_string()))?;
            Ok(png)
        })
        .collect::<Result<Vec<_>>>()?;
    let line = ClipLine {
        frames: (0..clip.frames.len())
            .map(|f| format!("{name}/{f:02}.png"))
            .collect(),
        captions: synth::clip_captions(&clip),
        event: Some(clip.event),
        clip: name,
    };
    Ok((line, pngs))
}

/// The clips of `path`: a `clips.jsonl` file, or a folder holding one. Frames are
/// paths relative to the file's folder; each clip has `MIN_FRAMES..=MAX_FRAMES` of them.
pub fn read(path: &Path) -> Result<Vec<ClipRecord>> {
    let file = if path.is_dir() {
        path.join("clips.jsonl")
    } else {
        path.to_path_buf()
    };
    let base = file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut reader =
        std::io::BufReader::new(std::fs::File::open(&file).map_err(|e| DataError::io(&file, e))?);
    let mut out = Vec::new();
    let mut bytes = Vec::new();
    for i in 0.. {
        bytes.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut bytes)
            .map_err(|e| DataError::io(&file, e))?;
        if n == 0 {
            break;
        }
        let at = |reason: String| DataError::layout(&file, format!("line {}: {reason}", i + 1));
        if bytes.len() > MAX_LINE && bytes.last() != Some(&b'\n') {
            return Err(at(format!(
                "longer than the {MAX_LINE} bytes a clip's line may take"
            )));
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| at("not UTF-8 text".into()))?;
        if text.trim().is_empty() {
            continue;
        }
        let line: ClipLine = serde_json::from_str(text)
            .map_err(|e| at(format!("expected {{\"clip\", \"frames\", \"captions\"}}: {e}")))?;
        if !(MIN_FRAMES..=MAX_FRAMES).contains(&line.frames.len()) {
            return Err(at(format!(
                "{} frames; a clip has {MIN_FRAMES} to {MAX_FRAMES}",
                line.frames.len()
            )));
        }
        if line.captions.iter().all(|c| c.trim().is_empty()) {
            return Err(at("no caption".into()));
        }
        out.push(ClipRecord {
            frames: line.frames.iter().map(|f| base.join(f)).collect(),
            event: line.event,
            captions: line.captions,
            clip: line.clip,
        });
    }
    if out.is_empty() {
        return Err(DataError::layout(&file, "no clips"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_clips_read_back_with_their_frames_and_captions() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 6, 8, 64, 3).unwrap();
        let clips = read(dir.path()).unwrap();
        assert_eq!(clips.len(), 6);
        for clip in &clips {
            assert_eq!(clip.frames.len(), 8);
            assert!(clip.frames.iter().all(|f| f.is_file()));
            assert_eq!(clip.captions.len(), 3);
            assert!(clip.event.is_some());
        }
        let frames = frame_paths(&[dir.path().join("clips/000002")]).unwrap();
        assert_eq!(frames, clips[2].frames);
    }

    #[test]
    fn bad_lines_are_refused_by_file_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("clips.jsonl");
        std::fs::write(
            &file,
            "{\"clip\": \"a\", \"frames\": [\"1.png\"], \"captions\": [\"x\"]}\n",
        )
        .unwrap();
        let e = read(&file).unwrap_err().to_string();
        assert!(
            e.contains("clips.jsonl") && e.contains("line 1") && e.contains("1 frames"),
            "{e}"
        );
        std::fs::write(&file, "{\"clip\": 3}\n").unwrap();
        let e = read(&file).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("expected"), "{e}");
        std::fs::write(&file, vec![b'x'; MAX_LINE + 10]).unwrap();
        assert!(read(&file).unwrap_err().to_string().contains("longer than"));
    }
}

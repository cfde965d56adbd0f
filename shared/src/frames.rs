//! A clip given as frames: a folder of image files (a camera's stills, in name
//! order) or the files themselves, and the frames a model reads of it.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Frame files a folder may hold to be read as one clip.
const MAX_FOLDER_FRAMES: usize = 4096;
/// The image files a frame folder may hold.
const FRAME_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "bmp"];

fn frames_error(path: &Path, reason: String) -> Error {
    Error::Frames {
        path: path.to_path_buf(),
        reason,
    }
}

/// The frames of a clip given as a folder (its image files in name order) or as files.
pub fn frame_paths(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let frames = match inputs {
        [dir] if dir.is_dir() => {
            let mut frames = Vec::new();
            for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
                let path = entry.map_err(|e| Error::io(dir, e))?.path();
                let is_frame = path
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| FRAME_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
                if is_frame {
                    if frames.len() == MAX_FOLDER_FRAMES {
                        return Err(frames_error(
                            dir,
                            format!("more than {MAX_FOLDER_FRAMES} frames; pick some with file arguments"),
                        ));
                    }
                    frames.push(path);
                }
            }
            frames.sort();
            if frames.is_empty() {
                return Err(frames_error(
                    dir,
                    format!("no frames (image files ending {})", FRAME_EXTENSIONS.join(", ")),
                ));
            }
            frames
        }
        files => files.to_vec(),
    };
    if frames.len() < 2 {
        return Err(frames_error(
            frames.first().map_or(Path::new("."), |p| p.as_path()),
            "a clip needs at least 2 frames".into(),
        ));
    }
    Ok(frames)
}

/// `count` frames spread evenly over `frames` (first and last included): a longer
/// sequence is read at the rate the model was trained on, a shorter one repeats frames.
pub fn sample_frames<T: Clone>(frames: &[T], count: usize) -> Vec<T> {
    if frames.is_empty() || count == 0 {
        return Vec::new();
    }
    let last = (frames.len() - 1) as f64;
    (0..count)
        .map(|i| {
            let at = if count == 1 {
                0.0
            } else {
                i as f64 * last / (count - 1) as f64
            };
            frames[at.round() as usize].clone()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_sampled_evenly_with_both_ends() {
        let frames: Vec<PathBuf> = (0..20).map(|i| PathBuf::from(format!("{i:02}"))).collect();
        let picked = sample_frames(&frames, 8);
        assert_eq!(picked.first(), frames.first());
        assert_eq!(picked.last(), frames.last());
        assert_eq!(sample_frames(&frames[..3], 6).len(), 6);
    }

    #[test]
    fn a_folder_gives_its_images_in_name_order_and_refuses_when_empty() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.png", "a.jpg", "notes.txt", "c.PNG"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let frames = frame_paths(&[dir.path().to_path_buf()]).unwrap();
        let names: Vec<_> = frames
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["a.jpg", "b.png", "c.PNG"]);
        let empty = tempfile::tempdir().unwrap();
        let e = frame_paths(&[empty.path().to_path_buf()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("no frames"), "{e}");
        let e = frame_paths(&[dir.path().join("a.jpg")]).unwrap_err().to_string();
        assert!(e.contains("at least 2 frames"), "{e}");
    }
}

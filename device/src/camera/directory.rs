//! A folder watched for new image files: each file that appears becomes one frame,
//! in name order (a camera app or `scp` drops them there).
//!
//! A file is read only once its size and modification time have stayed the same
//! for `settle` across two polls, or its modification time is already `settle`
//! old, so a frame still being written is not taken for a corrupt one. Only the names still in the folder are remembered: memory
//! follows what the folder holds, not everything it ever held.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use edgevlm_shared::preprocess::load_image;

use super::{Camera, CameraError, Frame};

/// How long a file must stay unchanged before it is read (`camera.settle_ms`).
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(250);

/// What a poll sees of a file; a change means someone is still writing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

pub struct DirectoryCamera {
    dir: PathBuf,
    settle: Duration,
    /// Files already turned into frames (or reported) that are still there.
    seen: BTreeSet<PathBuf>,
    /// Unseen files: their stamp at the last poll and since when it held.
    pending: BTreeMap<PathBuf, (Stamp, Instant)>,
}

fn is_image(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("png" | "jpg" | "jpeg" | "bmp")
    )
}

impl DirectoryCamera {
    /// With `existing`, files already in the folder are frames too; otherwise only
    /// files that appear later are.
    pub fn new(dir: &Path, existing: bool, settle: Duration) -> Result<Self, CameraError> {
        let mut camera = Self {
            dir: dir.to_path_buf(),
            settle,
            seen: BTreeSet::new(),
            pending: BTreeMap::new(),
        };
        if !existing {
            camera.seen = camera.listing()?.into_iter().collect();
        }
        Ok(camera)
    }

    fn listing(&self) -> Result<Vec<PathBuf>, CameraError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|source| CameraError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_image(p))
            .collect();
        files.sort();
        Ok(files)
    }

    /// Whether `path` has held still long enough to be read now.
    fn settled(&mut self, path: &Path, now: Instant) -> bool {
        // A FIFO or a folder named like an image would block or fail the read.
        let Some(meta) = std::fs::metadata(path).ok().filter(|m| m.is_file()) else {
            return false;
        };
        let stamp = Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
        };
        // Untouched for `settle` already (a frame that was waiting in the folder):
        // no second poll needed, so a button press finds it on the first capture.
        let age = stamp
            .modified
            .and_then(|m| SystemTime::now().duration_since(m).ok());
        if !self.settle.is_zero() && age.is_some_and(|age| age >= self.settle) {
            return true;
        }
        match self.pending.get(path) {
            Some((before, since)) if *before == stamp => now.duration_since(*since) >= self.settle,
            _ => {
                self.pending.insert(path.to_path_buf(), (stamp, now));
                false
            }
        }
    }
}

impl Camera for DirectoryCamera {
    /// The first settled unseen file by name. A file that does not decode is
    /// marked seen and reported, so one bad file never blocks the ones after it.
    fn capture(&mut self) -> Result<Option<Frame>, CameraError> {
        let files = self.listing()?;
        let present: BTreeSet<&PathBuf> = files.iter().collect();
        self.seen.retain(|p| present.contains(p));
        self.pending.retain(|p, _| present.contains(p));
        let now = Instant::now();
        for path in files {
            if self.seen.contains(&path) || !self.settled(&path, now) {
                continue;
            }
            self.pending.remove(&path);
            self.seen.insert(path.clone());
            return Ok(Some(Frame {
                image: load_image(&path)?,
                source: path.display().to_string(),
            }));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls until a frame (or an error) comes, at most `polls` times.
    fn next(cam: &mut DirectoryCamera, polls: usize) -> Option<Result<Frame, CameraError>> {
        (0..polls).find_map(|_| cam.capture().transpose())
    }

    #[test]
    fn new_files_become_frames_in_order_and_a_bad_one_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let img = image::RgbImage::from_pixel(4, 4, image::Rgb([1, 2, 3]));
        img.save(dir.path().join("old.png")).unwrap();
        let mut cam = DirectoryCamera::new(dir.path(), false, Duration::ZERO).unwrap();
        assert!(next(&mut cam, 3).is_none(), "files present at start are not new");
        img.save(dir.path().join("b.png")).unwrap();
        std::fs::write(dir.path().join("a.png"), b"not a png").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"ignored").unwrap();
        std::fs::create_dir(dir.path().join("folder.png")).unwrap();
        let err = next(&mut cam, 3).unwrap().err().unwrap().to_string();
        assert!(err.contains("a.png"), "{err}");
        let frame = next(&mut cam, 3).unwrap().unwrap();
        assert!(frame.source.ends_with("b.png"));
        assert!(next(&mut cam, 3).is_none());
    }

    /// A frame arriving in two writes (a slow `scp`) is read once, whole.
    #[test]
    fn a_file_still_being_written_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut png = Vec::new();
        image::RgbImage::from_pixel(8, 8, image::Rgb([9, 9, 9]))
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let mut cam = DirectoryCamera::new(dir.path(), true, Duration::ZERO).unwrap();
        let path = dir.path().join("frame.png");
        std::fs::write(&path, &png[..png.len() / 2]).unwrap();
        assert!(cam.capture().unwrap().is_none(), "read while being written");
        std::fs::write(&path, &png).unwrap();
        assert!(cam.capture().unwrap().is_none(), "read right after it changed");
        let frame = cam.capture().unwrap().unwrap();
        assert_eq!(frame.image.dimensions(), (8, 8));

        // With a settle time, even a stable file waits that long.
        let mut slow = DirectoryCamera::new(dir.path(), true, Duration::from_secs(3600)).unwrap();
        assert!(next(&mut slow, 3).is_none());
        // A file already that old is read on the first capture (a button press
        // captures once).
        let mut prompt = DirectoryCamera::new(dir.path(), true, Duration::from_millis(50)).unwrap();
        std::thread::sleep(Duration::from_millis(120));
        assert!(
            prompt.capture().unwrap().is_some(),
            "an old file waited for a second poll"
        );
    }

    #[test]
    fn names_of_files_that_left_the_folder_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let img = image::RgbImage::from_pixel(2, 2, image::Rgb([0, 0, 0]));
        let mut cam = DirectoryCamera::new(dir.path(), true, Duration::ZERO).unwrap();
        for i in 0..20 {
            let path = dir.path().join(format!("{i:03}.png"));
            img.save(&path).unwrap();
            assert!(next(&mut cam, 3).unwrap().is_ok());
            std::fs::remove_file(&path).unwrap();
        }
        assert!(next(&mut cam, 1).is_none());
        assert!(cam.seen.is_empty() && cam.pending.is_empty(), "{:?}", cam.seen);
    }
}

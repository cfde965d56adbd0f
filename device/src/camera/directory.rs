//! A folder watched for new image files: each file that appears becomes one frame,
//! in name order (a camera app or `scp` drops them there).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use edgevlm_shared::preprocess::load_image;

use super::{Camera, CameraError, Frame};

pub struct DirectoryCamera {
    dir: PathBuf,
    seen: BTreeSet<PathBuf>,
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
    pub fn new(dir: &Path, existing: bool) -> Result<Self, CameraError> {
        let mut camera = Self {
            dir: dir.to_path_buf(),
            seen: BTreeSet::new(),
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
}

impl Camera for DirectoryCamera {
    /// The oldest unseen file by name. A file that does not decode is marked seen
    /// and reported, so one bad file never blocks the ones after it.
    fn capture(&mut self) -> Result<Option<Frame>, CameraError> {
        let Some(next) = self.listing()?.into_iter().find(|p| !self.seen.contains(p)) else {
            return Ok(None);
        };
        self.seen.insert(next.clone());
        Ok(Some(Frame {
            image: load_image(&next)?,
            source: next.display().to_string(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_files_become_frames_in_order_and_a_bad_one_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let img = image::RgbImage::from_pixel(4, 4, image::Rgb([1, 2, 3]));
        img.save(dir.path().join("old.png")).unwrap();
        let mut cam = DirectoryCamera::new(dir.path(), false).unwrap();
        assert!(
            cam.capture().unwrap().is_none(),
            "files present at start are not new"
        );
        img.save(dir.path().join("b.png")).unwrap();
        std::fs::write(dir.path().join("a.png"), b"not a png").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"ignored").unwrap();
        let err = cam.capture().unwrap_err().to_string();
        assert!(err.contains("a.png"), "{err}");
        let frame = cam.capture().unwrap().unwrap();
        assert!(frame.source.ends_with("b.png"));
        assert!(cam.capture().unwrap().is_none());
    }
}

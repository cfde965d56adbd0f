//! Frame sources. Every frame becomes model input through the shared
//! preprocessing inside the runtime, whatever the source.

mod directory;
mod v4l2;

pub use directory::{DirectoryCamera, DEFAULT_SETTLE as DIRECTORY_SETTLE};
pub use v4l2::{decode_frame, yuyv_to_rgb, FrameError, FrameFormat, PixelFormat, V4l2Camera};

use std::path::{Path, PathBuf};

use edgevlm_shared::preprocess::load_image;
use edgevlm_shared::rng::SplitMix64;
use edgevlm_shared::synth::{render, Scene};
use image::RgbImage;

#[derive(Debug, thiserror::Error)]
pub enum CameraError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Image(#[from] edgevlm_shared::Error),
}

/// A captured frame and where it came from (for the event).
#[derive(Debug)]
pub struct Frame {
    pub image: RgbImage,
    pub source: String,
}

pub trait Camera {
    /// The next frame; `Ok(None)` when none is available yet (or the source ended).
    fn capture(&mut self) -> Result<Option<Frame>, CameraError>;
}

/// Opens a V4L2 camera from the device config's fields.
pub fn v4l2(
    path: &Path,
    width: u32,
    height: u32,
    fps: u32,
    format: &str,
) -> Result<Box<dyn Camera>, CameraError> {
    let format = PixelFormat::parse(format).ok_or_else(|| CameraError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("camera.format {format:?}: expected \"mjpeg\" or \"yuyv\""),
        ),
    })?;
    Ok(Box::new(V4l2Camera::open(path, width, height, fps, format)?))
}

/// The same image file on every capture (re-read, so a replaced file is seen).
pub struct StillCamera {
    path: PathBuf,
}

impl StillCamera {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
        }
    }
}

impl Camera for StillCamera {
    fn capture(&mut self) -> Result<Option<Frame>, CameraError> {
        Ok(Some(Frame {
            image: load_image(&self.path)?,
            source: self.path.display().to_string(),
        }))
    }
}

/// Renders a new synthetic scene per capture, with the generator of the training
/// data (seeded: the same seed gives the same frames).
pub struct SyntheticCamera {
    rng: SplitMix64,
    size: u32,
    count: u64,
}

impl SyntheticCamera {
    pub fn new(seed: u64, size: u32) -> Self {
        Self {
            rng: SplitMix64::new(seed),
            size,
            count: 0,
        }
    }
}

impl Camera for SyntheticCamera {
    fn capture(&mut self) -> Result<Option<Frame>, CameraError> {
        let scene = Scene::generate(&mut self.rng, self.size);
        self.count += 1;
        Ok(Some(Frame {
            image: render(&scene),
            source: format!("synthetic:{}", self.count),
        }))
    }
}

//! One V4L2 buffer to RGB: MJPEG through the shared decoder (under its size
//! limits), YUYV 4:2:2 here. Plain functions of the bytes and the format the
//! driver agreed to, so recorded frames go through exactly the camera's path
//! in tests (`frame_tests.rs`).

use std::path::Path;

use edgevlm_shared::preprocess::{decode_image_as, MAX_IMAGE_SIDE};
use image::RgbImage;

use super::abi::{PixFormat, V4L2_PIX_FMT_MJPEG, V4L2_PIX_FMT_YUYV};

/// Pixel formats as the kernel's fourcc codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    Mjpeg,
    Yuyv,
}

impl PixelFormat {
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "mjpeg" | "mjpg" => Some(Self::Mjpeg),
            "yuyv" | "yuy2" => Some(Self::Yuyv),
            _ => None,
        }
    }

    pub fn fourcc(self) -> u32 {
        match self {
            Self::Mjpeg => V4L2_PIX_FMT_MJPEG,
            Self::Yuyv => V4L2_PIX_FMT_YUYV,
        }
    }

    pub fn from_fourcc(fourcc: u32) -> Option<Self> {
        [Self::Mjpeg, Self::Yuyv]
            .into_iter()
            .find(|f| f.fourcc() == fourcc)
    }
}

impl std::fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Mjpeg => "MJPEG",
            Self::Yuyv => "YUYV",
        })
    }
}

/// How to read a buffer: what VIDIOC_S_FMT answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameFormat {
    pub pixel: PixelFormat,
    pub width: u32,
    pub height: u32,
    /// Bytes from one YUYV line to the next (padding allowed); 0: packed.
    pub bytesperline: u32,
    /// The most bytes a frame may hold; 0: exactly the packed size for YUYV,
    /// no bound but the decoder's limits for MJPEG.
    pub sizeimage: u32,
}

impl FrameFormat {
    /// Packed frames of this size.
    pub fn new(pixel: PixelFormat, width: u32, height: u32) -> Self {
        Self {
            pixel,
            width,
            height,
            bytesperline: 0,
            sizeimage: 0,
        }
    }

    /// The driver's answer; `None` for a fourcc this source does not decode.
    pub(super) fn from_pix(pix: &PixFormat) -> Option<Self> {
        Some(Self {
            pixel: PixelFormat::from_fourcc(pix.pixelformat)?,
            width: pix.width,
            height: pix.height,
            bytesperline: pix.bytesperline,
            sizeimage: pix.sizeimage,
        })
    }

    fn yuyv_stride(&self) -> usize {
        (self.bytesperline as usize).max(self.width as usize * 2)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("truncated {pixel} frame: {got} bytes, {want} needed for {width}x{height}")]
    Truncated {
        pixel: PixelFormat,
        got: usize,
        want: usize,
        width: u32,
        height: u32,
    },
    #[error("oversized {pixel} frame: {got} bytes, at most {max} for {width}x{height}")]
    Oversized {
        pixel: PixelFormat,
        got: usize,
        max: usize,
        width: u32,
        height: u32,
    },
    #[error("MJPEG frame of {got} bytes ends without an end-of-image marker (FF D9): cut short")]
    NoEndOfImage { got: usize },
    #[error("MJPEG frame is {got_width}x{got_height}, the camera agreed to {width}x{height}")]
    WrongSize {
        got_width: u32,
        got_height: u32,
        width: u32,
        height: u32,
    },
    #[error("YUYV {width}x{height} with {bytesperline} bytes a line: the width must be even and non-zero, and so the height")]
    BadYuyvLayout {
        width: u32,
        height: u32,
        bytesperline: u32,
    },
    #[error(transparent)]
    Decode(#[from] edgevlm_shared::Error),
}

/// Decodes one frame; `name` labels decoder errors (`/dev/video0 (MJPEG frame 3)`).
pub fn decode_frame(bytes: &[u8], format: &FrameFormat, name: &Path) -> Result<RgbImage, FrameError> {
    match format.pixel {
        PixelFormat::Mjpeg => decode_mjpeg(bytes, format, name),
        PixelFormat::Yuyv => decode_yuyv(bytes, format),
    }
}

fn decode_mjpeg(bytes: &[u8], format: &FrameFormat, name: &Path) -> Result<RgbImage, FrameError> {
    let (pixel, width, height) = (format.pixel, format.width, format.height);
    if format.sizeimage != 0 && bytes.len() > format.sizeimage as usize {
        return Err(FrameError::Oversized {
            pixel,
            got: bytes.len(),
            max: format.sizeimage as usize,
            width,
            height,
        });
    }
    // Some cameras pad a frame with zeroes after its end-of-image marker; a
    // frame cut short (a USB hiccup) has none, and decoders fill in grey.
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    if !bytes[..end].ends_with(&[0xff, 0xd9]) {
        return Err(FrameError::NoEndOfImage { got: bytes.len() });
    }
    let jpeg = super::huffman::with_standard_tables(bytes);
    let image = decode_image_as(&jpeg, name, image::ImageFormat::Jpeg)?;
    if image.dimensions() != (width, height) {
        return Err(FrameError::WrongSize {
            got_width: image.width(),
            got_height: image.height(),
            width,
            height,
        });
    }
    Ok(image)
}

fn decode_yuyv(bytes: &[u8], format: &FrameFormat) -> Result<RgbImage, FrameError> {
    let (pixel, width, height) = (format.pixel, format.width, format.height);
    let layout = FrameError::BadYuyvLayout {
        width,
        height,
        bytesperline: format.bytesperline,
    };
    // The driver's sizes are bounded like any decoded image's, and multiplied
    // without overflow on a 32-bit board.
    if width == 0 || height == 0 || !width.is_multiple_of(2) || width.max(height) > MAX_IMAGE_SIDE {
        return Err(layout);
    }
    let stride = format.yuyv_stride();
    let Some(want) = stride.checked_mul(height as usize) else {
        return Err(layout);
    };
    let max = (format.sizeimage as usize).max(want);
    if bytes.len() < want {
        let got = bytes.len();
        return Err(FrameError::Truncated {
            pixel,
            got,
            want,
            width,
            height,
        });
    }
    if bytes.len() > max {
        let got = bytes.len();
        return Err(FrameError::Oversized {
            pixel,
            got,
            max,
            width,
            height,
        });
    }
    let line = width as usize * 2;
    let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
    for row in bytes[..want].chunks_exact(stride) {
        for quad in row[..line].chunks_exact(4) {
            yuyv_pair(quad, &mut rgb);
        }
    }
    RgbImage::from_raw(width, height, rgb).ok_or(FrameError::BadYuyvLayout {
        width,
        height,
        bytesperline: format.bytesperline,
    })
}

/// Y0 U Y1 V (BT.601, limited range) to two RGB pixels.
fn yuyv_pair(quad: &[u8], rgb: &mut Vec<u8>) {
    let (u, v) = (f32::from(quad[1]) - 128.0, f32::from(quad[3]) - 128.0);
    for y in [quad[0], quad[2]] {
        let c = 1.164 * (f32::from(y) - 16.0);
        let to_u8 = |x: f32| x.round().clamp(0.0, 255.0) as u8;
        rgb.extend([
            to_u8(c + 1.596 * v),
            to_u8(c - 0.392 * u - 0.813 * v),
            to_u8(c + 2.017 * u),
        ]);
    }
}

/// YUYV 4:2:2 (Y0 U Y1 V per two pixels, BT.601 limited range) to RGB, packed
/// lines; `None` for an odd width or too few bytes.
pub fn yuyv_to_rgb(bytes: &[u8], width: u32, height: u32) -> Option<RgbImage> {
    let packed = width as usize * height as usize * 2;
    let format = FrameFormat::new(PixelFormat::Yuyv, width, height);
    decode_yuyv(bytes.get(..packed)?, &format).ok()
}

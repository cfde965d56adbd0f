//! A V4L2 capture device (`/dev/videoN`, a USB UVC or CSI camera) through the
//! kernel's ioctl interface directly: memory-mapped streaming, MJPEG or YUYV. No
//! system library is needed, so this is always built.

use std::ffi::c_void;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use edgevlm_shared::preprocess::decode_image_as;
use image::RgbImage;

use super::{Camera, CameraError, Frame};
use abi::*;

mod abi;
#[cfg(all(test, target_pointer_width = "64"))]
mod abi_tests;

const BUFFERS: u32 = 4;
const FRAME_TIMEOUT_MS: i32 = 3000;

/// One MJPEG frame, under the shared decoding limits (a camera, or whatever
/// pretends to be one on the USB port, must not make us allocate at will).
fn decode_mjpeg(bytes: &[u8], path: &Path, frame: u64) -> Result<RgbImage, CameraError> {
    let name = PathBuf::from(format!("{} (MJPEG frame {frame})", path.display()));
    Ok(decode_image_as(bytes, &name, image::ImageFormat::Jpeg)?)
}

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

    fn fourcc(self) -> u32 {
        match self {
            Self::Mjpeg => V4L2_PIX_FMT_MJPEG,
            Self::Yuyv => V4L2_PIX_FMT_YUYV,
        }
    }
}

struct Mapping {
    ptr: *mut c_void,
    len: usize,
}

pub struct V4l2Camera {
    path: PathBuf,
    file: File,
    format: PixelFormat,
    width: u32,
    height: u32,
    buffers: Vec<Mapping>,
    frames: u64,
}

impl V4l2Camera {
    pub fn open(
        path: &Path,
        width: u32,
        height: u32,
        fps: u32,
        format: PixelFormat,
    ) -> Result<Self, CameraError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| CameraError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        let mut camera = Self {
            path: path.to_path_buf(),
            file,
            format,
            width,
            height,
            buffers: Vec::new(),
            frames: 0,
        };
        let mut cap = Capability::zeroed();
        camera.ioctl(VIDIOC_QUERYCAP, &mut cap, "VIDIOC_QUERYCAP (not a V4L2 device?)")?;
        // `device_caps` describes this node; `capabilities` the whole device.
        let caps = if cap.capabilities & V4L2_CAP_DEVICE_CAPS != 0 {
            cap.device_caps
        } else {
            cap.capabilities
        };
        if caps & V4L2_CAP_VIDEO_CAPTURE == 0 || caps & V4L2_CAP_STREAMING == 0 {
            return Err(camera.unsupported("no video capture with streaming I/O"));
        }
        let mut fmt = Format::zeroed();
        fmt.r#type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
        fmt.fmt.pix = PixFormat {
            width,
            height,
            pixelformat: format.fourcc(),
            ..PixFormat::zeroed()
        };
        camera.ioctl(VIDIOC_S_FMT, &mut fmt, "VIDIOC_S_FMT")?;
        // SAFETY: for V4L2_BUF_TYPE_VIDEO_CAPTURE the driver answers in `pix`.
        let pix = unsafe { fmt.fmt.pix };
        if pix.pixelformat != format.fourcc() {
            return Err(camera.unsupported(&format!("the camera does not offer {format:?}")));
        }
        // The driver picks the nearest size it has.
        camera.width = pix.width;
        camera.height = pix.height;
        let mut parm = StreamParm::zeroed();
        parm.r#type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
        parm.parm.capture = CaptureParm {
            timeperframe: Fract {
                numerator: 1,
                denominator: fps.max(1),
            },
            ..CaptureParm::zeroed()
        };
        // Not every driver lets the rate be set; its own rate is fine then.
        let _ = camera.ioctl(VIDIOC_S_PARM, &mut parm, "VIDIOC_S_PARM");
        camera.start()?;
        Ok(camera)
    }

    fn unsupported(&self, what: &str) -> CameraError {
        CameraError::Io {
            path: self.path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::Unsupported, what.to_string()),
        }
    }

    fn ioctl<T>(&self, request: u64, arg: &mut T, what: &str) -> Result<(), CameraError> {
        // SAFETY: `arg` is the structure `request` was computed for.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), request as _, arg as *mut T) };
        if rc < 0 {
            let os = std::io::Error::last_os_error();
            return Err(CameraError::Io {
                path: self.path.clone(),
                source: std::io::Error::new(os.kind(), format!("{what}: {os}")),
            });
        }
        Ok(())
    }

    fn start(&mut self) -> Result<(), CameraError> {
        let mut req = RequestBuffers {
            count: BUFFERS,
            r#type: V4L2_BUF_TYPE_VIDEO_CAPTURE,
            memory: V4L2_MEMORY_MMAP,
            ..RequestBuffers::zeroed()
        };
        self.ioctl(VIDIOC_REQBUFS, &mut req, "VIDIOC_REQBUFS")?;
        for index in 0..req.count {
            let mut buf = self.buffer(index);
            self.ioctl(VIDIOC_QUERYBUF, &mut buf, "VIDIOC_QUERYBUF")?;
            // SAFETY: for V4L2_MEMORY_MMAP the driver answers in `m.offset`.
            let offset = unsafe { buf.m.offset };
            // SAFETY: maps the driver's buffer as it describes it; unmapped in Drop.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    buf.length as usize,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    self.file.as_raw_fd(),
                    offset as libc::off_t,
                )
            };
            if ptr == libc::MAP_FAILED {
                return Err(CameraError::Io {
                    path: self.path.clone(),
                    source: std::io::Error::last_os_error(),
                });
            }
            self.buffers.push(Mapping {
                ptr,
                len: buf.length as usize,
            });
            self.ioctl(VIDIOC_QBUF, &mut buf, "VIDIOC_QBUF")?;
        }
        let mut kind = V4L2_BUF_TYPE_VIDEO_CAPTURE as i32;
        self.ioctl(VIDIOC_STREAMON, &mut kind, "VIDIOC_STREAMON")
    }

    fn buffer(&self, index: u32) -> Buffer {
        let mut buf = Buffer::zeroed();
        buf.index = index;
        buf.r#type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
        buf.memory = V4L2_MEMORY_MMAP;
        buf
    }

    fn decode(&self, bytes: &[u8]) -> Result<RgbImage, CameraError> {
        let bad = |what: String| self.unsupported(&what);
        match self.format {
            PixelFormat::Mjpeg => decode_mjpeg(bytes, &self.path, self.frames),
            PixelFormat::Yuyv => yuyv_to_rgb(bytes, self.width, self.height).ok_or_else(|| {
                bad(format!(
                    "frame {}: short YUYV frame ({} bytes)",
                    self.frames,
                    bytes.len()
                ))
            }),
        }
    }
}

impl Camera for V4l2Camera {
    fn capture(&mut self) -> Result<Option<Frame>, CameraError> {
        let mut poll = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut poll, 1, FRAME_TIMEOUT_MS) };
        if ready <= 0 {
            return Err(self.unsupported(&format!("no frame within {FRAME_TIMEOUT_MS} ms")));
        }
        let mut buf = self.buffer(0);
        self.ioctl(VIDIOC_DQBUF, &mut buf, "VIDIOC_DQBUF")?;
        let mapping = &self.buffers[buf.index as usize];
        let used = (buf.bytesused as usize).min(mapping.len);
        // SAFETY: the driver filled `used` bytes of this mapped buffer and
        // leaves it to us until it is queued again below.
        let bytes = unsafe { std::slice::from_raw_parts(mapping.ptr as *const u8, used) }.to_vec();
        self.ioctl(VIDIOC_QBUF, &mut buf, "VIDIOC_QBUF")?;
        self.frames += 1;
        Ok(Some(Frame {
            image: self.decode(&bytes)?,
            source: format!("{}#{}", self.path.display(), self.frames),
        }))
    }
}

impl Drop for V4l2Camera {
    fn drop(&mut self) {
        let mut kind = V4L2_BUF_TYPE_VIDEO_CAPTURE as i32;
        let _ = self.ioctl(VIDIOC_STREAMOFF, &mut kind, "VIDIOC_STREAMOFF");
        for m in &self.buffers {
            // SAFETY: each mapping was created by mmap in `start`.
            unsafe { libc::munmap(m.ptr, m.len) };
        }
    }
}

/// YUYV 4:2:2 (Y0 U Y1 V per two pixels, BT.601 limited range) to RGB.
pub fn yuyv_to_rgb(bytes: &[u8], width: u32, height: u32) -> Option<RgbImage> {
    let pixels = width as usize * height as usize;
    if !width.is_multiple_of(2) || bytes.len() < pixels * 2 {
        return None;
    }
    let mut rgb = Vec::with_capacity(pixels * 3);
    for quad in bytes[..pixels * 2].chunks_exact(4) {
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
    RgbImage::from_raw(width, height, rgb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_black_white_and_red_convert() {
        // Black (Y 16), white (Y 235) with neutral chroma, then BT.601 red (81, 90, 240).
        let bytes = [16, 128, 235, 128, 81, 90, 81, 240];
        let img = yuyv_to_rgb(&bytes, 4, 1).unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(1, 0).0, [255, 255, 255]);
        let red = img.get_pixel(2, 0).0;
        assert!(red[0] >= 250 && red[1] <= 5 && red[2] <= 5, "{red:?}");
        assert!(yuyv_to_rgb(&bytes[..6], 4, 1).is_none());
    }

    #[test]
    fn mjpeg_frames_wider_than_the_decoding_limit_are_refused() {
        let mut wide = Vec::new();
        let side = edgevlm_shared::preprocess::MAX_IMAGE_SIDE + 8;
        RgbImage::new(side, 8)
            .write_to(&mut std::io::Cursor::new(&mut wide), image::ImageFormat::Jpeg)
            .unwrap();
        let err = decode_mjpeg(&wide, Path::new("/dev/video0"), 3)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/dev/video0 (MJPEG frame 3)") && err.contains("refused"),
            "{err}"
        );
    }

    #[test]
    fn missing_device_is_named() {
        let err = V4l2Camera::open(Path::new("/dev/video-none"), 640, 480, 15, PixelFormat::Mjpeg)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/dev/video-none"), "{err}");
    }

    #[test]
    fn a_file_that_is_not_a_camera_is_refused_by_name() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let err = V4l2Camera::open(file.path(), 640, 480, 15, PixelFormat::Yuyv)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("VIDIOC_QUERYCAP"), "{err}");
    }
}

//! A V4L2 capture device (`/dev/videoN`, a USB UVC or CSI camera) through the
//! kernel's ioctl interface directly: memory-mapped streaming, MJPEG or YUYV. No
//! system library is needed, so this is always built.

use std::ffi::c_void;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use image::RgbImage;

use super::{Camera, CameraError, Frame};
use abi::*;
pub use frame::{decode_frame, yuyv_to_rgb, FrameError, FrameFormat, PixelFormat};

mod abi;
#[cfg(all(test, target_pointer_width = "64"))]
mod abi_tests;
mod frame;
#[cfg(test)]
mod frame_tests;
mod huffman;

const BUFFERS: u32 = 4;
const FRAME_TIMEOUT_MS: i32 = 3000;
/// Frames the driver may flag corrupt in a row before a capture fails.
const CORRUPT_IN_A_ROW: u32 = 3;

struct Mapping {
    ptr: *mut c_void,
    len: usize,
}

pub struct V4l2Camera {
    path: PathBuf,
    file: File,
    /// What the driver agreed to (its nearest size, its line padding).
    format: FrameFormat,
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
            format: FrameFormat::new(format, width, height),
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
        camera.format = match FrameFormat::from_pix(&pix) {
            Some(agreed) if agreed.pixel == format => agreed,
            _ => return Err(camera.unsupported(&format!("the camera does not offer {format}"))),
        };
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
}

impl Camera for V4l2Camera {
    fn capture(&mut self) -> Result<Option<Frame>, CameraError> {
        for _ in 0..CORRUPT_IN_A_ROW {
            if let Some(image) = self.next_frame()? {
                return Ok(Some(Frame {
                    image,
                    source: format!("{}#{}", self.path.display(), self.frames),
                }));
            }
        }
        Err(self.unsupported(&format!(
            "{CORRUPT_IN_A_ROW} frames in a row flagged corrupt by the driver"
        )))
    }
}

impl V4l2Camera {
    /// The next frame, decoded; `None` when the driver flags its data corrupt
    /// (lost USB packets, say). A press of the button must still get a frame,
    /// so `capture` then takes the next one.
    fn next_frame(&mut self) -> Result<Option<RgbImage>, CameraError> {
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
        let Some(mapping) = self.buffers.get(buf.index as usize) else {
            let what = format!("VIDIOC_DQBUF: buffer {} was never mapped", buf.index);
            return Err(self.unsupported(&what));
        };
        self.frames += 1;
        let name = PathBuf::from(format!(
            "{} ({} frame {})",
            self.path.display(),
            self.format.pixel,
            self.frames
        ));
        let used = buf.bytesused as usize;
        let decoded = if buf.flags & V4L2_BUF_FLAG_ERROR != 0 {
            None
        } else if used > mapping.len {
            Some(Err(FrameError::Oversized {
                pixel: self.format.pixel,
                got: used,
                max: mapping.len,
                width: self.format.width,
                height: self.format.height,
            }))
        } else {
            // SAFETY: the driver filled `used` bytes of this mapped buffer and
            // leaves it to us until it is queued again below.
            let bytes = unsafe { std::slice::from_raw_parts(mapping.ptr as *const u8, used) };
            Some(decode_frame(bytes, &self.format, &name))
        };
        self.ioctl(VIDIOC_QBUF, &mut buf, "VIDIOC_QBUF")?;
        match decoded {
            None => Ok(None),
            Some(Ok(image)) => Ok(Some(image)),
            Some(Err(FrameError::Decode(e))) => Err(CameraError::Image(e)),
            Some(Err(e)) => Err(CameraError::Io {
                path: name,
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            }),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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

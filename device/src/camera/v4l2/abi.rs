//! The kernel's V4L2 structures and ioctl numbers, as `linux/videodev2.h`
//! declares them for user space. Field names are the kernel's (`r#type`,
//! `r#priv`), so the layout test (`abi_tests.rs`) can name every field in C
//! from its Rust path and let the C compiler compare the two.
//!
//! Alignment follows the kernel's unions: `v4l2_format.fmt` holds a
//! `v4l2_window` with pointers, so it is pointer-aligned (offset 8 on 64-bit
//! targets), and `v4l2_buffer.m` holds an `unsigned long`/pointer.

use std::ffi::{c_ulong, c_void};
use std::mem::{align_of, size_of};

pub const V4L2_BUF_TYPE_VIDEO_CAPTURE: u32 = 1;
pub const V4L2_MEMORY_MMAP: u32 = 1;
pub const V4L2_CAP_VIDEO_CAPTURE: u32 = 0x0000_0001;
pub const V4L2_CAP_STREAMING: u32 = 0x0400_0000;
pub const V4L2_CAP_DEVICE_CAPS: u32 = 0x8000_0000;
/// `v4l2_buffer.flags`: the driver filled the buffer but the data is corrupt.
pub const V4L2_BUF_FLAG_ERROR: u32 = 0x0000_0040;

/// `v4l2_fourcc(a, b, c, d)`.
const fn fourcc(code: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*code)
}
pub const V4L2_PIX_FMT_MJPEG: u32 = fourcc(b"MJPG");
pub const V4L2_PIX_FMT_YUYV: u32 = fourcc(b"YUYV");

/// `struct v4l2_capability` (VIDIOC_QUERYCAP).
#[repr(C)]
pub struct Capability {
    pub driver: [u8; 16],
    pub card: [u8; 32],
    pub bus_info: [u8; 32],
    pub version: u32,
    pub capabilities: u32,
    pub device_caps: u32,
    pub reserved: [u32; 3],
}

/// `struct v4l2_pix_format`. `ycbcr_enc` is an anonymous union with the
/// equally sized `hsv_enc` in C.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PixFormat {
    pub width: u32,
    pub height: u32,
    pub pixelformat: u32,
    pub field: u32,
    pub bytesperline: u32,
    pub sizeimage: u32,
    pub colorspace: u32,
    pub r#priv: u32,
    pub flags: u32,
    pub ycbcr_enc: u32,
    pub quantization: u32,
    pub xfer_func: u32,
}

/// The `fmt` union of `struct v4l2_format`: 200 bytes, aligned like the
/// pointers inside `struct v4l2_window`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union FormatUnion {
    pub pix: PixFormat,
    pub raw_data: [u8; 200],
    /// `v4l2_window` holds `struct v4l2_clip *clips` and `void *bitmap`.
    pub win_pointers: [*mut c_void; 0],
}

/// `struct v4l2_format` (VIDIOC_S_FMT).
#[repr(C)]
pub struct Format {
    pub r#type: u32,
    pub fmt: FormatUnion,
}

/// `struct v4l2_fract`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Fract {
    pub numerator: u32,
    pub denominator: u32,
}

/// `struct v4l2_captureparm`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CaptureParm {
    pub capability: u32,
    pub capturemode: u32,
    pub timeperframe: Fract,
    pub extendedmode: u32,
    pub readbuffers: u32,
    pub reserved: [u32; 4],
}

/// The `parm` union of `struct v4l2_streamparm` (only plain `__u32`s: 4-byte aligned).
#[repr(C)]
#[derive(Clone, Copy)]
pub union StreamParmUnion {
    pub capture: CaptureParm,
    pub raw_data: [u8; 200],
}

/// `struct v4l2_streamparm` (VIDIOC_S_PARM).
#[repr(C)]
pub struct StreamParm {
    pub r#type: u32,
    pub parm: StreamParmUnion,
}

/// `struct v4l2_requestbuffers` (VIDIOC_REQBUFS).
#[repr(C)]
pub struct RequestBuffers {
    pub count: u32,
    pub r#type: u32,
    pub memory: u32,
    pub capabilities: u32,
    pub flags: u8,
    pub reserved: [u8; 3],
}

/// `struct v4l2_timecode`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Timecode {
    pub r#type: u32,
    pub flags: u32,
    pub frames: u8,
    pub seconds: u8,
    pub minutes: u8,
    pub hours: u8,
    pub userbits: [u8; 4],
}

/// The `m` union of `struct v4l2_buffer`: as wide and aligned as `unsigned long`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union BufferM {
    pub offset: u32,
    pub userptr: c_ulong,
    /// `struct v4l2_plane *` (multi-planar buffers; unused here).
    pub planes: *mut c_void,
    pub fd: i32,
}

/// `struct v4l2_buffer` (VIDIOC_QUERYBUF, VIDIOC_QBUF, VIDIOC_DQBUF). The
/// timestamp is the C library's `struct timeval`; `request_fd` is an anonymous
/// union with the equally sized `reserved` in C.
#[repr(C)]
pub struct Buffer {
    pub index: u32,
    pub r#type: u32,
    pub bytesused: u32,
    pub flags: u32,
    pub field: u32,
    pub timestamp: libc::timeval,
    pub timecode: Timecode,
    pub sequence: u32,
    pub memory: u32,
    pub m: BufferM,
    pub length: u32,
    pub reserved2: u32,
    pub request_fd: i32,
}

/// The structures above hold only integers, arrays, unions of those and raw
/// pointers: all zeroes is a valid value of each (null pointers).
pub trait Zeroed: Sized {
    fn zeroed() -> Self {
        // SAFETY: implemented only for the plain C structures of this file.
        unsafe { std::mem::zeroed() }
    }
}
impl Zeroed for Capability {}
impl Zeroed for PixFormat {}
impl Zeroed for Format {}
impl Zeroed for CaptureParm {}
impl Zeroed for StreamParm {}
impl Zeroed for RequestBuffers {}
impl Zeroed for Buffer {}

// Sizes from videodev2.h where they are the same on every 64-bit Linux target
// (x86_64, aarch64); the layout test checks every field against the headers.
#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(size_of::<Capability>() == 104);
    assert!(size_of::<PixFormat>() == 48);
    assert!(size_of::<Format>() == 208 && align_of::<Format>() == 8);
    assert!(std::mem::offset_of!(Format, fmt) == 8);
    assert!(size_of::<StreamParm>() == 204);
    assert!(size_of::<RequestBuffers>() == 20);
    assert!(size_of::<Buffer>() == 88 && align_of::<Buffer>() == 8);
    assert!(std::mem::offset_of!(Buffer, m) == 64);
};

/// `_IOC(dir, 'V', nr, size)` from `asm-generic/ioctl.h` (x86 and arm64 use it).
const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | ((b'V' as u64) << 8) | nr
}
const IOC_WRITE: u64 = 1;
const IOC_READ: u64 = 2;
const fn ior<T>(nr: u64) -> u64 {
    ioc(IOC_READ, nr, size_of::<T>())
}
const fn iow<T>(nr: u64) -> u64 {
    ioc(IOC_WRITE, nr, size_of::<T>())
}
const fn iowr<T>(nr: u64) -> u64 {
    ioc(IOC_READ | IOC_WRITE, nr, size_of::<T>())
}

pub const VIDIOC_QUERYCAP: u64 = ior::<Capability>(0);
pub const VIDIOC_S_FMT: u64 = iowr::<Format>(5);
pub const VIDIOC_REQBUFS: u64 = iowr::<RequestBuffers>(8);
pub const VIDIOC_QUERYBUF: u64 = iowr::<Buffer>(9);
pub const VIDIOC_QBUF: u64 = iowr::<Buffer>(15);
pub const VIDIOC_DQBUF: u64 = iowr::<Buffer>(17);
pub const VIDIOC_STREAMON: u64 = iow::<i32>(18);
pub const VIDIOC_STREAMOFF: u64 = iow::<i32>(19);
pub const VIDIOC_S_PARM: u64 = iowr::<StreamParm>(22);

//! A camera frame as a V4L2 driver may hand it over: arbitrary bytes under an
//! arbitrary (driver-reported) format, YUYV and MJPEG. Decoding must return an
//! image of the announced size or an error, never panic or over-allocate.
#![no_main]

use std::path::Path;

use edgevlm_device::camera::{decode_frame, FrameFormat, PixelFormat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 13 {
        return;
    }
    let word = |i: usize| u32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
    let pixel = if data[0] & 1 == 0 { PixelFormat::Yuyv } else { PixelFormat::Mjpeg };
    // Small sides most of the time, so decoding is reached, any size sometimes.
    let side = |w: u32| if data[0] & 2 == 0 { w % 256 } else { w };
    let mut format = FrameFormat::new(pixel, side(word(1)), side(word(5)));
    format.bytesperline = word(9) % 4096;
    if let Ok(image) = decode_frame(&data[13..], &format, Path::new("fuzz")) {
        assert_eq!((image.width(), image.height()), (format.width, format.height));
    }
});

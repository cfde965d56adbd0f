//! Recorded frames through the V4L2 source's decoding path. The fixtures in
//! device/tests/fixtures/v4l2/ come from `regenerate_fixtures` below (run it
//! with `-- --ignored` after fetching models/pretrained/samples):
//!
//! - `chelsea-64x48.png`: the reference RGB, scikit-image's chelsea resized to
//!   32x48 and each pixel doubled sideways, so that 4:2:2 chroma loses nothing;
//! - `chelsea-64x48.yuyv`: the reference in YUYV, BT.601 limited range
//!   (Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, Cb and Cr alike), 6144 bytes;
//! - `chelsea-64x48.mjpg`: the reference as a quality-90 JPEG;
//! - `chelsea-64x48-nodht.mjpg`: the same without its Huffman tables, as many
//!   UVC cameras send MJPEG (the decoder must use the standard tables).

use std::path::{Path, PathBuf};

use image::RgbImage;

use super::frame::*;

const W: u32 = 64;
const H: u32 = 48;

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/v4l2")
        .join(name)
}

fn fixture(name: &str) -> Vec<u8> {
    let path = fixture_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn reference() -> RgbImage {
    image::load_from_memory(&fixture("chelsea-64x48.png"))
        .unwrap()
        .to_rgb8()
}

fn name() -> PathBuf {
    PathBuf::from("/dev/video0 (frame 1)")
}

/// Largest and mean absolute channel difference.
fn diff(a: &RgbImage, b: &RgbImage) -> (u8, f64) {
    assert_eq!(a.dimensions(), b.dimensions());
    let d: Vec<u8> = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y))
        .collect();
    let mean = d.iter().map(|&x| f64::from(x)).sum::<f64>() / d.len() as f64;
    (*d.iter().max().unwrap(), mean)
}

fn yuyv() -> FrameFormat {
    FrameFormat::new(PixelFormat::Yuyv, W, H)
}

fn mjpeg() -> FrameFormat {
    FrameFormat::new(PixelFormat::Mjpeg, W, H)
}

#[test]
fn recorded_yuyv_frame_decodes_to_the_reference() {
    let image = decode_frame(&fixture("chelsea-64x48.yuyv"), &yuyv(), &name()).unwrap();
    let (max, mean) = diff(&image, &reference());
    // 8-bit Y, Cb, Cr round by half a step each: at most 2 levels in RGB.
    assert!(max <= 2, "max {max}, mean {mean:.2}");
}

#[test]
fn yuyv_lines_padded_by_the_driver_are_skipped() {
    let packed = fixture("chelsea-64x48.yuyv");
    let stride = W as usize * 2 + 32;
    let mut padded = Vec::new();
    for line in packed.chunks_exact(W as usize * 2) {
        padded.extend_from_slice(line);
        padded.extend(std::iter::repeat_n(0xa5, stride - line.len()));
    }
    let format = FrameFormat {
        bytesperline: stride as u32,
        sizeimage: (stride * H as usize) as u32,
        ..yuyv()
    };
    let image = decode_frame(&padded, &format, &name()).unwrap();
    assert_eq!(image, decode_frame(&packed, &yuyv(), &name()).unwrap());
}

#[test]
fn truncated_and_oversized_yuyv_frames_are_errors() {
    let bytes = fixture("chelsea-64x48.yuyv");
    let err = |b: &[u8], f: &FrameFormat| decode_frame(b, f, &name()).unwrap_err().to_string();
    assert_eq!(
        err(&bytes[..bytes.len() - 1], &yuyv()),
        "truncated YUYV frame: 6143 bytes, 6144 needed for 64x48"
    );
    assert_eq!(
        err(&[], &yuyv()),
        "truncated YUYV frame: 0 bytes, 6144 needed for 64x48"
    );
    let mut long = bytes.clone();
    long.extend([16, 128, 16, 128]);
    assert_eq!(
        err(&long, &yuyv()),
        "oversized YUYV frame: 6148 bytes, at most 6144 for 64x48"
    );
    // Within the driver's own sizeimage, trailing bytes are its business.
    let roomy = FrameFormat {
        sizeimage: 8192,
        ..yuyv()
    };
    assert!(decode_frame(&long, &roomy, &name()).is_ok());
    let odd = FrameFormat::new(PixelFormat::Yuyv, 63, 48);
    assert!(
        err(&bytes, &odd).contains("width must be even"),
        "{}",
        err(&bytes, &odd)
    );
}

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
fn recorded_mjpeg_frame_decodes_to_the_reference() {
    let image = decode_frame(&fixture("chelsea-64x48.mjpg"), &mjpeg(), &name()).unwrap();
    let (max, mean) = diff(&image, &reference());
    // Quality 90: max 20, mean 2.3 with image 0.25 / zune-jpeg 0.5.
    assert!(max <= 32 && mean <= 3.5, "max {max}, mean {mean:.2}");
}

#[test]
fn mjpeg_without_huffman_tables_uses_the_standard_ones() {
    let full = fixture("chelsea-64x48.mjpg");
    let bare = fixture("chelsea-64x48-nodht.mjpg");
    assert!(bare.len() < full.len() && !bare.windows(2).any(|m| m == [0xff, 0xc4]));
    let image = decode_frame(&bare, &mjpeg(), &name()).unwrap();
    assert_eq!(image, decode_frame(&full, &mjpeg(), &name()).unwrap());
}

#[test]
fn truncated_wrong_sized_and_oversized_mjpeg_frames_are_errors() {
    let bytes = fixture("chelsea-64x48.mjpg");
    let err = |b: &[u8], f: &FrameFormat| decode_frame(b, f, &name()).unwrap_err().to_string();
    let half = &bytes[..bytes.len() / 2];
    assert_eq!(
        err(half, &mjpeg()),
        format!(
            "MJPEG frame of {} bytes ends without an end-of-image marker (FF D9): cut short",
            half.len()
        )
    );
    assert!(err(&[], &mjpeg()).contains("MJPEG frame of 0 bytes ends without"));
    let small = FrameFormat::new(PixelFormat::Mjpeg, 32, 24);
    assert_eq!(
        err(&bytes, &small),
        "MJPEG frame is 64x48, the camera agreed to 32x24"
    );
    let tight = FrameFormat {
        sizeimage: 1000,
        ..mjpeg()
    };
    assert_eq!(
        err(&bytes, &tight),
        format!(
            "oversized MJPEG frame: {} bytes, at most 1000 for 64x48",
            bytes.len()
        )
    );
    // Zeroes after the end-of-image marker, as some cameras pad frames, are fine.
    let mut padded = bytes.clone();
    padded.extend([0; 64]);
    assert!(decode_frame(&padded, &mjpeg(), &name()).is_ok());
}

#[test]
fn damaged_mjpeg_frames_are_errors_not_panics() {
    let bytes = fixture("chelsea-64x48.mjpg");
    for cut in (0..bytes.len()).step_by(13) {
        // Cut short, then "ended" properly: past the marker check, into the decoder.
        let mut frame = bytes[..cut].to_vec();
        frame.extend([0xff, 0xd9]);
        let _ = decode_frame(&frame, &mjpeg(), &name());
        // A run of bytes flipped in the middle of the frame.
        let mut flipped = bytes.clone();
        for b in flipped.iter_mut().skip(cut).take(8) {
            *b ^= 0x5a;
        }
        let _ = decode_frame(&flipped, &mjpeg(), &name());
    }
}

#[test]
fn mjpeg_frames_wider_than_the_decoding_limit_are_refused() {
    let mut wide = Vec::new();
    let side = edgevlm_shared::preprocess::MAX_IMAGE_SIDE + 8;
    RgbImage::new(side, 8)
        .write_to(&mut std::io::Cursor::new(&mut wide), image::ImageFormat::Jpeg)
        .unwrap();
    let format = FrameFormat::new(PixelFormat::Mjpeg, side, 8);
    let err = decode_frame(&wide, &format, Path::new("/dev/video0 (MJPEG frame 3)"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/dev/video0 (MJPEG frame 3)") && err.contains("refused"),
        "{err}"
    );
}

/// Rewrites the fixtures from models/pretrained/samples/chelsea.png.
#[test]
#[ignore = "writes device/tests/fixtures/v4l2; run by hand"]
fn regenerate_fixtures() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/pretrained/samples/chelsea.png");
    let photo = image::open(&sample)
        .unwrap_or_else(|e| panic!("{}: {e} (models/fetch-pretrained.sh)", sample.display()))
        .to_rgb8();
    let half = image::imageops::resize(&photo, W / 2, H, image::imageops::FilterType::Triangle);
    let reference = RgbImage::from_fn(W, H, |x, y| *half.get_pixel(x / 2, y));
    std::fs::create_dir_all(fixture_path("")).unwrap();
    reference.save(fixture_path("chelsea-64x48.png")).unwrap();

    let mut yuyv = Vec::new();
    for pair in reference.as_raw().chunks_exact(6) {
        let ycc = |p: &[u8]| {
            let [r, g, b] = [p[0], p[1], p[2]].map(f64::from);
            [
                16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0,
                128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0,
                128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0,
            ]
        };
        let (a, b) = (ycc(&pair[..3]), ycc(&pair[3..]));
        let q = |x: f64| x.round().clamp(0.0, 255.0) as u8;
        yuyv.extend([q(a[0]), q((a[1] + b[1]) / 2.0), q(b[0]), q((a[2] + b[2]) / 2.0)]);
    }
    std::fs::write(fixture_path("chelsea-64x48.yuyv"), &yuyv).unwrap();

    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&reference)
        .unwrap();
    std::fs::write(fixture_path("chelsea-64x48.mjpg"), &jpeg).unwrap();
    std::fs::write(fixture_path("chelsea-64x48-nodht.mjpg"), without_dht(&jpeg)).unwrap();
}

/// The JPEG without its DHT (Huffman table) segments.
fn without_dht(jpeg: &[u8]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    let mut i = 2;
    while i + 4 <= jpeg.len() && jpeg[i] == 0xff && jpeg[i + 1] != 0xda {
        let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        if jpeg[i + 1] != 0xc4 {
            out.extend_from_slice(&jpeg[i..i + 2 + len]);
        }
        i += 2 + len;
    }
    out.extend_from_slice(&jpeg[i..]);
    out
}

#[test]
fn a_driver_reporting_giant_yuyv_sides_gets_an_error_not_an_allocation() {
    for (width, height, bytesperline) in [(65_536, 2, 0), (2, 1 << 30, 0), (4, 4, u32::MAX)] {
        let mut format = FrameFormat::new(PixelFormat::Yuyv, width, height);
        format.bytesperline = bytesperline;
        let err = decode_frame(&[0u8; 64], &format, &name()).unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::BadYuyvLayout { .. } | FrameError::Truncated { .. }
            ),
            "{width}x{height}/{bytesperline}: {err}"
        );
    }
}

//! Image preprocessing: the one path from a file or camera frame to model input.
//!
//! decode (JPEG/PNG/BMP) → RGB → resize the shorter side to `image_size` with an
//! antialiased bilinear filter (PIL's `Image.resize(..., BILINEAR)`, the filter
//! torchvision uses) → centre crop → scale to [0, 1] → `(x - mean) / std` → CHW f32.
//!
//! Host training, host inference and the firmware all call [`preprocess_image`],
//! so a photo yields bit-identical input everywhere.

use std::path::Path;

use image::RgbImage;

use crate::config::PreprocessConfig;
use crate::error::Result;

mod decode;

pub use decode::{
    decode_image, decode_image_as, load_image, MAX_DECODE_BYTES, MAX_FILE_BYTES, MAX_IMAGE_SIDE,
};

/// A normalised image in channel-first layout.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageTensor {
    /// `[3, height, width]`, row-major.
    pub data: Vec<f32>,
    pub height: usize,
    pub width: usize,
}

impl ImageTensor {
    pub const CHANNELS: usize = 3;

    pub fn shape(&self) -> [usize; 3] {
        [Self::CHANNELS, self.height, self.width]
    }
}

/// Resizes the shorter side to `size` and crops the centre `size x size` square.
///
/// When the crop leaves an odd number of pixels, the extra one is dropped from the
/// right/bottom (the crop offset is rounded down).
pub fn resize_and_crop(image: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    let (new_w, new_h) = if w <= h {
        (size, scaled_side(h, size, w))
    } else {
        (scaled_side(w, size, h), size)
    };
    let resized = if (new_w, new_h) == (w, h) {
        image.clone()
    } else {
        resize_bilinear(image, new_w, new_h)
    };
    let (left, top) = ((new_w - size) / 2, (new_h - size) / 2);
    if (left, top, new_w, new_h) == (0, 0, size, size) {
        return resized;
    }
    image::imageops::crop_imm(&resized, left, top, size, size).to_image()
}

fn scaled_side(long: u32, size: u32, short: u32) -> u32 {
    let scaled = (long as f64 * size as f64 / short as f64).round() as u32;
    scaled.max(size)
}

/// Normalises an RGB image into a CHW tensor with the config's mean and std.
pub fn normalize(image: &RgbImage, cfg: &PreprocessConfig) -> ImageTensor {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let plane = w * h;
    let mut data = vec![0f32; 3 * plane];
    for (i, pixel) in image.pixels().enumerate() {
        for c in 0..3 {
            data[c * plane + i] = (pixel[c] as f32 / 255.0 - cfg.mean[c]) / cfg.std[c];
        }
    }
    ImageTensor {
        data,
        height: h,
        width: w,
    }
}

/// The full pipeline on an already decoded image (a file or a camera frame).
pub fn preprocess_image(image: &RgbImage, cfg: &PreprocessConfig) -> ImageTensor {
    normalize(&resize_and_crop(image, cfg.image_size), cfg)
}

/// The full pipeline on an image file.
pub fn preprocess_file(path: &Path, cfg: &PreprocessConfig) -> Result<ImageTensor> {
    Ok(preprocess_image(&load_image(path)?, cfg))
}

/// Antialiased bilinear resampling, as PIL does it: a triangle filter whose support
/// widens with the downscale factor, so shrinking a photo averages every source pixel
/// instead of skipping most of them.
pub fn resize_bilinear(image: &RgbImage, new_w: u32, new_h: u32) -> RgbImage {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let (nw, nh) = (new_w as usize, new_h as usize);
    let src = image.as_raw();

    let horizontal = filter_taps(w, nw);
    let mut row_pass = vec![0f32; h * nw * 3];
    for y in 0..h {
        for (x, taps) in horizontal.iter().enumerate() {
            let mut acc = [0f32; 3];
            for &(sx, weight) in &taps.weights {
                let p = (y * w + sx) * 3;
                for c in 0..3 {
                    acc[c] += src[p + c] as f32 * weight;
                }
            }
            row_pass[(y * nw + x) * 3..][..3].copy_from_slice(&acc);
        }
    }

    let vertical = filter_taps(h, nh);
    let mut out = vec![0u8; nh * nw * 3];
    for (y, taps) in vertical.iter().enumerate() {
        for x in 0..nw {
            let mut acc = [0f32; 3];
            for &(sy, weight) in &taps.weights {
                let p = (sy * nw + x) * 3;
                for c in 0..3 {
                    acc[c] += row_pass[p + c] * weight;
                }
            }
            for c in 0..3 {
                out[(y * nw + x) * 3 + c] = acc[c].round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    RgbImage::from_raw(new_w, new_h, out).expect("buffer sized from the dimensions")
}

struct Taps {
    weights: Vec<(usize, f32)>,
}

/// For each output index, the source indices and normalised weights that feed it.
fn filter_taps(src_len: usize, dst_len: usize) -> Vec<Taps> {
    let scale = src_len as f64 / dst_len as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // the triangle filter has radius 1, widened by the scale
    (0..dst_len)
        .map(|i| {
            let center = (i as f64 + 0.5) * scale;
            let lo = ((center - support).floor().max(0.0)) as usize;
            let hi = ((center + support).ceil() as usize).min(src_len);
            let mut weights: Vec<(usize, f64)> = (lo..hi)
                .map(|j| {
                    let d = ((j as f64 + 0.5 - center) / filter_scale).abs();
                    (j, (1.0 - d).max(0.0))
                })
                .filter(|&(_, w)| w > 0.0)
                .collect();
            let total: f64 = weights.iter().map(|&(_, w)| w).sum();
            if total == 0.0 {
                // Degenerate upscale edge: fall back to the nearest source pixel.
                weights = vec![(((center).floor() as usize).min(src_len - 1), 1.0)];
            }
            let total: f64 = weights.iter().map(|&(_, w)| w).sum();
            Taps {
                weights: weights
                    .into_iter()
                    .map(|(j, w)| (j, (w / total) as f32))
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageFormat, Rgb};
    use std::io::Cursor;

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn normalises_a_tiny_image_by_hand() {
        // 2x2, already the target size: only scaling and mean/std apply.
        let mut img = RgbImage::new(2, 2);
        img.put_pixel(0, 0, Rgb([0, 51, 255]));
        img.put_pixel(1, 0, Rgb([255, 0, 102]));
        img.put_pixel(0, 1, Rgb([128, 128, 128]));
        img.put_pixel(1, 1, Rgb([10, 20, 30]));
        let cfg = PreprocessConfig {
            image_size: 2,
            mean: [0.5, 0.25, 0.0],
            std: [0.5, 0.25, 2.0],
        };
        let t = preprocess_image(&img, &cfg);
        assert_eq!(t.shape(), [3, 2, 2]);
        // Channel planes in CHW: R plane first, row-major.
        let expected = [
            // R: (v/255 - 0.5) / 0.5
            -1.0,
            1.0,
            (128.0 / 255.0 - 0.5) / 0.5,
            (10.0 / 255.0 - 0.5) / 0.5,
            // G: (v/255 - 0.25) / 0.25
            (0.2 - 0.25) / 0.25,
            -1.0,
            (128.0 / 255.0 - 0.25) / 0.25,
            (20.0 / 255.0 - 0.25) / 0.25,
            // B: (v/255) / 2
            0.5,
            0.2,
            128.0 / 255.0 / 2.0,
            30.0 / 255.0 / 2.0,
        ];
        for (i, (got, want)) in t.data.iter().zip(expected).enumerate() {
            assert!(close(*got, want), "element {i}: got {got}, want {want}");
        }
    }

    #[test]
    fn downscale_weights_match_hand_computation() {
        // 4x4 → 2x2 (scale 2): output pixel 0 is centred at source 1.0 with support 2.
        // Taps j=0,1,2 at distances 0.25, 0.25, 0.75 → weights 0.75, 0.75, 0.25 (/1.75).
        let mut img = RgbImage::new(4, 4);
        for y in 0..4 {
            for x in 0..4 {
                let v = (x * 10 + y * 40) as u8; // separable ramp
                img.put_pixel(x, y, Rgb([v, 0, 255 - v]));
            }
        }
        let out = resize_bilinear(&img, 2, 2);
        let along = |a: f32, b: f32, c: f32| (0.75 * a + 0.75 * b + 0.25 * c) / 1.75;
        // Columns: out x=0 mixes x 0,1,2; x=1 mixes x 1,2,3 (weights 0.25,0.75,0.75).
        let col = [
            along(0.0, 10.0, 20.0),
            (0.25 * 10.0 + 0.75 * 20.0 + 0.75 * 30.0) / 1.75,
        ];
        let row = [
            along(0.0, 40.0, 80.0),
            (0.25 * 40.0 + 0.75 * 80.0 + 0.75 * 120.0) / 1.75,
        ];
        for (y, row_value) in row.iter().enumerate() {
            for (x, col_value) in col.iter().enumerate() {
                let want = (col_value + row_value).round() as u8;
                assert_eq!(out.get_pixel(x as u32, y as u32)[0], want, "pixel ({x},{y})");
                assert_eq!(out.get_pixel(x as u32, y as u32)[2], 255 - want);
            }
        }
    }

    #[test]
    fn shorter_side_then_centre_crop() {
        // 6 wide x 3 tall, size 3: no resize, crop columns 1..4.
        let mut img = RgbImage::new(6, 3);
        for x in 0..6 {
            for y in 0..3 {
                img.put_pixel(x, y, Rgb([x as u8, y as u8, 0]));
            }
        }
        let out = resize_and_crop(&img, 3);
        assert_eq!(out.dimensions(), (3, 3));
        assert_eq!(out.get_pixel(0, 0)[0], 1);
        assert_eq!(out.get_pixel(2, 2)[0], 3);
        assert_eq!(out.get_pixel(2, 2)[1], 2);
        // A tall image is cropped vertically.
        let tall = RgbImage::from_fn(20, 40, |_, y| Rgb([y as u8, 0, 0]));
        let out = resize_and_crop(&tall, 10);
        assert_eq!(out.dimensions(), (10, 10));
    }

    #[test]
    fn constant_image_stays_constant_through_resize() {
        let img = RgbImage::from_pixel(37, 23, Rgb([200, 100, 7]));
        let out = resize_and_crop(&img, 16);
        assert!(out.pixels().all(|p| p.0 == [200, 100, 7]));
        let up = resize_and_crop(&RgbImage::from_pixel(3, 5, Rgb([9, 9, 9])), 16);
        assert!(up.pixels().all(|p| p.0 == [9, 9, 9]));
    }

    #[test]
    fn corrupt_and_unknown_bytes_are_named_errors() {
        let name = Path::new("broken.jpg");
        let err = decode_image(b"\xFF\xD8\xFF\xE0 not really a jpeg", name).unwrap_err();
        assert!(err.to_string().contains("broken.jpg"), "{err}");
        let err = decode_image(b"hello world", Path::new("notes.txt")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("notes.txt") && msg.contains("JPEG, PNG or BMP"),
            "{msg}"
        );
    }

    #[test]
    fn decodes_png_and_bmp_round_trip() {
        let img = RgbImage::from_fn(5, 4, |x, y| Rgb([x as u8 * 40, y as u8 * 60, 9]));
        for format in [ImageFormat::Png, ImageFormat::Bmp] {
            let mut bytes = Vec::new();
            img.write_to(&mut Cursor::new(&mut bytes), format).unwrap();
            let back = decode_image(&bytes, Path::new("x")).unwrap();
            assert_eq!(back, img, "{format:?}");
        }
    }
}

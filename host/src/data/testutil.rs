//! Fixture writers for the loader tests: tiny real-format files made on the fly.

use std::path::Path;

use image::{ImageFormat, Rgb, RgbImage};

pub fn write_jpeg(path: &Path, w: u32, h: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = RgbImage::from_fn(w, h, |x, y| Rgb([(x * 30) as u8, (y * 40) as u8, 90]));
    img.save_with_format(path, ImageFormat::Jpeg).unwrap();
}

pub fn write_png(path: &Path, w: u32, h: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = RgbImage::from_fn(w, h, |x, y| Rgb([(x * 30) as u8, 10, (y * 40) as u8]));
    img.save_with_format(path, ImageFormat::Png).unwrap();
}

pub fn write_text(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

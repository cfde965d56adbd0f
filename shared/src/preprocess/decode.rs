//! Every image this project decodes (files, the directory and V4L2 cameras, the
//! host's datasets, a bundle's self-test image) goes through [`decode_image`]
//! with the same limits, so a small file cannot make a board allocate a huge
//! bitmap (a "decompression bomb": a 13,000 x 13,000 PNG of a few kilobytes).

use std::io::Cursor;
use std::path::Path;

use image::{ImageError, ImageFormat, ImageReader, Limits, RgbImage};

use crate::error::{Error, Result};

/// Widest and tallest image decoded, in pixels: above any camera a board has
/// (a 48 MP sensor is 8000 x 6000) and far above the model's input side.
pub const MAX_IMAGE_SIDE: u32 = 8192;

/// Most memory one decode may allocate (128 MiB): a 6,500 x 6,500 RGB image.
/// The RGB copy made afterwards is at most three quarters of this again.
pub const MAX_DECODE_BYTES: u64 = 128 << 20;

fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    limits
}

/// Decodes JPEG, PNG or BMP bytes into RGB. `name` only labels errors.
pub fn decode_image(bytes: &[u8], name: &Path) -> Result<RgbImage> {
    decode(bytes, name, None)
}

/// Decodes bytes known to be in `format` (a camera's MJPEG frame) into RGB,
/// under the same limits as [`decode_image`].
pub fn decode_image_as(bytes: &[u8], name: &Path, format: ImageFormat) -> Result<RgbImage> {
    decode(bytes, name, Some(format))
}

fn decode(bytes: &[u8], name: &Path, format: Option<ImageFormat>) -> Result<RgbImage> {
    let image_error = |reason: String| Error::Image {
        path: name.to_path_buf(),
        reason,
    };
    let mut reader = match format {
        Some(format) => ImageReader::with_format(Cursor::new(bytes), format),
        None => ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| Error::io(name, e))?,
    };
    match reader.format() {
        Some(ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::Bmp) => {}
        Some(f) => return Err(image_error(format!("unsupported format {f:?}"))),
        None => return Err(image_error("unrecognised file signature".into())),
    }
    reader.limits(limits());
    let image = reader.decode().map_err(|e| match e {
        ImageError::Limits(e) => image_error(format!(
            "refused: larger than this build decodes ({MAX_IMAGE_SIDE} pixels a side, {} MiB): {e}",
            MAX_DECODE_BYTES >> 20
        )),
        e => image_error(e.to_string()),
    })?;
    if image.width() == 0 || image.height() == 0 {
        return Err(image_error("image has no pixels".into()));
    }
    Ok(image.into_rgb8())
}

/// Largest image file read (64 MiB): a photo at the largest side is a few MiB.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// Reads and decodes an image file into RGB.
pub fn load_image(path: &Path) -> Result<RgbImage> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::new();
    // `take`, not the size on disk: the file may grow while it is read.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Error::Image {
            path: path.to_path_buf(),
            reason: format!("refused: larger than {} MiB", MAX_FILE_BYTES >> 20),
        });
    }
    decode_image(&bytes, path)
}

/// A valid 1-bit greyscale PNG of `side` x `side` black pixels whose pixel data
/// is one deflate block of back-references: about 13 bits per 258 bytes.
#[cfg(test)]
pub(crate) fn png_bomb(side: u32) -> Vec<u8> {
    let row = 1 + (side as usize).div_ceil(8);
    let n = row * side as usize;
    let mut bits = BitWriter::default();
    bits.put(0b1, 1); // final block
    bits.put(0b01, 2); // fixed Huffman codes
    let literal_zero = |bits: &mut BitWriter| bits.put_code(0b0011_0000, 8);
    literal_zero(&mut bits);
    let copies = (n - 1) / 258;
    for _ in 0..copies {
        bits.put_code(0b1100_0101, 8); // length 258 (symbol 285)
        bits.put_code(0, 5); // distance 1
    }
    for _ in 0..(n - 1) % 258 {
        literal_zero(&mut bits);
    }
    bits.put_code(0, 7); // end of block
    let mut zlib = vec![0x78, 0x01];
    zlib.extend(bits.finish());
    // Adler-32 of n zero bytes: a stays 1, b adds 1 per byte.
    let adler = (((n % 65521) as u32) << 16) | 1;
    zlib.extend(adler.to_be_bytes());

    let mut ihdr = Vec::new();
    ihdr.extend(side.to_be_bytes());
    ihdr.extend(side.to_be_bytes());
    ihdr.extend([1, 0, 0, 0, 0]); // 1 bit, greyscale, deflate, no filter, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(b"IHDR", ihdr), (b"IDAT", zlib), (b"IEND", vec![])] {
        png.extend((data.len() as u32).to_be_bytes());
        let start = png.len();
        png.extend(kind);
        png.extend(&data);
        let crc = crc32fast::hash(&png[start..]);
        png.extend(crc.to_be_bytes());
    }
    png
}

#[cfg(test)]
#[derive(Default)]
struct BitWriter {
    out: Vec<u8>,
    acc: u32,
    n: u32,
}

#[cfg(test)]
impl BitWriter {
    /// `count` bits of `value`, least significant first (deflate's header fields).
    fn put(&mut self, value: u32, count: u32) {
        for i in 0..count {
            self.acc |= ((value >> i) & 1) << self.n;
            self.n += 1;
            if self.n == 8 {
                self.out.push(self.acc as u8);
                self.acc = 0;
                self.n = 0;
            }
        }
    }

    /// A Huffman code, most significant bit first.
    fn put_code(&mut self, code: u32, count: u32) {
        for i in (0..count).rev() {
            self.put((code >> i) & 1, 1);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bomb_generator_makes_a_valid_png() {
        let small = decode_image(&png_bomb(300), Path::new("small.png")).unwrap();
        assert_eq!(small.dimensions(), (300, 300));
        assert!(small.pixels().all(|p| p.0 == [0, 0, 0]));
    }

    #[test]
    fn a_decompression_bomb_png_is_refused_before_it_is_decoded() {
        let bomb = png_bomb(13_000);
        assert!(bomb.len() < 200_000, "{} bytes", bomb.len());
        let err = decode_image(&bomb, Path::new("bomb.png"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bomb.png") && err.contains("refused: larger than this build decodes"),
            "{err}"
        );
    }

    #[test]
    fn an_oversized_file_is_refused_without_reading_it_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.png");
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(MAX_FILE_BYTES + 1).unwrap();
        let err = load_image(&path).unwrap_err().to_string();
        assert!(
            err.contains("huge.png") && err.contains("refused: larger than 64 MiB"),
            "{err}"
        );
    }

    #[test]
    fn frames_of_a_known_format_go_through_the_same_limits() {
        let mut wide = Vec::new();
        RgbImage::new(MAX_IMAGE_SIDE + 8, 8)
            .write_to(&mut Cursor::new(&mut wide), ImageFormat::Jpeg)
            .unwrap();
        let err = decode_image_as(&wide, Path::new("frame 7"), ImageFormat::Jpeg).unwrap_err();
        assert!(err.to_string().contains("refused"), "{err}");
        let mut ok = Vec::new();
        RgbImage::new(16, 8)
            .write_to(&mut Cursor::new(&mut ok), ImageFormat::Jpeg)
            .unwrap();
        assert_eq!(
            decode_image_as(&ok, Path::new("frame 8"), ImageFormat::Jpeg)
                .unwrap()
                .dimensions(),
            (16, 8)
        );
    }
}

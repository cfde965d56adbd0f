//! An image file from the SD card, a camera folder or a user: decoded under the
//! size limits, then resized, cropped and normalized as the model sees it. It
//! must give a tensor of the configured shape or an error, never panic.
#![no_main]

use std::path::Path;

use edgevlm_shared::{decode_image, preprocess_image, PreprocessConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(image) = decode_image(data, Path::new("fuzz")) else {
        return;
    };
    let cfg = PreprocessConfig::default();
    let tensor = preprocess_image(&image, &cfg);
    assert_eq!(tensor.shape(), [3, cfg.image_size as usize, cfg.image_size as usize]);
});

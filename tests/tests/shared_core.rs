//! The shared core seen from both sides: the trainer's batches and the firmware
//! see the same pixels, and BERT-family tokenizer files load.

use std::process::Command;

use edgevlm::data::batcher::{Batcher, ImageTextBatcher};
use edgevlm_shared::{PreprocessConfig, TextTokenizer, TokenizerConfig};
use edgevlm_tests::{binary, fixture};
use image::{ImageFormat, Rgb, RgbImage};

#[test]
fn host_batches_and_device_input_are_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let photo = dir.path().join("photo.jpg");
    // Non-square, with detail, so resize, crop and JPEG decoding all matter.
    RgbImage::from_fn(97, 61, |x, y| {
        Rgb([(x * 7 % 256) as u8, (y * 11 % 256) as u8, ((x * y) % 256) as u8])
    })
    .save_with_format(&photo, ImageFormat::Jpeg)
    .unwrap();
    let cfg = PreprocessConfig::imagenet(32);
    let cfg_path = dir.path().join("pre.json");
    std::fs::write(&cfg_path, serde_json::to_string(&cfg).unwrap()).unwrap();

    let tokenizer = TextTokenizer::train(
        ["a photo"].iter().cycle().take(4),
        &TokenizerConfig {
            vocab_size: 50,
            min_frequency: 1,
            max_len: 8,
            lowercase: true,
        },
    )
    .unwrap();
    let host = ImageTextBatcher {
        items: vec![(photo.clone(), "a photo".into())],
        preprocess: cfg,
        tokenizer,
    }
    .batch(&[0])
    .unwrap();

    let out = dir.path().join("device.f32");
    let status = Command::new(binary("edgevlm-device"))
        .arg("preprocess")
        .arg(&photo)
        .arg("--config")
        .arg(&cfg_path)
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let device: Vec<f32> = std::fs::read(&out)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(device.len(), 3 * 32 * 32);
    assert!(host
        .images
        .iter()
        .zip(&device)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    // Not trivially equal: the image has real variation after normalisation.
    let spread =
        device.iter().cloned().fold(f32::MIN, f32::max) - device.iter().cloned().fold(f32::MAX, f32::min);
    assert!(spread > 2.0, "{spread}");
}

#[test]
fn device_rejects_a_corrupt_image_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("truncated.jpg");
    std::fs::write(&bad, b"\xFF\xD8\xFF\xE0\x00\x10JFIF").unwrap();
    let output = Command::new(binary("edgevlm-device"))
        .arg("preprocess")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("truncated.jpg"), "{stderr}");
}

#[test]
fn bert_layout_tokenizer_json_loads_with_bert_ids() {
    let tok = TextTokenizer::from_file(&fixture("bert-tokenizer.json"), 8).unwrap();
    let s = tok.special_ids();
    assert_eq!((s.pad, s.unk, s.cls, s.sep, s.mask), (0, 100, 101, 102, 103));
    let id = |t: &str| tok.token_to_id(t).unwrap();
    assert_eq!(
        tok.encode("A Dog runs!").unwrap(),
        [101, id("a"), id("dog"), id("runs"), id("!"), 102]
    );
    // WordPiece continuation, accent stripping, unknown words.
    assert_eq!(
        tok.encode("dogs café zebra").unwrap(),
        [101, id("dog"), id("##s"), id("caf"), id("##e"), 100, 102]
    );
    // Our max_len replaces the file's truncation; padding is to the batch's longest row.
    let long = tok.encode("the dog runs on the grass in the snow").unwrap();
    assert_eq!((long.len(), long[7]), (8, 102));
    let batch = tok.encode_batch(&["a dog", "a cat runs"]).unwrap();
    assert_eq!(batch.seq_len, 5);
    assert_eq!(batch.row(0), [101, id("a"), id("dog"), 102, 0]);
}

//! Parity of the real-photo model's graphs with burn: the pretrained towers
//! (EfficientNet-Lite0, MiniLM) under small random heads.

use std::path::PathBuf;

use burn::tensor::{Device, Distribution, Tensor, TensorData};
use tract_onnx::prelude::Tensor as TractTensor;

use super::{burn_values, f32_tensor, max_diff, run};
use crate::export::graphs;
use crate::export::quantize::WeightFormat;
use crate::model::decoder::CaptionDecoderConfig;
use crate::model::efficientnet::EfficientNet;
use crate::model::heads::sentence_embedding;
use crate::model::photo::{PhotoVlm, PhotoVlmConfig};
use crate::model::pretrained::{load_bert, load_efficientnet, PretrainedBert};

fn pretrained(tower: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models/pretrained")
        .join(tower);
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} is missing: run models/fetch-pretrained.sh",
        dir.display()
    );
    dir
}

fn towers(device: &Device) -> (EfficientNet, PretrainedBert) {
    (
        load_efficientnet(&pretrained("efficientnet-lite0"), false, device).expect("EfficientNet-Lite0"),
        load_bert(&pretrained("minilm-l6"), 16, device).expect("MiniLM"),
    )
}

fn heads(text: &PretrainedBert, device: &Device) -> PhotoVlm {
    device.seed(11);
    PhotoVlmConfig::new(
        1280,
        text.config.d_model,
        text.config.vocab_size,
        CaptionDecoderConfig::new(40, 32)
            .with_d_model(32)
            .with_layers(1)
            .with_heads(2)
            .with_d_intermediate(64)
            .with_max_len(12),
    )
    .with_d_model(32)
    .with_d_embed(16)
    .with_fusion_heads(2)
    .with_fusion_intermediate(64)
    .init(device)
}

/// 96 px photos give a 3x3 grid: every stride pads "SAME" unevenly at least once.
const SIZE: usize = 96;

fn check_photo_graphs(weights: WeightFormat, tolerance: f32) {
    let device = Device::flex();
    let (image_tower, text_tower) = towers(&device);
    let heads = heads(&text_tower, &device);
    let check = |what: &str, got: &[f32], expected: Vec<f32>| {
        let diff = max_diff(got, &expected);
        assert!(
            diff < tolerance,
            "{weights:?} {what}: max |tract - burn| = {diff}"
        );
    };

    // Photo-like inputs in the tower's input range.
    let images = Tensor::<4>::random([2, 3, SIZE, SIZE], Distribution::Uniform(-1.0, 1.0), &device);
    let features = image_tower.forward_features(images.clone());
    let [n, d, h, w] = features.dims();
    assert_eq!((h, w), (3, 3));
    let grid = EfficientNet::grid(features);
    let tokens = heads.image_tokens(grid.clone());
    let pooled = grid.mean_dim(1).reshape([n, d]);
    let out = run(
        graphs::photo_image_encoder(&image_tower, &heads, SIZE, weights),
        vec![f32_tensor(&images)],
    );
    check("image tokens", &out[0], burn_values(tokens.clone()));
    check(
        "image embedding",
        &out[1],
        burn_values(heads.image_embedding(pooled)),
    );

    let texts = ["a dog runs on the grass", "two men"];
    let enc = text_tower.tokenizer.encode_batch(&texts).unwrap();
    let shape = [enc.batch, enc.seq_len];
    let ids: Vec<i64> = enc.ids.iter().map(|&i| i64::from(i)).collect();
    let mask: Vec<f32> = enc.mask.iter().map(|&m| m as f32).collect();
    let states = text_tower.model.forward(
        Tensor::from_data(TensorData::new(ids.clone(), shape), &device),
        Tensor::from_data(TensorData::new(mask.clone(), shape), &device),
    );
    let sentences = sentence_embedding(
        states,
        Tensor::from_data(TensorData::new(mask.clone(), shape), &device),
    );
    let out = run(
        graphs::photo_text_encoder(&text_tower.model, &heads, weights),
        vec![
            TractTensor::from_shape(&shape, &ids).unwrap(),
            TractTensor::from_shape(&shape, &mask).unwrap(),
        ],
    );
    check(
        "text embedding",
        &out[0],
        burn_values(heads.text_embedding(sentences)),
    );

    let prefix = [2i64, 7, 9, 3];
    let prefix_ids = Tensor::from_data(TensorData::new(prefix.repeat(2), [2, 4]), &device);
    let [_, n, d] = tokens.dims();
    let tokens = tokens.narrow(0, 0, 1);
    let logits = heads
        .decoder
        .forward(prefix_ids, tokens.clone().expand([2, n, d]));
    let out = run(
        graphs::caption_decoder(&heads.decoder, [h * w, 32], weights),
        vec![
            f32_tensor(&tokens),
            TractTensor::from_shape(&[2, 4], &prefix.repeat(2)).unwrap(),
        ],
    );
    check("decoder logits", &out[0], burn_values(logits));
}

#[test]
fn photo_graphs_match_burn_in_f32() {
    check_photo_graphs(WeightFormat::F32, 1e-4);
}

#[test]
fn photo_graphs_match_burn_in_int8_within_quantization_noise() {
    check_photo_graphs(WeightFormat::Int8, 0.05);
}

//! Parity of the real-photo model's graphs with burn: the pretrained towers
//! (EfficientNet-Lite0, MiniLM) under small random heads.

use std::path::PathBuf;

use burn::tensor::{Device, Distribution, Tensor, TensorData};
use edgevlm_shared::bundle::io;
use tract_onnx::prelude::Tensor as TractTensor;

use super::{burn_values, f32_tensor, max_diff, run};
use crate::export::graphs;
use crate::export::quantize::WeightFormat;
use crate::model::decoder::CaptionDecoderConfig;
use crate::model::efficientnet::EfficientNet;
use crate::model::image_tower::ImageTower;
use crate::model::pretrained::{load_bert, load_efficientnet, PretrainedBert};
use crate::model::{EdgeVlm, EdgeVlmConfig};

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

/// The photo preset, shrunk, with the real towers installed.
fn photo_model(device: &Device) -> (EdgeVlm, edgevlm_shared::TextTokenizer) {
    let (image_tower, text_tower) = towers(device);
    device.seed(11);
    let mut config = EdgeVlmConfig::photo(
        text_tower.config.clone(),
        16,
        CaptionDecoderConfig::new(40, 32)
            .with_d_model(32)
            .with_layers(1)
            .with_heads(2)
            .with_d_intermediate(64)
            .with_max_len(12),
    )
    .with_d_embed(16)
    .with_image_width(Some(32));
    config.fusion.d_image = 32;
    config.fusion = config.fusion.with_heads(2).with_d_intermediate(64);
    let mut model = config.init(device);
    model.vision = ImageTower::EfficientNet(image_tower);
    model.text = text_tower.model;
    (model, text_tower.tokenizer)
}

/// 96 px photos give a 3x3 grid: every stride pads "SAME" unevenly at least once.
const SIZE: usize = 96;

fn check_photo_graphs(weights: WeightFormat, tolerance: f32) {
    let device = Device::flex();
    let (model, tokenizer) = photo_model(&device);
    let check = |what: &str, got: &[f32], expected: Vec<f32>| {
        let diff = max_diff(got, &expected);
        assert!(
            diff < tolerance,
            "{weights:?} {what}: max |tract - burn| = {diff}"
        );
    };

    // Photo-like inputs in the tower's input range.
    let images = Tensor::<4>::random([2, 3, SIZE, SIZE], Distribution::Uniform(-1.0, 1.0), &device);
    let tower = model.tower_tokens(images.clone());
    assert_eq!(tower.dims()[1], 3 * 3);
    let tokens = model.image_tokens(tower.clone());
    let out = run(
        graphs::image_encoder(&model, SIZE, weights),
        vec![f32_tensor(&images)],
    );
    check("image tokens", &out[0], burn_values(tokens.clone()));
    check(
        "image embedding",
        &out[1],
        burn_values(model.image_embedding(tower)),
    );

    let texts = ["a dog runs on the grass", "two men"];
    let enc = tokenizer.encode_batch(&texts).unwrap();
    let shape = [enc.batch, enc.seq_len];
    let ids: Vec<i64> = enc.ids.iter().map(|&i| i64::from(i)).collect();
    let mask: Vec<f32> = enc.mask.iter().map(|&m| m as f32).collect();
    let mask_tensor = Tensor::<2>::from_data(TensorData::new(mask.clone(), shape), &device);
    let states = model.encode_text(
        Tensor::from_data(TensorData::new(ids.clone(), shape), &device),
        mask_tensor.clone(),
    );
    let out = run(
        graphs::text_encoder(&model, weights),
        vec![
            TractTensor::from_shape(&shape, &ids).unwrap(),
            TractTensor::from_shape(&shape, &mask).unwrap(),
        ],
    );
    check(
        "text embedding",
        &out[0],
        burn_values(model.text_embedding(states, mask_tensor)),
    );

    let prefix = [2i64, 7, 9, 3];
    let prefix_ids = Tensor::from_data(TensorData::new(prefix.repeat(2), [2, 4]), &device);
    let [_, n, d] = tokens.dims();
    let tokens = tokens.narrow(0, 0, 1);
    let logits = model
        .decoder
        .forward(prefix_ids, tokens.clone().expand([2, n, d]));
    let out = run(
        graphs::caption_decoder(io::CAPTION_DECODER, &model.decoder, [3 * 3, 32], weights),
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

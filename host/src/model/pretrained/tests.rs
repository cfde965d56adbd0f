use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};

use super::*;
use crate::model::bert::BertConfig;

/// The MiniLM folder `models/fetch-pretrained.sh` writes (run by `scripts/setup.sh`).
fn minilm_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/pretrained/minilm-l6");
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} is missing: run models/fetch-pretrained.sh",
        dir.display()
    );
    dir
}

#[derive(Deserialize)]
struct Reference {
    sentences: Vec<String>,
    ids: Vec<Vec<u32>>,
    embeddings: Vec<Vec<f32>>,
}

fn reference() -> Reference {
    serde_json::from_str(include_str!("minilm_reference.json")).unwrap()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn minilm_sentence_embeddings_equal_the_reference_implementation() {
    let device = Device::flex();
    let bert = load_bert(&minilm_dir(), 128, &device).unwrap();
    assert_eq!(
        (bert.config.d_model, bert.config.layers, bert.config.heads),
        (384, 6, 12)
    );
    let reference = reference();
    for (sentence, ids) in reference.sentences.iter().zip(&reference.ids) {
        assert_eq!(&bert.tokenizer.encode(sentence).unwrap(), ids, "{sentence}");
    }
    let texts: Vec<&str> = reference.sentences.iter().map(String::as_str).collect();
    let ours = bert.sentence_embeddings(&texts, &device).unwrap();
    let mut worst = 0.0f32;
    for ((sentence, got), want) in texts.iter().zip(&ours).zip(&reference.embeddings) {
        let diff = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(diff < 1e-4, "{sentence}: max difference {diff}");
        worst = worst.max(diff);
    }
    eprintln!("MiniLM embeddings: max |burn - transformers| = {worst:.2e}");
    // Paraphrases are closer than unrelated sentences.
    let (dog, puppy, market) = (&ours[0], &ours[1], &ours[3]);
    assert!(
        dot(dog, puppy) > dot(dog, market) + 0.3,
        "{} vs {}",
        dot(dog, puppy),
        dot(dog, market)
    );
}

/// A safetensors file from (name, shape) pairs, every value 0.5.
fn write_safetensors(path: &std::path::Path, tensors: &[(String, Vec<usize>)]) {
    let mut header = serde_json::Map::new();
    let mut offset = 0;
    for (name, shape) in tensors {
        let bytes = shape.iter().product::<usize>() * 4;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut json = serde_json::Value::Object(header).to_string().into_bytes();
    json.resize(json.len().div_ceil(8) * 8, b' ');
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend(json);
    out.extend(std::iter::repeat_n(0.5f32.to_le_bytes(), offset / 4).flatten());
    std::fs::write(path, out).unwrap();
}

#[test]
fn import_names_the_missing_parameter_and_the_unused_tensor() {
    let device = Device::flex();
    let cfg = BertConfig::new(10)
        .with_d_model(4)
        .with_layers(1)
        .with_heads(2)
        .with_d_intermediate(8)
        .with_max_positions(6);
    let (d, f) = (4, 8);
    let mut tensors: Vec<(String, Vec<usize>)> = vec![
        ("embeddings.word_embeddings.weight".into(), vec![10, d]),
        ("embeddings.position_embeddings.weight".into(), vec![6, d]),
        ("embeddings.token_type_embeddings.weight".into(), vec![2, d]),
        ("embeddings.LayerNorm.weight".into(), vec![d]),
        ("embeddings.LayerNorm.bias".into(), vec![d]),
        ("pooler.dense.weight".into(), vec![d, d]),
        ("pooler.dense.bias".into(), vec![d]),
    ];
    let layer = "encoder.layer.0";
    for part in [
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
    ] {
        tensors.push((format!("{layer}.{part}.weight"), vec![d, d]));
        tensors.push((format!("{layer}.{part}.bias"), vec![d]));
    }
    tensors.push((format!("{layer}.intermediate.dense.weight"), vec![f, d]));
    tensors.push((format!("{layer}.intermediate.dense.bias"), vec![f]));
    tensors.push((format!("{layer}.output.dense.weight"), vec![d, f]));
    tensors.push((format!("{layer}.output.dense.bias"), vec![d]));
    for norm in ["attention.output.LayerNorm", "output.LayerNorm"] {
        tensors.push((format!("{layer}.{norm}.weight"), vec![d]));
        tensors.push((format!("{layer}.{norm}.bias"), vec![d]));
    }
    let dir = tempfile::tempdir().unwrap();
    let complete = dir.path().join("complete.safetensors");
    write_safetensors(&complete, &tensors);
    let mut model = cfg.init(&device);
    import(&mut model, &complete, &BERT_KEYS, &BERT_BUFFERS).unwrap();
    let pooler: Vec<f32> = model.pooler.weight.val().into_data().try_to_vec().unwrap();
    assert!(pooler.iter().all(|&v| v == 0.5));

    let mut broken = tensors.clone();
    broken.retain(|(name, _)| name != "encoder.layer.0.output.LayerNorm.bias");
    broken.push(("encoder.layer.0.attention.self.rotary".into(), vec![d]));
    let path = dir.path().join("broken.safetensors");
    write_safetensors(&path, &broken);
    let err = import(&mut cfg.init(&device), &path, &BERT_KEYS, &BERT_BUFFERS)
        .unwrap_err()
        .to_string();
    assert!(err.contains("broken.safetensors"), "{err}");
    assert!(err.contains("layers.0.output_norm"), "{err}");
    assert!(err.contains("rotary"), "{err}");
}

fn pretrained(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models/pretrained")
        .join(name);
    assert!(
        dir.is_dir(),
        "{} is missing: run models/fetch-pretrained.sh",
        dir.display()
    );
    dir
}

#[test]
fn efficientnet_lite0_puts_known_photos_in_their_imagenet_classes() {
    use edgevlm_shared::{preprocess_file, PreprocessConfig};
    let device = Device::flex();
    let model = load_efficientnet(&pretrained("efficientnet-lite0"), true, &device).unwrap();
    let classes: Vec<&str> = include_str!("imagenet_classes.txt")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert_eq!(classes.len(), 1000);
    // EfficientNet-Lite's input scaling: (x - 127) / 128.
    let cfg = PreprocessConfig {
        image_size: 224,
        mean: [127.0 / 255.0; 3],
        std: [128.0 / 255.0; 3],
    };
    for (photo, expected) in [
        (
            "chelsea.png",
            &["tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"][..],
        ),
        ("coffee.png", &["espresso", "cup", "coffee mug"][..]),
        ("rocket.jpg", &["space shuttle", "missile", "projectile"][..]),
    ] {
        let pixels = preprocess_file(&pretrained("samples").join(photo), &cfg).unwrap();
        let images = Tensor::<4>::from_data(TensorData::new(pixels.data.clone(), [1, 3, 224, 224]), &device);
        let logits: Vec<f32> = model
            .forward_logits(images)
            .unwrap()
            .into_data()
            .try_to_vec()
            .unwrap();
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        let top5: Vec<&str> = order[..5].iter().map(|&i| classes[i]).collect();
        eprintln!("{photo}: {top5:?}");
        assert!(
            top5.iter().any(|c| expected.contains(c)),
            "{photo}: top-5 {top5:?}"
        );
    }
}

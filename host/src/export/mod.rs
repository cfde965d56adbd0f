//! Export of a trained model to a device bundle: ONNX graphs written block by block
//! from the burn modules (`blocks.rs`, over the builder in `onnx.rs`), optional
//! int8 weights (`quantize.rs`), the tokenizer, the preprocessing config, a model
//! card and a golden self-test computed by the device runtime itself.

pub mod blocks;
pub mod choice;
pub mod graphs;
pub mod onnx;
pub mod quantize;

use std::time::{SystemTime, UNIX_EPOCH};

use edgevlm_device::runtime::Runtime;
use edgevlm_shared::bundle::{
    io, Bundle, DecoderSpec, FileKind, Manifest, SelfTest, WeightStorage, FIRMWARE_FILE,
};
use edgevlm_shared::rng::SplitMix64;
use edgevlm_shared::search::DecodeOptions;
use edgevlm_shared::synth::{render, Scene};
use prost::Message;

pub use quantize::WeightFormat;

use crate::model::saved::SavedModel;
use crate::train::error::{Result, TrainError};

pub struct ExportOptions {
    pub name: String,
    pub model_version: u64,
    pub weights: WeightFormat,
    /// PNG/JPEG bytes of the self-test image; a rendered synthetic scene when absent.
    pub selftest_image: Option<(String, Vec<u8>)>,
    /// Question asked about the self-test image (VQA bundles).
    pub selftest_question: String,
    /// An `edgevlm-device` executable to ship with the model.
    pub firmware: Option<Vec<u8>>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            name: "edgevlm".into(),
            model_version: 1,
            weights: WeightFormat::F32,
            selftest_image: None,
            selftest_question: "how many objects are there?".into(),
            firmware: None,
        }
    }
}

/// The ONNX graphs of a model, by graph name.
pub fn build_graphs(saved: &SavedModel, weights: WeightFormat) -> Vec<(&'static str, Vec<u8>)> {
    let model = &saved.model;
    let size = saved.preprocess.image_size as usize;
    let mut out = vec![
        (io::IMAGE_ENCODER, graphs::image_encoder(model, size, weights)),
        (io::TEXT_ENCODER, graphs::text_encoder(model, weights)),
        (io::CAPTION_DECODER, graphs::caption_decoder(model, weights)),
        (io::CAPTION_STEP, graphs::caption_decoder_step(model, weights)),
    ];
    if let Some(vqa) = graphs::vqa(model, size, weights) {
        out.push((io::VQA, vqa));
    }
    out.into_iter()
        .map(|(name, g)| (name, g.encode_to_vec()))
        .collect()
}

fn synthetic_selftest_image(size: u32) -> Result<Vec<u8>> {
    let scene = Scene::generate(&mut SplitMix64::new(20261129), size);
    let mut png = Vec::new();
    render(&scene)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| TrainError::Invalid(format!("encoding the self-test image: {e}")))?;
    Ok(png)
}

fn model_card(saved: &SavedModel, opts: &ExportOptions) -> String {
    let c = &saved.config;
    format!(
        "# {name} (model version {version})\n\n\
         Exported by edgevlm {tool} from `{dir}`.\n\n\
         - image encoder: ViT, {size} px images, {patch} px patches, width {dv}, {lv} layers\n\
         - text encoder: BERT layout, width {dt}, {lt} layers, vocabulary {vocab}\n\
         - fusion: {fusion:?}; caption decoder: {ld} layers; VQA answers: {answers}\n\
         - weights: {weights:?}\n",
        name = opts.name,
        version = opts.model_version,
        tool = env!("CARGO_PKG_VERSION"),
        dir = saved.dir.display(),
        size = c.vision.image_size,
        patch = c.vision.patch_size,
        dv = c.vision.d_model,
        lv = c.vision.layers,
        dt = c.text.d_model,
        lt = c.text.layers,
        vocab = c.text.vocab_size,
        fusion = c.fusion.kind,
        ld = c.decoder.layers,
        answers = saved.answers.len(),
        weights = opts.weights,
    )
}

fn runtime_error(e: edgevlm_device::runtime::RuntimeError) -> TrainError {
    TrainError::Invalid(format!("the exported bundle does not run: {e}"))
}

/// Builds the bundle; its self-test holds what the device runtime computes on the
/// self-test image with these very graphs.
pub fn export(saved: &SavedModel, opts: &ExportOptions) -> Result<Bundle> {
    let (image_name, image_bytes) = match &opts.selftest_image {
        Some((name, bytes)) => (name.clone(), bytes.clone()),
        None => (
            "selftest.png".to_string(),
            synthetic_selftest_image(saved.preprocess.image_size)?,
        ),
    };
    // The device refuses such a bundle when it reads it; say so here instead.
    if let Some(problem) = edgevlm_shared::bundle::names::name_problem(&image_name) {
        return Err(TrainError::Invalid(format!(
            "self-test image name {image_name:?} cannot go into a bundle: {problem}"
        )));
    }
    let mut files: Vec<(String, FileKind, Vec<u8>)> = build_graphs(saved, opts.weights)
        .into_iter()
        .map(|(name, bytes)| (io::graph_file(name), FileKind::Graph, bytes))
        .collect();
    let tokenizer = saved.tokenizer.to_json()?;
    files.push((
        "tokenizer.json".into(),
        FileKind::Tokenizer,
        tokenizer.into_bytes(),
    ));
    files.push((
        "MODEL_CARD.md".into(),
        FileKind::ModelCard,
        model_card(saved, opts).into_bytes(),
    ));
    files.push((image_name.clone(), FileKind::SelfTestImage, image_bytes.clone()));
    if let Some(binary) = &opts.firmware {
        files.push((FIRMWARE_FILE.into(), FileKind::Firmware, binary.clone()));
    }
    let attention = &saved.model.decoder.layers[0].self_attention;
    let mut manifest = Manifest {
        format_version: 0,
        name: opts.name.clone(),
        model_version: opts.model_version,
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        weights: match opts.weights {
            WeightFormat::F32 => WeightStorage::F32,
            WeightFormat::Int8 => WeightStorage::Int8PerChannel,
        },
        preprocess: saved.preprocess.clone(),
        max_text_len: saved.tokenizer.max_len(),
        answers: saved.answers.clone(),
        decoder: DecoderSpec {
            layers: saved.model.decoder.layers.len(),
            heads: attention.heads(),
            d_head: attention.d_head(),
            max_len: saved.model.decoder.max_len(),
            vocab: saved.config.decoder.vocab_size,
        },
        files: Vec::new(),
        selftest: None,
    };
    let draft = Bundle::new(manifest.clone(), files.clone());
    let runtime = Runtime::from_bundle(&draft).map_err(runtime_error)?;
    let image = edgevlm_shared::decode_image(&image_bytes, std::path::Path::new(&image_name))?;
    let encoded = runtime.encode_image(&image).map_err(runtime_error)?;
    let caption = runtime
        .caption(&encoded, DecodeOptions::default())
        .map_err(runtime_error)?;
    let vqa = if saved.answers.is_empty() {
        None
    } else {
        let answer = runtime
            .answer(&encoded, &opts.selftest_question)
            .map_err(runtime_error)?;
        Some((opts.selftest_question.clone(), answer.answer))
    };
    manifest.selftest = Some(SelfTest {
        image: image_name,
        caption,
        vqa,
        embedding_head: encoded.embedding.iter().take(8).copied().collect(),
        tolerance: 1e-3,
    });
    Ok(Bundle::new(manifest, files))
}

#[cfg(test)]
mod tests;

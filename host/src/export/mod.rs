//! Export of a trained model to a device bundle: ONNX graphs written block by block
//! from the burn modules (`blocks.rs`, `towers.rs`, `conv.rs`, over the builder in
//! `onnx.rs`), whichever towers the model has; optional
//! int8 weights (`quantize.rs`), the tokenizer, the preprocessing config, a model
//! card and a golden self-test whose expected values come from burn (`golden.rs`).

pub mod blocks;
pub mod choice;
pub mod conv;
pub mod golden;
pub mod graphs;
pub mod onnx;
pub mod quantize;
pub mod spatial;
pub mod towers;

use std::time::{SystemTime, UNIX_EPOCH};

use edgevlm_device::runtime::Runtime;
use std::path::Path;

use edgevlm_shared::bundle::{
    io, Bundle, DecoderSpec, FileKind, Manifest, SelfTest, WeightStorage, CAPTION_MEMORY_FILE,
    DECODER_TOKENIZER_FILE, FIRMWARE_FILE, TEXT_TOKENIZER_FILE,
};
use edgevlm_shared::caption::{CaptionMemory, Decoding, MemoryStorage};
use edgevlm_shared::rng::SplitMix64;
use edgevlm_shared::search::DecodeOptions;
use edgevlm_shared::synth::{render, Scene};
use edgevlm_shared::{PreprocessConfig, TextTokenizer};
use prost::Message;

pub use quantize::WeightFormat;

use crate::error::{Error, Result};
use crate::model::saved::SavedModel;
use crate::model::{EdgeVlm, EdgeVlmConfig};

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
    /// How the caption memory's embeddings are stored.
    pub memory: MemoryStorage,
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
            memory: MemoryStorage::default(),
        }
    }
}

/// Everything a bundle holds, read from a model folder.
pub struct ModelSource<'a> {
    pub model: &'a EdgeVlm,
    pub config: &'a EdgeVlmConfig,
    /// The folder it was read from (for the model card).
    pub dir: &'a Path,
    pub preprocess: &'a PreprocessConfig,
    /// The text encoder's tokenizer (questions, match phrases, triggers).
    pub tokenizer: &'a TextTokenizer,
    /// The caption decoder's, when it has a vocabulary of its own.
    pub decoder_tokenizer: Option<&'a TextTokenizer>,
    /// VQA answers in logit order (empty: no VQA graph).
    pub answers: &'a [String],
    /// Training captions for consensus reranking on the device.
    pub memory: Option<&'a CaptionMemory>,
    pub decoding: Option<Decoding>,
}

impl<'a> TryFrom<&'a SavedModel> for ModelSource<'a> {
    type Error = Error;

    fn try_from(saved: &'a SavedModel) -> Result<Self> {
        let config = saved.config();
        if config.vqa_question_only {
            return Err(Error::record(
                saved.dir.join("config.json"),
                "vqa_question_only: a question-only baseline (its VQA head never sees the \
                 image) is for measuring, not for the board",
            ));
        }
        let eps = config.text.layer_norm_eps;
        if (eps - f64::from(blocks::eps::BERT)).abs() > 1e-15 {
            return Err(Error::record(
                saved.dir.join("config.json"),
                format!("text.layer_norm_eps {eps}: the exporter writes BERT LayerNorms with 1e-12"),
            ));
        }
        Ok(ModelSource {
            model: &saved.model,
            config,
            dir: &saved.dir,
            preprocess: &saved.meta.preprocess,
            tokenizer: &saved.meta.tokenizer,
            decoder_tokenizer: saved.meta.decoder_tokenizer.as_ref(),
            answers: &saved.meta.answers,
            memory: saved.memory.as_ref(),
            decoding: saved.decoding.map(|d| Decoding {
                consensus: d.consensus.filter(|_| saved.memory.is_some()),
                ..d
            }),
        })
    }
}

/// The ONNX graphs of a model, by graph name.
pub fn build_graphs(source: &ModelSource, weights: WeightFormat) -> Vec<(&'static str, Vec<u8>)> {
    let size = source.preprocess.image_size as usize;
    let model = source.model;
    let decoder = &model.decoder;
    let tokens = graphs::token_shape(model, size);
    let mut out = vec![
        (io::IMAGE_ENCODER, graphs::image_encoder(model, size, weights)),
        (io::TEXT_ENCODER, graphs::text_encoder(model, weights)),
        (
            io::CAPTION_DECODER,
            graphs::caption_decoder(io::CAPTION_DECODER, decoder, tokens, weights),
        ),
        (
            io::CAPTION_STEP,
            graphs::caption_decoder_step(io::CAPTION_STEP, decoder, tokens, weights),
        ),
    ];
    if let Some(vqa) = graphs::vqa(model, tokens, size, weights) {
        out.push((io::VQA, vqa));
    }
    if let (Some(temporal), Some(graph)) = (&model.temporal, graphs::temporal(model, tokens, weights)) {
        let memory = [temporal.frames() * tokens[0], tokens[1]];
        out.push((io::TEMPORAL, graph));
        out.push((
            io::CLIP_DECODER,
            graphs::caption_decoder(io::CLIP_DECODER, decoder, memory, weights),
        ));
        out.push((
            io::CLIP_STEP,
            graphs::caption_decoder_step(io::CLIP_STEP, decoder, memory, weights),
        ));
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
        .map_err(|e| Error::Invalid(format!("encoding the self-test image: {e}")))?;
    Ok(png)
}

fn model_card(source: &ModelSource, opts: &ExportOptions) -> String {
    format!(
        "# {name} (model version {version})\n\n\
         Exported by edgevlm {tool} from `{dir}`.\n\n\
         {architecture}\
         - weights: {weights:?}\n",
        name = opts.name,
        version = opts.model_version,
        tool = env!("CARGO_PKG_VERSION"),
        dir = source.dir.display(),
        architecture = source.config.describe(),
        weights = opts.weights,
    )
}

fn runtime_error(e: edgevlm_device::runtime::RuntimeError) -> Error {
    Error::Invalid(format!("the exported bundle does not run: {e}"))
}

/// Builds the bundle; its self-test holds what the device runtime computes on the
/// self-test image with these very graphs.
pub fn export(source: &ModelSource, opts: &ExportOptions) -> Result<Bundle> {
    let (image_name, image_bytes) = match &opts.selftest_image {
        Some((name, bytes)) => (name.clone(), bytes.clone()),
        None => (
            "selftest.png".to_string(),
            synthetic_selftest_image(source.preprocess.image_size)?,
        ),
    };
    // The device refuses such a bundle when it reads it; say so here instead.
    if let Some(problem) = edgevlm_shared::bundle::names::name_problem(&image_name) {
        return Err(Error::Invalid(format!(
            "self-test image name {image_name:?} cannot go into a bundle: {problem}"
        )));
    }
    let mut files: Vec<(String, FileKind, Vec<u8>)> = build_graphs(source, opts.weights)
        .into_iter()
        .map(|(name, bytes)| (io::graph_file(name), FileKind::Graph, bytes))
        .collect();
    files.push((
        TEXT_TOKENIZER_FILE.into(),
        FileKind::Tokenizer,
        source.tokenizer.to_json()?.into_bytes(),
    ));
    if let Some(tokenizer) = source.decoder_tokenizer {
        files.push((
            DECODER_TOKENIZER_FILE.into(),
            FileKind::DecoderTokenizer,
            tokenizer.to_json()?.into_bytes(),
        ));
    }
    if let Some(memory) = source.memory {
        files.push((
            CAPTION_MEMORY_FILE.into(),
            FileKind::CaptionMemory,
            memory.to_bytes(opts.memory),
        ));
    }
    files.push((
        "MODEL_CARD.md".into(),
        FileKind::ModelCard,
        model_card(source, opts).into_bytes(),
    ));
    files.push((image_name.clone(), FileKind::SelfTestImage, image_bytes.clone()));
    if let Some(binary) = &opts.firmware {
        files.push((FIRMWARE_FILE.into(), FileKind::Firmware, binary.clone()));
    }
    let decoder = &source.model.decoder;
    let attention = &decoder.layers[0].self_attention;
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
        preprocess: source.preprocess.clone(),
        max_text_len: source.tokenizer.max_len(),
        answers: source.answers.to_vec(),
        decoder: DecoderSpec {
            layers: decoder.layers.len(),
            heads: attention.heads(),
            d_head: attention.d_head(),
            max_len: decoder.max_len(),
            vocab: decoder.token_embedding.weight.val().dims()[0],
        },
        files: Vec::new(),
        selftest: None,
        decoding: source.decoding,
    };
    let draft = Bundle::new(manifest.clone(), files.clone());
    let runtime = Runtime::from_bundle(&draft).map_err(runtime_error)?;
    let image = edgevlm_shared::decode_image(&image_bytes, std::path::Path::new(&image_name))?;
    let encoded = runtime.encode_image(&image).map_err(runtime_error)?;
    let caption = runtime
        .caption(&encoded, DecodeOptions::default())
        .map_err(runtime_error)?;
    let answer = if source.answers.is_empty() {
        None
    } else {
        Some(
            runtime
                .answer(&encoded, &opts.selftest_question)
                .map_err(runtime_error)?
                .answer,
        )
    };
    // The expected values come from burn; the graphs must reproduce them: exactly
    // in f32, within int8's rounding otherwise (where a near tie may change a
    // greedy word or an answer, so those come from the int8 graphs themselves).
    let golden = golden::compute(source, &image, &opts.selftest_question)?;
    let head: Vec<f32> = golden.embedding.iter().take(8).copied().collect();
    let error = head
        .iter()
        .zip(&encoded.embedding)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let tolerance = match opts.weights {
        WeightFormat::F32 => 1e-3,
        WeightFormat::Int8 => 0.05,
    };
    let exact = opts.weights == WeightFormat::F32;
    if error > tolerance || (exact && (caption != golden.caption || answer != golden.answer)) {
        return Err(Error::Invalid(format!(
            "the exported graphs do not reproduce the model on the self-test image: embedding \
             differs by {error} (tolerance {tolerance}); caption {caption:?}, the model's {:?}; \
             answer {answer:?}, the model's {:?}",
            golden.caption, golden.answer
        )));
    }
    manifest.selftest = Some(SelfTest {
        image: image_name,
        caption,
        vqa: answer.map(|a| (opts.selftest_question.clone(), a)),
        embedding_head: head,
        tolerance,
    });
    Ok(Bundle::new(manifest, files))
}

#[cfg(test)]
mod tests;

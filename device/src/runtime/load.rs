//! Loading a bundle into runnable plans, once at start: each graph parsed, its
//! input pinned where the runtime always feeds one image, optimized, made runnable.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Mutex;

use edgevlm_shared::bundle::{
    io, Bundle, BundleError, CAPTION_MEMORY_FILE, DECODER_TOKENIZER_FILE, TEXT_TOKENIZER_FILE,
};
use edgevlm_shared::caption::CaptionMemory;
use edgevlm_shared::TextTokenizer;
use tract_onnx::prelude::*;

use super::swap;
use super::text::TextEncoder;
use super::{clip, Plan, Result, Runtime, RuntimeError, VqaPlan};

/// Parses, optimizes and readies one graph. A `pinned` shape fixes the first input
/// (the batch of one image the runtime always feeds), so tract picks its kernels
/// for concrete sizes. The graph's bytes, and then its protobuf, are freed as soon
/// as the next form is built: a graph is never held in three forms at once.
pub(super) fn plan(
    origin: &str,
    graph: &str,
    bytes: Cow<'_, [u8]>,
    pinned: Option<&[usize]>,
) -> Result<Plan> {
    let fail = |e: TractError| RuntimeError::Graph {
        origin: origin.to_string(),
        graph: graph.to_string(),
        reason: format!("{e:#}"),
    };
    let proto = <tract_onnx::pb::ModelProto as prost::Message>::decode(&*bytes)
        .map_err(|e| fail(TractError::msg(format!("not an ONNX protobuf: {e}"))))?;
    drop(bytes);
    let mut model = tract_onnx::onnx().model_for_proto_model(&proto).map_err(fail)?;
    drop(proto);
    if let Some(shape) = pinned {
        model = model
            .with_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), shape))
            .map_err(fail)?;
    }
    let mut model = model.into_typed().map_err(fail)?;
    model.declutter().map_err(fail)?;
    swap::swap_in(&mut model).map_err(fail)?;
    model.optimize().map_err(fail)?;
    model.into_runnable().map_err(fail)
}

/// Where the loader reads the bundle from: one it owns gives up each graph's bytes
/// once parsed (no second copy of the bundle while loading); one the caller keeps
/// is read in place.
enum Source<'a> {
    Owned(Box<Bundle>),
    Borrowed(&'a Bundle),
}

impl Source<'_> {
    fn bundle(&self) -> &Bundle {
        match self {
            Source::Owned(b) => b,
            Source::Borrowed(b) => b,
        }
    }

    fn load_plan(&mut self, graph: &str, pinned: Option<&[usize]>) -> Result<Plan> {
        let file = io::graph_file(graph);
        match self {
            Source::Owned(b) => {
                let bytes = b.take_file(&file)?;
                plan(b.origin(), graph, Cow::Owned(bytes), pinned)
            }
            Source::Borrowed(b) => plan(b.origin(), graph, Cow::Borrowed(b.file(&file)?), pinned),
        }
    }

    /// A file's bytes read once: taken out of a bundle this loader owns, so they
    /// are freed as soon as the caller has parsed them.
    fn read_once(&mut self, file: &str) -> Result<Cow<'_, [u8]>> {
        Ok(match self {
            Source::Owned(b) => Cow::Owned(b.take_file(file)?),
            Source::Borrowed(b) => Cow::Borrowed(b.file(file)?),
        })
    }

    /// A graph's bytes to keep for later.
    fn keep(&mut self, graph: &str) -> Result<Vec<u8>> {
        let file = io::graph_file(graph);
        Ok(match self {
            Source::Owned(b) => b.take_file(&file)?,
            Source::Borrowed(b) => b.file(&file)?.to_vec(),
        })
    }
}

pub(super) fn load_tokenizer(bundle: &Bundle, file: &str, max_len: usize) -> Result<TextTokenizer> {
    let json = std::str::from_utf8(bundle.file(file)?).map_err(|e| RuntimeError::Tokenizer {
        file: format!("{}: {file}", bundle.origin()),
        reason: format!("not UTF-8: {e}"),
    })?;
    Ok(TextTokenizer::from_json(json, max_len, None)?)
}

/// The VQA graph, with what its first input says it reads: the image tokens or
/// the pixels. The question comes as the text encoder's token states.
fn vqa_plan(plan: Plan, origin: &str) -> Result<VqaPlan> {
    let model = plan.model();
    let names: Vec<&str> = model
        .input_outlets()
        .map(|inputs| inputs.iter().map(|o| model.node(o.node).name.as_str()).collect())
        .unwrap_or_default();
    let reads_pixels = match names[..] {
        [io::IMAGE_TOKENS, io::TEXT_STATES, io::MASK] => false,
        [io::IMAGE, io::TEXT_STATES, io::MASK] => true,
        _ => {
            return Err(RuntimeError::Graph {
                origin: origin.to_string(),
                graph: io::VQA.to_string(),
                reason: format!(
                    "inputs {names:?}, expected [`{}` or `{}`, `{}`, `{}`]{}",
                    io::IMAGE_TOKENS,
                    io::IMAGE,
                    io::TEXT_STATES,
                    io::MASK,
                    if names.contains(&io::IDS) {
                        ": this VQA graph carries its own text tower, as bundles exported \
                         before it read the text encoder's states did; export the model again"
                    } else {
                        ""
                    }
                ),
            })
        }
    };
    Ok(VqaPlan { plan, reads_pixels })
}

impl Runtime {
    pub fn load(path: &Path) -> Result<Self> {
        Self::from_owned(Bundle::read(path)?)
    }

    /// Loads from a bundle the caller keeps.
    pub fn from_bundle(bundle: &Bundle) -> Result<Self> {
        Self::from_source(Source::Borrowed(bundle), true)
    }

    /// Loads from a bundle it consumes: each graph's bytes are dropped once parsed.
    pub fn from_owned(bundle: Bundle) -> Result<Self> {
        Self::from_source(Source::Owned(Box::new(bundle)), true)
    }

    /// Loads what a loop needs, from a bundle it consumes: the text tower's bytes
    /// are dropped before anything is built, and [`Runtime::embed_texts`] is an error (a text trigger's
    /// phrases come from a [`TextTower`] loaded before).
    pub fn without_text_encoder(bundle: Bundle) -> Result<Self> {
        Self::from_source(Source::Owned(Box::new(bundle)), false)
    }

    fn from_source(mut source: Source, keep_text: bool) -> Result<Self> {
        let bundle = source.bundle();
        let manifest = bundle.manifest.clone();
        // `from_bytes` checked this already; a bundle built in memory was not.
        manifest.validate().map_err(|reason| BundleError::Manifest {
            origin: bundle.origin().into(),
            reason,
        })?;
        let tokenizer = load_tokenizer(bundle, TEXT_TOKENIZER_FILE, manifest.max_text_len)?;
        let decoder_tokenizer = if bundle.has_file(DECODER_TOKENIZER_FILE) {
            load_tokenizer(bundle, DECODER_TOKENIZER_FILE, manifest.decoder.max_len)?
        } else {
            tokenizer.clone()
        };
        // Every id the decoder can emit must be a token its tokenizer can spell.
        if decoder_tokenizer.vocab_size() != manifest.decoder.vocab {
            return Err(BundleError::Manifest {
                origin: bundle.origin().into(),
                reason: format!(
                    "`decoder.vocab` is {}, but the caption decoder's tokenizer has {} tokens",
                    manifest.decoder.vocab,
                    decoder_tokenizer.vocab_size()
                ),
            }
            .into());
        }
        let text_graph = if keep_text {
            TextEncoder::Graph(source.keep(io::TEXT_ENCODER)?)
        } else {
            drop(source.read_once(&io::graph_file(io::TEXT_ENCODER))?);
            TextEncoder::Released
        };
        let bundle = source.bundle();
        let memory_origin = bundle
            .has_file(CAPTION_MEMORY_FILE)
            .then(|| format!("{}: {CAPTION_MEMORY_FILE}", bundle.origin()));
        let memory = match memory_origin {
            Some(origin) => Some(CaptionMemory::from_bytes(
                &source.read_once(CAPTION_MEMORY_FILE)?,
                &origin,
            )?),
            None => None,
        };
        let bundle = source.bundle();
        let selftest_image = manifest
            .selftest
            .as_ref()
            .map(|t| bundle.file(&t.image).map(<[u8]>::to_vec))
            .transpose()?;
        let origin = bundle.origin().to_string();
        let vqa = if bundle.has_file(&io::graph_file(io::VQA)) {
            Some(vqa_plan(source.load_plan(io::VQA, None)?, &origin)?)
        } else {
            None
        };
        let side = manifest.preprocess.image_size as usize;
        let image_encoder = source.load_plan(io::IMAGE_ENCODER, Some(&[1, 3, side, side]))?;
        let decoder = source.load_plan(io::CAPTION_DECODER, None)?;
        let decoder_step = source.load_plan(io::CAPTION_STEP, None)?;
        let clip = if source.bundle().has_file(&io::graph_file(io::TEMPORAL)) {
            let temporal = source.load_plan(io::TEMPORAL, None)?;
            let frames = clip::frames_of(&temporal, &origin)?;
            Some(clip::ClipPlans {
                temporal,
                decoder: source.load_plan(io::CLIP_DECODER, None)?,
                step: source.load_plan(io::CLIP_STEP, None)?,
                frames,
            })
        } else {
            None
        };
        Ok(Self {
            image_encoder,
            text_encoder: Mutex::new(text_graph),
            vqa,
            decoder,
            decoder_step,
            clip,
            origin,
            manifest,
            tokenizer,
            decoder_tokenizer,
            memory,
            selftest_image,
        })
    }
}

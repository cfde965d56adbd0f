//! `edgevlm caption`, `ask`, `verify`, `chat`, `explain` and `match` on one image, and the model loading and
//! caption decoding that `eval` shares with them.

use std::path::Path;

use anyhow::{bail, Context, Result};
use burn::tensor::Device;
use edgevlm::data::datasets::VERDICTS;
use edgevlm::eval::{explain, predict};
use edgevlm::model::consensus::Consensus;
use edgevlm::model::saved::SavedModel;
use edgevlm::model::DecodeOptions;
use edgevlm_shared::dialog::{self, Conversation};

use crate::cli::{self, AskArgs, CaptionArgs, ChatArgs, ExplainArgs, MatchArgs, VerifyArgs};

pub fn caption(a: CaptionArgs) -> Result<()> {
    let device = Device::flex();
    let mut model = load_predictor(&a.model, &device)?;
    let store = single_image(&a.image, model.preprocess())?;
    let opts = decoding(&a.decode, model.as_mut(), 3)?;
    let caption = model.captions(&store, &[0], opts)?;
    println!("{}", caption[0]);
    Ok(())
}

pub fn caption_clip(a: cli::CaptionClipArgs) -> Result<()> {
    let device = Device::flex();
    let mut model = load_any(&a.model, &device)?;
    // Greedy unless asked: as the board decodes a bundle without settings.
    let opts = decoding(&a.decode, model.as_mut(), 1)?;
    let mut frames = a.frames;
    if a.reversed {
        frames = edgevlm::data::clips::frame_paths(&frames)?;
        frames.reverse();
    }
    let (caption, _) = edgevlm::eval::clips::caption_frames(model.as_ref(), &frames, opts)?;
    println!("{caption}");
    Ok(())
}

pub fn ask(a: AskArgs) -> Result<()> {
    let device = Device::flex();
    let model = load_predictor(&a.model, &device)?;
    let store = single_image(&a.image, model.preprocess())?;
    let answers = model.answers(&store, &[(0, a.question)])?;
    let (answer, p) = &answers[0];
    println!("{answer} ({:.1}%)", p * 100.0);
    Ok(())
}

pub fn explain(a: ExplainArgs) -> Result<()> {
    let device = Device::flex();
    let mut model = load_any(&a.model, &device)?;
    let image = edgevlm_shared::preprocess::load_image(&a.image)
        .with_context(|| format!("reading {}", a.image.display()))?;
    let mut own_caption = || -> Result<String> {
        let store = single_image(&a.image, model.preprocess())?;
        let opts = decoding(&cli::DecodeArgs::default(), model.as_mut(), 3)?;
        Ok(model.captions(&store, &[0], opts)?.remove(0))
    };
    let target = match (a.question, a.text, a.word) {
        (Some(q), _, _) => explain::Target::Answer(q),
        (None, Some(t), _) => explain::Target::Text(t),
        (None, None, Some(word)) => explain::Target::Word {
            caption: match a.caption {
                Some(caption) => caption,
                None => own_caption()?,
            },
            word,
        },
        (None, None, None) => explain::Target::Text(own_caption()?),
    };
    let e = explain::explain(model.as_ref(), &image, &target)?;
    edgevlm_shared::explain::overlay(&e.image, &e.map)
        .save(&a.out)
        .with_context(|| format!("writing {}", a.out.display()))?;
    let what = match target {
        explain::Target::Answer(q) => {
            let map = if e.focus { "where the head read it; " } else { "" };
            format!("answer {:?} to {q:?} ({map}margin {:.2})", e.explained, e.score)
        }
        explain::Target::Text(_) => format!("similarity to {:?} ({:.3})", e.explained, e.score),
        explain::Target::Word { .. } => {
            format!("decoder's log-probability of {} ({:.3})", e.explained, e.score)
        }
    };
    println!(
        "{}: {what}; looked most at ({}, {}) of the {}-pixel crop",
        a.out.display(),
        e.peak.0,
        e.peak.1,
        e.image.width()
    );
    Ok(())
}

pub fn verify(a: VerifyArgs) -> Result<()> {
    let device = Device::flex();
    let model = load_predictor(&a.model, &device)?;
    if !model.has_vqa() {
        bail!(
            "{} has no answer head: fine-tune it on statements with `edgevlm finetune reasoning`",
            a.model.display()
        );
    }
    let store = single_image(&a.image, model.preprocess())?;
    let answers = model.answers(&store, &[(0, a.statement)])?;
    let (verdict, p) = &answers[0];
    if !VERDICTS.contains(&verdict.as_str()) {
        bail!(
            "{} answered {verdict:?}: it was not fine-tuned to judge statements \
             (`edgevlm finetune reasoning`)",
            a.model.display()
        );
    }
    println!("{verdict} ({:.1}%)", p * 100.0);
    Ok(())
}

pub fn chat(a: ChatArgs) -> Result<()> {
    let device = Device::flex();
    let model = load_predictor(&a.model, &device)?;
    if !model.has_vqa() {
        bail!(
            "{} has no answer head: fine-tune it with `edgevlm finetune dialog`",
            a.model.display()
        );
    }
    let store = single_image(&a.image, model.preprocess())?;
    let mut conversation = Conversation::default();
    let mut input = std::io::stdin().lock();
    while let Some(question) = dialog::next_line(&mut input)? {
        if question.trim().is_empty() {
            continue;
        }
        let text = match conversation.text_for(&question) {
            Ok(text) => text,
            Err(why) => {
                eprintln!("refused: {why}");
                continue;
            }
        };
        let (answer, _) = model.answers(&store, &[(0, text)])?.remove(0);
        println!("{answer}");
        conversation.record(&question, &answer);
    }
    Ok(())
}

pub fn match_texts(a: MatchArgs) -> Result<()> {
    let device = Device::flex();
    let model = load_predictor(&a.model, &device)?;
    let store = single_image(&a.image, model.preprocess())?;
    let image = model.image_embeddings(&store, &[0])?;
    let texts = model.text_embeddings(&a.texts)?;
    for (text, emb) in a.texts.iter().zip(&texts) {
        println!("{:+.4}  {text}", predict::dot(&image[0], emb));
    }
    Ok(())
}

fn single_image(
    path: &Path,
    preprocess: &edgevlm_shared::PreprocessConfig,
) -> Result<edgevlm::data::store::ImageStore> {
    Ok(edgevlm::data::store::ImageStore::load(
        vec![path.to_path_buf()],
        preprocess,
    )?)
}

/// A model folder in burn, or a bundle file in the device runtime.
pub fn load_any(path: &Path, device: &Device) -> Result<Box<dyn predict::Predictor>> {
    if path.is_file() {
        Ok(Box::new(predict::BundlePredictor::new(
            edgevlm_device::runtime::Runtime::load(path)?,
        )))
    } else {
        load_predictor(path, device)
    }
}

/// A model folder in burn.
pub fn load_predictor(dir: &Path, device: &Device) -> Result<Box<dyn predict::Predictor>> {
    Ok(Box::new(predict::BurnPredictor::new(
        SavedModel::load(dir, device)?,
        device.clone(),
    )))
}

/// The caption decoding: flags first, then the model folder's `decoding.json`, then
/// `fallback_beam` and the default length penalty. Sets the model's reranking.
pub fn decoding(
    a: &cli::DecodeArgs,
    model: &mut dyn predict::Predictor,
    fallback_beam: usize,
) -> Result<DecodeOptions> {
    let folder = model.decoding();
    let opts = DecodeOptions {
        beam_size: a
            .beam
            .or(folder.map(|d| d.beam_size))
            .unwrap_or(fallback_beam)
            .max(1),
        length_penalty: a
            .length_penalty
            .or(folder.map(|d| d.length_penalty))
            .unwrap_or(DecodeOptions::default().length_penalty),
        ..Default::default()
    };
    if a.consensus.is_some() || a.consensus_weight.is_some() {
        let base = model.consensus().unwrap_or_default();
        let consensus = Consensus {
            neighbours: a.consensus.unwrap_or(base.neighbours),
            weight: a.consensus_weight.unwrap_or(base.weight),
        };
        model.set_consensus((consensus.neighbours > 0).then_some(consensus))?;
    }
    Ok(opts)
}

//! `edgevlm-device explain`: where a spatial VQA head read its answer (its focus),
//! or the occlusion map of another head's answer, of the similarity to a
//! text (by default the bundle's own caption) or of the decoder's confidence in a
//! word of a caption, written as a PNG: the same shared code as `edgevlm explain`,
//! scored by the runtime.

use std::path::Path;

use anyhow::{Context, Result};
use edgevlm_device::runtime::Runtime;
use edgevlm_shared::explain::{
    answer_evidence, focus_map, occlusion_map, overlay, peak, CaptionWord, Occlusion,
};
use edgevlm_shared::preprocess::{load_image, resize_and_crop};
use edgevlm_shared::search::log_softmax;
use image::RgbImage;

use crate::cli::{ExplainWhat, ModelArgs};

pub fn explain(image: &Path, what: &ExplainWhat, out: &Path, model: &ModelArgs) -> Result<()> {
    let runtime = Runtime::load(&model.bundle)?;
    let photo = load_image(image).with_context(|| format!("reading {}", image.display()))?;
    let seen = resize_and_crop(&photo, runtime.manifest.preprocess.image_size);
    let whole = runtime.encode_image(&seen)?;
    let own_caption = || runtime.caption_with(&whole, runtime.decoding());
    let (what, (score, map)) = match (
        what.question.as_deref(),
        what.text.as_deref(),
        what.word.as_deref(),
    ) {
        (Some(q), _, _) => {
            let (logits, focus) = runtime.vqa_logits_with_focus(&whole, q)?;
            let answer = runtime.answer_from_logits(&logits)?;
            let class = runtime
                .manifest
                .answers
                .iter()
                .position(|a| *a == answer.answer)
                .unwrap_or(0);
            let margin_of = |logits: &[f32]| {
                let probabilities: Vec<f32> = log_softmax(logits).iter().map(|l| l.exp()).collect();
                answer_evidence(&probabilities, class)
            };
            match focus.and_then(|f| focus_map(&f, seen.width())) {
                Some(map) => (
                    format!(
                        "answer {:?} to {q:?}, where the head read it; margin",
                        answer.answer
                    ),
                    (margin_of(&logits), map),
                ),
                None => {
                    let margin = |image: &RgbImage| -> Result<f32> {
                        Ok(margin_of(&runtime.vqa_logits(&runtime.encode_image(image)?, q)?))
                    };
                    (
                        format!("answer {:?} to {q:?}, margin", answer.answer),
                        map_of(&seen, margin)?,
                    )
                }
            }
        }
        (None, None, Some(word)) => {
            let caption = match &what.caption {
                Some(c) => c.clone(),
                None => own_caption()?,
            };
            let found = CaptionWord::find(&runtime.decoder_tokenizer, &caption, word)?;
            let confidence = |image: &RgbImage| -> Result<f32> {
                let log_probs = runtime.token_log_probs(&runtime.encode_image(image)?, &found.ids)?;
                Ok(found.log_probability(&log_probs))
            };
            (
                format!("decoder's log-probability of {word:?} in {caption:?}"),
                map_of(&seen, confidence)?,
            )
        }
        (None, text, _) => {
            let text = match text {
                Some(t) => t.to_string(),
                None => own_caption()?,
            };
            let similarity = |image: &RgbImage| -> Result<f32> {
                Ok(runtime.match_texts(&runtime.encode_image(image)?, &[&text])?[0])
            };
            (format!("similarity to {text:?}"), map_of(&seen, similarity)?)
        }
    };
    overlay(&seen, &map)
        .save(out)
        .with_context(|| format!("writing {}", out.display()))?;
    let (x, y) = peak(&map, seen.width());
    println!(
        "{}: {what} ({score:.3}); looked most at ({x}, {y}) of the {}-pixel crop",
        out.display(),
        seen.width()
    );
    Ok(())
}

/// The occlusion map of `score` over the crop the model sees, one image at a time
/// (the runtime runs batches of one).
fn map_of(seen: &RgbImage, score: impl Fn(&RgbImage) -> Result<f32>) -> Result<(f32, Vec<f32>)> {
    occlusion_map(seen, Occlusion::for_side(seen.width()), 16, |batch| {
        batch.iter().map(&score).collect::<Result<Vec<f32>>>()
    })
}

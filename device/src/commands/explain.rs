//! `edgevlm-device explain`: the occlusion map of an answer or of the similarity
//! to a text (by default the bundle's own caption), written as a PNG: the same
//! shared code as `edgevlm explain`, scored by the runtime.

use std::path::Path;

use anyhow::{Context, Result};
use edgevlm_device::runtime::Runtime;
use edgevlm_shared::explain::{answer_evidence, occlusion_map, overlay, peak, Occlusion};
use edgevlm_shared::preprocess::{load_image, resize_and_crop};
use edgevlm_shared::search::log_softmax;
use image::RgbImage;

use crate::cli::ModelArgs;

pub fn explain(
    image: &Path,
    question: Option<&str>,
    text: Option<&str>,
    out: &Path,
    model: &ModelArgs,
) -> Result<()> {
    let runtime = Runtime::load(&model.bundle)?;
    let photo = load_image(image).with_context(|| format!("reading {}", image.display()))?;
    let seen = resize_and_crop(&photo, runtime.manifest.preprocess.image_size);
    let whole = runtime.encode_image(&seen)?;
    let (what, (score, map)) = match (question, text) {
        (Some(q), _) => {
            let answer = runtime.answer(&whole, q)?;
            let class = runtime
                .manifest
                .answers
                .iter()
                .position(|a| *a == answer.answer)
                .unwrap_or(0);
            let probability = |image: &RgbImage| -> Result<f32> {
                let logits = runtime.vqa_logits(&runtime.encode_image(image)?, q)?;
                let probabilities: Vec<f32> = log_softmax(&logits).iter().map(|l| l.exp()).collect();
                Ok(answer_evidence(&probabilities, class))
            };
            let scored = occlusion_map(&seen, Occlusion::for_side(seen.width()), 16, |batch| {
                batch.iter().map(probability).collect::<Result<Vec<f32>>>()
            })?;
            let (score, map) = scored;
            (
                format!("answer {:?} to {q:?}, margin", answer.answer),
                (score, map),
            )
        }
        (None, text) => {
            let text = match text {
                Some(t) => t.to_string(),
                None => runtime.caption_with(&whole, runtime.decoding())?,
            };
            let similarity = |image: &RgbImage| -> Result<f32> {
                Ok(runtime.match_texts(&runtime.encode_image(image)?, &[&text])?[0])
            };
            let scored = occlusion_map(&seen, Occlusion::for_side(seen.width()), 16, |batch| {
                batch.iter().map(similarity).collect::<Result<Vec<f32>>>()
            })?;
            (format!("similarity to {text:?}"), scored)
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

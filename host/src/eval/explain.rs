//! `edgevlm explain` and `eval pointing`: occlusion maps ([`edgevlm_shared::explain`])
//! of an answer's probability or an image-text similarity, from any
//! [`Predictor`] (a folder in burn, a bundle in tract), or a spatial VQA head's
//! own focus for its answers, and the pointing game
//! (Zhang et al. 2016) on synthetic scenes: is the map's peak inside the object
//! the answer or the phrase names? Beside it, the centre-prior baseline (always
//! point at the image's centre).

use std::collections::BTreeMap;
use std::path::Path;

use edgevlm_shared::explain::{answer_evidence, focus_map, occlusion_map, peak, CaptionWord, Occlusion};
use edgevlm_shared::preprocess::resize_and_crop;
use edgevlm_shared::synth::{Object, Scene};
use edgevlm_shared::PreprocessConfig;
use image::RgbImage;
use serde::Serialize;

use super::predict::{self, Predictor};
use crate::data::store::ImageStore;
use crate::error::{Error, Result};

/// What a map explains.
#[derive(Debug, Clone)]
pub enum Target {
    /// The model's answer to this question.
    Answer(String),
    /// The image's similarity to this text (a caption, a phrase, a word).
    Text(String),
    /// How sure the caption decoder is of this word of this caption (its
    /// log-probability, read with teacher forcing).
    Word { word: String, caption: String },
}

pub struct Explanation {
    /// The image as the model sees it (resized, centre-cropped), square.
    pub image: RgbImage,
    /// Per pixel of `image`, row-major: how much hiding it lowers the score.
    pub map: Vec<f32>,
    /// The answer explained, or the text.
    pub explained: String,
    /// Its logit margin (answers) or similarity (texts) on the whole image.
    pub score: f32,
    pub peak: (u32, u32),
    /// The map is the answer head's own focus, not an occlusion map.
    pub focus: bool,
}

/// Scores a batch of images.
type Scorer<'a> = dyn FnMut(&[RgbImage]) -> Result<Vec<f32>> + 'a;

/// Variants scored per batch.
const CHUNK: usize = 64;

/// A batch of occluded copies as a store, with the index of each.
fn every_image(images: &[RgbImage], cfg: &PreprocessConfig) -> (ImageStore, Vec<usize>) {
    (ImageStore::from_images(images, cfg), (0..images.len()).collect())
}

pub fn explain(model: &dyn Predictor, image: &RgbImage, target: &Target) -> Result<Explanation> {
    let cfg = model.preprocess().clone();
    let seen = resize_and_crop(image, cfg.image_size);
    let side = seen.width();
    let occlusion = Occlusion::for_side(side);
    let (explained, score): (String, Box<Scorer>) = match target {
        Target::Answer(question) => {
            if !model.has_vqa() {
                return Err(Error::Invalid("the model has no answer head to explain".into()));
            }
            let store = ImageStore::from_images(std::slice::from_ref(&seen), &cfg);
            let asked = [(0, question.clone())];
            let (probs, focus) = model.answers_with_focus(&store, &asked)?;
            let (answer, _) = predict::best_answer(&probs[0], model.answer_names());
            let class = model
                .answer_names()
                .iter()
                .position(|a| *a == answer)
                .unwrap_or(0);
            // A head that says where it read its answer is taken at its word: on
            // the pointing game its focus beats occlusion.
            let focus = focus.and_then(|mut f| f.pop());
            if let Some(map) = focus.and_then(|f| focus_map(&f, side)) {
                return Ok(Explanation {
                    peak: peak(&map, side),
                    image: seen,
                    map,
                    explained: answer,
                    score: answer_evidence(&probs[0], class),
                    focus: true,
                });
            }
            let question = question.clone();
            let scorer = move |images: &[RgbImage]| -> Result<Vec<f32>> {
                let store = ImageStore::from_images(images, &cfg);
                let asked: Vec<(usize, String)> = (0..images.len()).map(|i| (i, question.clone())).collect();
                Ok(model
                    .answer_probabilities(&store, &asked)?
                    .iter()
                    .map(|p| answer_evidence(p, class))
                    .collect())
            };
            (answer, Box::new(scorer))
        }
        Target::Text(text) => {
            let embedding = model
                .text_embeddings(std::slice::from_ref(text))?
                .pop()
                .ok_or_else(|| Error::Invalid("no text embedding".into()))?;
            let scorer = move |images: &[RgbImage]| -> Result<Vec<f32>> {
                let (store, indices) = every_image(images, &cfg);
                Ok(model
                    .image_embeddings(&store, &indices)?
                    .iter()
                    .map(|e| predict::dot(e, &embedding))
                    .collect())
            };
            (text.clone(), Box::new(scorer))
        }
        Target::Word { word, caption } => {
            let found = CaptionWord::find(model.caption_tokenizer(), caption, word)?;
            let scorer = move |images: &[RgbImage]| -> Result<Vec<f32>> {
                let (store, indices) = every_image(images, &cfg);
                Ok(model
                    .token_log_probs(&store, &indices, &found.ids)?
                    .iter()
                    .map(|row| found.log_probability(row))
                    .collect())
            };
            (format!("{word:?} in {caption:?}"), Box::new(scorer))
        }
    };
    let (score, map) = occlusion_map(&seen, occlusion, CHUNK, score)?;
    Ok(Explanation {
        peak: peak(&map, side),
        image: seen,
        map,
        explained,
        score,
        focus: false,
    })
}

#[derive(Debug, Default, Serialize)]
pub struct PointingReport {
    pub scenes: usize,
    pub pointed: usize,
    /// Hit rate in percent: the map's peak inside the named object's box.
    pub hit_rate: f64,
    /// Hit rate of always pointing at the centre, on the same targets.
    pub centre_baseline: f64,
    /// Hit rate per kind of target (`answer:<family>`, `phrase`, `word:colour`).
    pub per_kind: BTreeMap<String, f64>,
}

/// Question families whose answer is about exactly one object, found by colour
/// (`the red object`) or position (`the leftmost object`).
const ONE_OBJECT_FAMILIES: [&str; 5] = ["shape", "size", "horizontal", "vertical", "colour"];

/// The pointing game over the first `limit` scenes of a `data synth` folder: each
/// scene's first question of a one-object family (explained by its answer); for
/// one of its objects, the phrase "a {colour} {shape}" (explained by ITC
/// similarity) and its colour word in the scene's left-to-right caption (explained
/// by the decoder's confidence in that word).
/// The maps the pointing game scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pointed {
    Answers,
    Phrases,
    Words,
}

pub fn pointing(
    model: &dyn Predictor,
    data: &Path,
    limit: usize,
    kinds: &[Pointed],
) -> Result<PointingReport> {
    let scenes = crate::data::synth::read_scenes(data)?;
    let questions = crate::data::datasets::questions(&data.join("questions.jsonl"), None, None)?;
    let mut hits: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    let mut report = PointingReport::default();
    for (index, (name, scene)) in scenes.iter().take(limit).enumerate() {
        let path = data.join(name);
        let image = edgevlm_shared::preprocess::load_image(&path)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        let mut targets: Vec<(String, Target, &Object)> = Vec::new();
        let asked = questions
            .records
            .iter()
            .find(|q| q.image == path && ONE_OBJECT_FAMILIES.contains(&q.family.as_deref().unwrap_or("")));
        let answers = kinds.contains(&Pointed::Answers) && model.has_vqa();
        if let (true, Some(q)) = (answers, asked) {
            if let Some(object) = named_object(scene, &q.question) {
                let family = q.family.clone().unwrap_or_default();
                targets.push((
                    format!("answer:{family}"),
                    Target::Answer(q.question.clone()),
                    object,
                ));
            }
        }
        let object = &scene.objects[index % scene.objects.len()];
        if kinds.contains(&Pointed::Phrases) {
            let phrase = format!("a {} {}", object.colour.name(), object.shape.name());
            targets.push(("phrase".into(), Target::Text(phrase), object));
        }
        // The object's colour word in the scene's left-to-right caption.
        let caption = edgevlm_shared::synth::captions(scene).into_iter().next();
        if let (true, Some(caption)) = (kinds.contains(&Pointed::Words), caption) {
            let word = object.colour.name().to_string();
            targets.push(("word:colour".into(), Target::Word { word, caption }, object));
        }
        for (kind, target, object) in targets {
            let explanation = explain(model, &image, &target)?;
            let scale = scene.size as f32 / explanation.image.width() as f32;
            let inside = |(x, y): (f32, f32)| {
                let r = object.bounding_radius();
                (x - object.x).abs() <= r && (y - object.y).abs() <= r
            };
            let (px, py) = explanation.peak;
            let hit = inside(((px as f32 + 0.5) * scale, (py as f32 + 0.5) * scale));
            let centre = inside((scene.size as f32 / 2.0, scene.size as f32 / 2.0));
            let entry = hits.entry(kind).or_default();
            entry.0 += hit as usize;
            entry.1 += centre as usize;
            entry.2 += 1;
        }
        report.scenes += 1;
    }
    let (mut hit, mut centre, mut total) = (0, 0, 0);
    for (kind, (h, c, n)) in &hits {
        report
            .per_kind
            .insert(kind.clone(), 100.0 * *h as f64 / *n as f64);
        (hit, centre, total) = (hit + h, centre + c, total + n);
    }
    if total == 0 {
        return Err(Error::Invalid(format!(
            "{}: no scene to point in",
            data.display()
        )));
    }
    report.pointed = total;
    report.hit_rate = 100.0 * hit as f64 / total as f64;
    report.centre_baseline = 100.0 * centre as f64 / total as f64;
    Ok(report)
}

/// The object a one-object question is about: "the red object", or the
/// leftmost/rightmost/topmost/bottommost one.
fn named_object<'a>(scene: &'a Scene, question: &str) -> Option<&'a Object> {
    if let Some(o) = scene
        .objects
        .iter()
        .find(|o| question.contains(&format!("the {} object", o.colour.name())))
    {
        return Some(o);
    }
    let key = |o: &Object| -> Option<f32> {
        Some(match () {
            _ if question.contains("leftmost") => o.x,
            _ if question.contains("rightmost") => -o.x,
            _ if question.contains("topmost") => o.y,
            _ if question.contains("bottommost") => -o.y,
            _ => return None,
        })
    };
    scene
        .objects
        .iter()
        .filter_map(|o| key(o).map(|k| (k, o)))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, o)| o)
}

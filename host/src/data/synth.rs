//! Writes a synthetic scene dataset (see `edgevlm_shared::synth`) to disk in the
//! forms the loaders read:
//!
//! ```text
//! OUT/images/000000.png      rendered scenes
//! OUT/questions.jsonl        {"image", "question", "answer", "type", "family", "focus"?}
//! OUT/statements.jsonl       {"image", "statement", "answer": "true"|"false", "type", "family"}
//! OUT/dialogs.jsonl          {"image", "rounds": [{"question", "answer", "family", "distance"?}]}
//! OUT/captions.json          text_image_data form: [{"text", "image"}]
//! OUT/scenes.jsonl           {"image", "scene"}: the ground truth behind both
//! OUT/clips.jsonl, clips/     with `clips` > 0: see [`super::clips`]
//! ```
//!
//! A question's `focus` is where the object its answer is about lies, as fractions
//! of the image's side (x, y); `finetune vqa --focus-weight` trains the spatial
//! head's attention on it. Image i is drawn from its own random stream, so the output for a seed is
//! byte-identical however many threads render it.

use std::io::Write;
use std::path::Path;

use edgevlm_shared::rng::SplitMix64;
use edgevlm_shared::synth::{self, Scene};
use image::ImageFormat;
use rayon::prelude::*;
use serde::Serialize;

use super::error::{DataError, Result};

#[derive(Debug, Clone)]
pub struct SynthOptions {
    pub count: usize,
    pub seed: u64,
    /// Canvas side in pixels.
    pub size: u32,
    /// Questions of each kind (relational, non-relational) per image.
    pub questions_per_kind: usize,
    /// True statements of each family per image (and as many false ones).
    pub statements_per_family: usize,
    /// Clips written beside the scenes ([`super::clips`]), and frames per clip.
    pub clips: usize,
    pub clip_frames: usize,
}

impl Default for SynthOptions {
    fn default() -> Self {
        Self {
            count: 1000,
            seed: 0,
            size: 64,
            questions_per_kind: 10,
            statements_per_family: 1,
            clips: 0,
            clip_frames: 8,
        }
    }
}

#[derive(Serialize)]
struct QuestionLine<'a> {
    image: &'a str,
    question: &'a str,
    answer: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    family: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    focus: Option<[f32; 2]>,
}

#[derive(Serialize)]
struct StatementLine<'a> {
    image: &'a str,
    statement: &'a str,
    answer: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    family: &'a str,
}

#[derive(Serialize)]
struct DialogLine<'a> {
    image: &'a str,
    rounds: &'a [synth::Round],
}

#[derive(Serialize)]
struct CaptionEntry<'a> {
    text: &'a str,
    image: &'a str,
}

#[derive(Serialize)]
struct SceneLine<'a> {
    image: &'a str,
    scene: &'a Scene,
}

struct Rendered {
    name: String,
    scene: Scene,
    png: Vec<u8>,
    questions: Vec<synth::Question>,
    statements: Vec<synth::Statement>,
    dialog: Vec<synth::Round>,
    captions: Vec<String>,
}

/// Renders `opts.count` scenes into `out` (created if needed).
pub fn write(out: &Path, opts: &SynthOptions) -> Result<()> {
    let images = out.join("images");
    std::fs::create_dir_all(&images).map_err(|e| DataError::io(&images, e))?;
    let mut questions = Vec::new();
    let mut statements = Vec::new();
    let mut dialogs = Vec::new();
    let mut captions = Vec::new();
    let mut scenes = Vec::new();
    // Chunks bound memory while each chunk renders in parallel.
    for chunk_start in (0..opts.count).step_by(512) {
        let chunk_end = (chunk_start + 512).min(opts.count);
        let rendered: Vec<Rendered> = (chunk_start..chunk_end)
            .into_par_iter()
            .map(|i| render_one(i, opts))
            .collect::<Result<_>>()?;
        for r in rendered {
            let path = out.join(&r.name);
            std::fs::write(&path, &r.png).map_err(|e| DataError::io(&path, e))?;
            for q in &r.questions {
                let line = QuestionLine {
                    image: &r.name,
                    question: &q.question,
                    answer: &q.answer,
                    kind: q.kind.name(),
                    family: &q.family,
                    focus: q.focus.map(|[x, y]| {
                        let side = r.scene.size as f32;
                        [x / side, y / side]
                    }),
                };
                serde_json::to_writer(&mut questions, &line).expect("in-memory write");
                questions.push(b'\n');
            }
            for s in &r.statements {
                let line = StatementLine {
                    image: &r.name,
                    statement: &s.statement,
                    answer: if s.truth { "true" } else { "false" },
                    kind: s.kind.name(),
                    family: &s.family,
                };
                serde_json::to_writer(&mut statements, &line).expect("in-memory write");
                statements.push(b'\n');
            }
            let line = DialogLine {
                image: &r.name,
                rounds: &r.dialog,
            };
            serde_json::to_writer(&mut dialogs, &line).expect("in-memory write");
            dialogs.push(b'\n');
            for text in &r.captions {
                captions
                    .push(serde_json::to_value(CaptionEntry { text, image: &r.name }).expect("plain data"));
            }
            serde_json::to_writer(
                &mut scenes,
                &SceneLine {
                    image: &r.name,
                    scene: &r.scene,
                },
            )
            .expect("in-memory write");
            scenes.push(b'\n');
        }
    }
    write_file(&out.join("questions.jsonl"), &questions)?;
    write_file(&out.join("statements.jsonl"), &statements)?;
    write_file(&out.join("dialogs.jsonl"), &dialogs)?;
    let captions = serde_json::to_vec_pretty(&captions).expect("plain data");
    write_file(&out.join("captions.json"), &captions)?;
    write_file(&out.join("scenes.jsonl"), &scenes)?;
    if opts.clips > 0 {
        super::clips::write(out, opts.clips, opts.clip_frames, opts.size, opts.seed)?;
    }
    Ok(())
}

fn render_one(i: usize, opts: &SynthOptions) -> Result<Rendered> {
    let mut rng = SplitMix64::fork(opts.seed, i as u64);
    let scene = Scene::generate(&mut rng, opts.size);
    let mut png = Vec::new();
    synth::render(&scene)
        .write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png)
        .map_err(|e| DataError::layout("png encoder", e.to_string()))?;
    // Statements and dialogs draw after the questions, so a seed's questions stay
    // as they were.
    let questions = synth::questions(&scene, &mut rng, opts.questions_per_kind);
    let statements = synth::statements(&scene, &mut rng, opts.statements_per_family);
    Ok(Rendered {
        name: format!("images/{i:06}.png"),
        statements,
        dialog: synth::dialog(&scene, &mut rng),
        questions,
        captions: synth::captions(&scene),
        scene,
        png,
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::File::create(path).map_err(|e| DataError::io(path, e))?;
    f.write_all(bytes).map_err(|e| DataError::io(path, e))
}

/// Reads `scenes.jsonl` back: image name → scene.
pub fn read_scenes(dir: &Path) -> Result<Vec<(String, Scene)>> {
    #[derive(serde::Deserialize)]
    struct Line {
        image: String,
        scene: Scene,
    }
    let path = dir.join("scenes.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| DataError::io(&path, e))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<Line>(l)
                .map(|l| (l.image, l.scene))
                .map_err(|e| DataError::json(&path, &e))
        })
        .collect()
}

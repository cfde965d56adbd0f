//! `edgevlm-device caption`, `caption-clip`, `ask`, `verify`, `chat`, `match`, `selftest` and `bench`: load a bundle
//! into the runtime and run it on images.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use edgevlm_device::runtime::Runtime;
use edgevlm_shared::bundle::Bundle;
use edgevlm_shared::dialog::{self, Conversation};
use edgevlm_shared::frames::{frame_paths, sample_frames};
use edgevlm_shared::preprocess::load_image;

use crate::bench;
use crate::cli::{ModelArgs, SearchArgs};

pub fn caption(image: &Path, model: &ModelArgs, search: SearchArgs) -> Result<()> {
    let runtime = load(model)?;
    let start = Instant::now();
    let encoded = encode(&runtime, image)?;
    let caption = runtime.caption_with(&encoded, search.decoding(&runtime))?;
    println!("{caption}");
    eprintln!("{:.1} ms", start.elapsed().as_secs_f64() * 1e3);
    Ok(())
}

/// Captions a clip read as the bundle's frame count spread over the given frames.
pub fn caption_clip(frames: &[PathBuf], reversed: bool, model: &ModelArgs, search: SearchArgs) -> Result<()> {
    let runtime = load(model)?;
    let Some(count) = runtime.clip_frames() else {
        bail!("this bundle captions single images, not clips (export a model fine-tuned with `edgevlm finetune clip-caption`)");
    };
    let mut given = frame_paths(frames)?;
    if reversed {
        given.reverse();
    }
    let start = Instant::now();
    let encoded = sample_frames(&given, count)
        .iter()
        .map(|frame| encode(&runtime, frame))
        .collect::<Result<Vec<_>>>()?;
    let tokens: Vec<_> = encoded.iter().map(|e| &e.tokens).collect();
    let memory = runtime.clip_memory(&tokens)?;
    let opts = search.decoding(&runtime).search(runtime.manifest.decoder.max_len);
    println!("{}", runtime.caption_clip(&memory, opts)?);
    eprintln!(
        "{:.1} ms ({} frames read of {})",
        start.elapsed().as_secs_f64() * 1e3,
        count,
        given.len()
    );
    Ok(())
}

pub fn ask(image: &Path, question: &str, model: &ModelArgs) -> Result<()> {
    let runtime = load(model)?;
    let start = Instant::now();
    let answer = runtime.answer(&encode(&runtime, image)?, question)?;
    println!("{}", answer.answer);
    let top: Vec<String> = answer.top.iter().map(|(a, p)| format!("{a} {p:.3}")).collect();
    eprintln!(
        "{} ({:.1} ms)",
        top.join(", "),
        start.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

/// Prints the verdict as `edgevlm verify` does: `true (97.3%)`.
pub fn verify(image: &Path, statement: &str, model: &ModelArgs) -> Result<()> {
    let runtime = load(model)?;
    let answer = runtime.answer(&encode(&runtime, image)?, statement)?;
    if answer.answer != "true" && answer.answer != "false" {
        bail!(
            "{} answered {:?}: it was not trained to judge statements (`edgevlm finetune reasoning`)",
            model.bundle.display(),
            answer.answer
        );
    }
    println!("{} ({:.1}%)", answer.answer, answer.probability * 100.0);
    Ok(())
}

/// Answers each line of stdin about the image, encoded once; prints as `edgevlm chat`.
pub fn chat(image: &Path, model: &ModelArgs) -> Result<()> {
    let runtime = load(model)?;
    let encoded = encode(&runtime, image)?;
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
        let answer = runtime.answer(&encoded, &text)?;
        println!("{}", answer.answer);
        conversation.record(&question, &answer.answer);
    }
    Ok(())
}

pub fn match_texts(image: &Path, texts: &[String], model: &ModelArgs) -> Result<()> {
    let runtime = load(model)?;
    let encoded = encode(&runtime, image)?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    for (text, score) in texts.iter().zip(runtime.match_texts(&encoded, &refs)?) {
        println!("{score:.4}  {text}");
    }
    Ok(())
}

pub fn selftest(model: &ModelArgs) -> Result<()> {
    let runtime = load(model)?;
    let report = runtime.selftest()?;
    println!(
        "self-test passed: caption {:?}{}, embedding within {:.2e}",
        report.caption,
        report
            .answer
            .map(|a| format!(", answer {a:?}"))
            .unwrap_or_default(),
        report.embedding_error
    );
    Ok(())
}

pub fn bench(
    model: &ModelArgs,
    images: &[PathBuf],
    search: SearchArgs,
    report: Option<PathBuf>,
    options: bench::BenchOptions,
) -> Result<()> {
    // Loaded as a loop loads it: the text tower is timed afterwards, loaded alone.
    // The first load in a process pays for reading the file and optimising the
    // graphs into fresh memory; the second (after the first is dropped, so the
    // peak RSS stays one runtime's) finds the file in the page cache.
    let load = || -> Result<Runtime> { Ok(Runtime::without_text_encoder(Bundle::read(&model.bundle)?)?) };
    let (first_runtime, first) = bench::timed(load);
    drop(first_runtime?);
    let (runtime, second) = bench::timed(load);
    let runtime = runtime?;
    let (loaded_rss, load_peak) = (bench::rss_mib(), bench::peak_rss_mib());
    let decoding = search.decoding(&runtime);
    let mut result = bench::run(&runtime, &model.bundle, images, decoding, &options)?;
    result.load_ms = [first, second];
    (result.loaded_rss_mib, result.load_peak_rss_mib) = (loaded_rss, load_peak);
    // Raced last, once every memory figure is taken: it builds graphs of its own.
    if let Some(profiled) = &mut result.profile {
        profiled.kernels = runtime.race_kernels()?;
    }
    if let Some(profiled) = &result.profile {
        eprintln!("{}", bench::profile::markdown(profiled));
    }
    let json = serde_json::to_string_pretty(&result)?;
    println!("{json}");
    if let Some(path) = report {
        std::fs::write(&path, &json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn load(model: &ModelArgs) -> Result<Runtime> {
    let start = Instant::now();
    let runtime = Runtime::load(&model.bundle)?;
    eprintln!(
        "loaded {} in {:.0} ms",
        model.bundle.display(),
        start.elapsed().as_secs_f64() * 1e3
    );
    Ok(runtime)
}

fn encode(runtime: &Runtime, image: &Path) -> Result<edgevlm_device::runtime::EncodedImage> {
    let pixels = load_image(image)?;
    Ok(runtime.encode_image(&pixels)?)
}

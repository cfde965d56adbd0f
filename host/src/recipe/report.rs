//! The recipe's last step: the caption memory and decoding written into the model
//! folder, and the final dev numbers (the beam's captions, then the same candidates
//! reranked against the training captions; `edgevlm eval` on the folder gives the
//! same, the recipe test runs it).

use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use edgevlm_shared::TextTokenizer;
use serde::Serialize;

use super::stages::{retrieval, StageScores};
use super::{caption, consensus, RecipeArgs, Split, CAPTION_MAX_LEN};
use crate::error::{Error, Result};
use crate::features::cache::{ImageFeatures, TextFeatures};
use crate::model::consensus::Decoding;
use crate::model::saved;
use crate::model::{DecodeOptions, EdgeVlm};

/// The whole recipe report, written as `OUT/report.json`.
#[derive(Debug, Serialize)]
pub struct RecipeReport {
    pub train_images: usize,
    pub dev_images: usize,
    pub stages: Vec<StageScores>,
    pub final_dev: StageScores,
    pub decoding: Decoding,
    pub examples: Vec<crate::eval::tasks::CaptionExample>,
    pub minutes: f64,
}

/// What the final numbers are computed on.
pub(super) struct Final<'a> {
    pub train: &'a Split,
    pub dev: &'a Split,
    pub train_texts: &'a TextFeatures,
    pub dev_images: &'a ImageFeatures,
    pub dev_texts: &'a TextFeatures,
    pub tokenizer: &'a TextTokenizer,
    pub stages: Vec<StageScores>,
    pub clock: Instant,
}

/// Writes the caption memory, the decoding and `OUT/report.json` for the best weights.
pub(super) fn finish(args: &RecipeArgs, best: &EdgeVlm, on: Final, device: &Device) -> Result<RecipeReport> {
    let Final {
        train,
        dev,
        train_texts,
        dev_images,
        dev_texts,
        tokenizer,
        mut stages,
        clock,
    } = on;
    let model = best.valid();
    let inner = device.clone().inner();
    let decoding = Decoding {
        beam_size: args.beam.max(1),
        length_penalty: DecodeOptions::default().length_penalty,
        consensus: args.consensus,
    };
    let search = decoding.search(CAPTION_MAX_LEN);
    let memory = consensus::build_memory(&model, train.captions.clone(), train_texts, &inner)?;
    saved::save_memory(&memory, &args.out)?;
    saved::save_decoding(&decoding, &args.out)?;
    let (beam_captions, reranked) = match decoding.consensus {
        Some(settings) => {
            let r =
                consensus::cached_captions(&model, dev_images, tokenizer, search, &memory, settings, &inner)?;
            (r.beam, Some(r.chosen))
        }
        None => {
            let dev_indices: Vec<usize> = (0..dev_images.len()).collect();
            let beam = caption::generate(&model, dev_images, &dev_indices, tokenizer, search, &inner)?;
            (beam, None)
        }
    };
    let (i2t, t2i) = retrieval(&model, dev_images, dev_texts, &dev.owner, &inner)?;
    let scored = |stage: &str, captions: &[String]| -> Result<StageScores> {
        let (bleu4, cider) = caption::scores(captions, &dev.captions)?;
        Ok(StageScores {
            stage: stage.into(),
            step: 0,
            image_to_text: i2t,
            text_to_image: t2i,
            bleu4: Some(bleu4),
            cider_d: Some(cider),
        })
    };
    let after_beam = scored("after captioning", &beam_captions)?;
    let (final_dev, captions) = match reranked {
        Some(chosen) => {
            stages.push(after_beam);
            (scored("after reranking", &chosen)?, chosen)
        }
        None => (after_beam, beam_captions),
    };
    let examples = dev
        .paths
        .iter()
        .zip(&captions)
        .zip(&dev.captions)
        .take(10)
        .map(|((p, c), refs)| crate::eval::tasks::CaptionExample {
            image: p.clone(),
            caption: c.clone(),
            references: refs.clone(),
        })
        .collect();
    let report = RecipeReport {
        train_images: train.paths.len(),
        dev_images: dev.paths.len(),
        stages,
        final_dev,
        decoding,
        examples,
        minutes: clock.elapsed().as_secs_f64() / 60.0,
    };
    let report_path = args.out.join("report.json");
    std::fs::write(
        &report_path,
        serde_json::to_string_pretty(&report).expect("plain data"),
    )
    .map_err(|e| Error::io(&report_path, e))?;
    Ok(report)
}

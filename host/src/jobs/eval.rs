//! `edgevlm eval`: scores a model folder (in burn) or a bundle (in the device
//! runtime) on a dataset and writes a JSON report (by default into the folder, or
//! beside the bundle).

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::tensor::Device;
use edgevlm::eval::{clips, dialog, explain, reasoning, tasks};

use super::inference::{decoding, load_any};
use crate::cli::{self, EvalTask as Task};

pub fn eval(a: cli::EvalArgs) -> Result<()> {
    let device = Device::flex();
    // A model folder runs in burn; a bundle file runs in the device runtime.
    let mut model = load_any(&a.model, &device)?;
    let opts = decoding(&a.decode, model.as_mut(), 1)?;
    let model = model.as_ref();
    let (format, split) = (a.data.format, a.data.split.as_deref());
    let name = match a.task {
        Task::Caption => "caption",
        Task::Vqa => "vqa",
        Task::Reasoning => "reasoning",
        Task::Dialog => "dialog",
        Task::Retrieval => "retrieval",
        Task::Pointing => "pointing",
        Task::ClipCaption => "clip-caption",
    };
    let report_path: PathBuf = a.report.clone().unwrap_or_else(|| {
        let file = match split {
            Some(s) => format!("eval-{name}-{s}.json"),
            None => format!("eval-{name}.json"),
        };
        if a.model.is_file() {
            a.model.with_extension(file)
        } else {
            a.model.join(file)
        }
    });
    let json = match a.task {
        Task::Caption => {
            let r = tasks::caption(model, &a.data.data, format, split, opts)?;
            println!("images     {}", r.images);
            for (n, b) in r.bleu.iter().enumerate() {
                println!("BLEU-{}     {b:.1}", n + 1);
            }
            println!("CIDEr-D    {:.1}", r.cider_d);
            match r.consensus {
                Some(c) => println!(
                    "decoding   beam {}, reranked by consensus with {} training captions (weight {})",
                    r.beam_size, c.neighbours, c.weight
                ),
                None => println!("decoding   beam {}", r.beam_size),
            }
            for e in r.examples.iter().take(3) {
                println!("  {} -> {}", e.image.display(), e.caption);
            }
            serde_json::to_string_pretty(&r)?
        }
        Task::Vqa => {
            let r = tasks::vqa(model, &a.data.data, format, split)?;
            println!("questions  {}", r.questions);
            println!("accuracy   {:.2}% ({})", r.accuracy, r.metric);
            for (t, acc) in &r.per_type {
                println!("  {t:<24} {acc:.2}%");
            }
            for (f, acc) in &r.per_family {
                println!("    family {f:<17} {acc:.2}%");
            }
            println!(
                "macro P/R/F1  {:.2} / {:.2} / {:.2}",
                r.macro_precision, r.macro_recall, r.macro_f1
            );
            serde_json::to_string_pretty(&r)?
        }
        Task::Reasoning => {
            let r = if a.itm {
                let saved = edgevlm::model::saved::SavedModel::load(&a.model, &device)?;
                reasoning::reasoning_by_itm(&saved, &a.data.data, split, &device)?
            } else {
                reasoning::reasoning(model, &a.data.data, split)?
            };
            println!("statements {} ({:.1}% true)", r.statements, r.true_share);
            println!("accuracy   {:.2}%", r.accuracy);
            for (t, acc) in &r.per_type {
                println!("  {t:<24} {acc:.2}%");
            }
            for (f, acc) in &r.per_family {
                println!("    family {f:<17} {acc:.2}%");
            }
            println!(
                "P/R/F1 (true)  {:.2} / {:.2} / {:.2}",
                r.precision, r.recall, r.f1
            );
            serde_json::to_string_pretty(&r)?
        }
        Task::Dialog => {
            let r = dialog::dialog(model, &a.data.data)?;
            let (h, b) = (&r.with_history, &r.history_blanked);
            println!(
                "rounds {} ({} need the history); answers ranked among {} candidates",
                r.rounds, r.history_rounds, r.candidates
            );
            println!("                         with history   history blanked");
            let row = |name: &str, x: f64, y: f64| println!("  {name:<22} {x:>12.2} {y:>17.2}");
            row("accuracy %", h.accuracy, b.accuracy);
            row(
                "  rounds needing it",
                h.accuracy_history_rounds,
                b.accuracy_history_rounds,
            );
            row(
                "  standalone rounds",
                h.accuracy_standalone_rounds,
                b.accuracy_standalone_rounds,
            );
            for (d, acc) in &h.per_distance {
                row(&format!("  referent {d} back"), *acc, b.per_distance[d]);
            }
            for (k, acc) in &h.per_round {
                row(&format!("  round {k}"), *acc, b.per_round[k]);
            }
            for (f, acc) in &h.per_family {
                row(&format!("  {f}"), *acc, b.per_family[f]);
            }
            row("MRR", h.mrr, b.mrr);
            for (k, (x, y)) in [1, 5, 10].iter().zip(h.recall_at.iter().zip(&b.recall_at)) {
                row(&format!("R@{k} %"), *x, *y);
            }
            row("mean rank", h.mean_rank, b.mean_rank);
            serde_json::to_string_pretty(&r)?
        }
        Task::Pointing => {
            let kinds: Vec<explain::Pointed> = a
                .point_at
                .iter()
                .map(|p| match p {
                    cli::PointAt::Answers => explain::Pointed::Answers,
                    cli::PointAt::Phrases => explain::Pointed::Phrases,
                    cli::PointAt::Words => explain::Pointed::Words,
                })
                .collect();
            let r = explain::pointing(model, &a.data.data, a.limit, &kinds)?;
            println!("scenes {} targets {}", r.scenes, r.pointed);
            println!(
                "hit rate   {:.1}%   (centre baseline {:.1}%)",
                r.hit_rate, r.centre_baseline
            );
            for (kind, rate) in &r.per_kind {
                println!("  {kind:<22} {rate:.1}%");
            }
            serde_json::to_string_pretty(&r)?
        }
        Task::ClipCaption => {
            let r = clips::clip_caption(model, &a.data.data, opts)?;
            println!("clips      {} ({} frames each)", r.clips, r.frames);
            for (n, b) in r.bleu.iter().enumerate() {
                println!("BLEU-{}     {b:.1}", n + 1);
            }
            println!("CIDEr-D    {:.1}", r.cider_d);
            for (kind, rate) in &r.event_told {
                println!("event told {kind:<11} {rate:.1}%");
            }
            if let Some(rev) = &r.reversed {
                println!(
                    "reversed   {} clips: caption changed {:.1}%, tells the opposite event {:.1}%",
                    rev.clips, rev.changed, rev.opposite_told
                );
            }
            for e in r.examples.iter().take(3) {
                println!(
                    "  {} -> {} (reversed: {})",
                    e.clip,
                    e.caption,
                    e.reversed.as_deref().unwrap_or("-")
                );
            }
            serde_json::to_string_pretty(&r)?
        }
        Task::Retrieval => {
            let r = tasks::retrieval(model, &a.data.data, format, split)?;
            println!("images {} texts {}", r.images, r.texts);
            let [i1, i5, i10] = r.image_to_text;
            let [t1, t5, t10] = r.text_to_image;
            println!("image→text R@1 {i1:.1} R@5 {i5:.1} R@10 {i10:.1}");
            println!("text→image R@1 {t1:.1} R@5 {t5:.1} R@10 {t10:.1}");
            serde_json::to_string_pretty(&r)?
        }
    };
    std::fs::write(&report_path, json).with_context(|| format!("writing {}", report_path.display()))?;
    println!("report: {}", report_path.display());
    Ok(())
}

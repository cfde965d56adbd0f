//! `edgevlm data synth`, `data stats` and `data qa-from-captions`: write synthetic
//! scenes, count a dataset, make questions from captions.

use anyhow::{Context, Result};
use edgevlm::data::{self, datasets, qa, synth::SynthOptions, LoadOptions};

use crate::cli::{DialogArgs, QaArgs, StatementArgs, StatsArgs, SynthArgs};

pub fn synth(a: SynthArgs) -> Result<()> {
    let opts = SynthOptions {
        count: a.n,
        seed: a.seed,
        size: a.size,
        questions_per_kind: a.questions_per_kind,
        statements_per_family: a.statements_per_family,
        clips: a.clips,
        clip_frames: a.clip_frames as usize,
    };
    data::synth::write(&a.out, &opts)
        .with_context(|| format!("writing synthetic scenes to {}", a.out.display()))?;
    println!(
        "wrote {} scenes (seed {}, {}px) to {}",
        a.n,
        a.seed,
        a.size,
        a.out.display()
    );
    Ok(())
}

pub fn stats(a: StatsArgs) -> Result<()> {
    let opts = LoadOptions {
        strict: a.strict,
        skip_decode_check: a.no_decode,
    };
    let (stats, skipped) = data::stats(a.format, &a.path, a.split.as_deref(), opts)?;
    if let Some(warning) = skipped.warning() {
        eprintln!("{warning}");
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else {
        print!("{stats}");
    }
    Ok(())
}

pub fn qa_from_captions(a: QaArgs) -> Result<()> {
    let format = a
        .format
        .or_else(|| datasets::detect(&a.data, false))
        .with_context(|| format!("no caption set recognised at {}", a.data.display()))?;
    let opts = qa::QaOptions {
        seed: a.seed,
        max_answer_share: a.max_answer_share,
    };
    let reports = qa::write(format, &a.data, &a.out, &opts)
        .with_context(|| format!("making questions from {}", a.data.display()))?;
    let report_file = a.out.join("report.json");
    std::fs::write(&report_file, serde_json::to_string_pretty(&reports)?)
        .with_context(|| format!("writing {}", report_file.display()))?;
    for r in &reports {
        println!(
            "{}: {} questions about {} photos ({} answered differently by two captions, {} thinned)",
            r.file.display(),
            r.questions,
            r.images,
            r.conflicting,
            r.thinned
        );
        for (family, n) in &r.per_family {
            let top: Vec<String> = r.top_answers[family]
                .iter()
                .map(|(answer, k)| format!("{answer} {:.0}%", 100.0 * *k as f64 / *n as f64))
                .collect();
            println!("  {family:<10} {n:>6}   {}", top.join(", "));
        }
        let types: Vec<String> = r
            .per_answer_type
            .iter()
            .map(|(t, n)| format!("{t} {n}"))
            .collect();
        println!("  answer types: {}", types.join(", "));
    }
    println!("report: {}", report_file.display());
    Ok(())
}

pub fn statements_from_captions(a: StatementArgs) -> Result<()> {
    let format = a
        .format
        .or_else(|| datasets::detect(&a.data, false))
        .with_context(|| format!("no caption set recognised at {}", a.data.display()))?;
    let reports = qa::statements::write(format, &a.data, &a.out, a.seed)
        .with_context(|| format!("making statements from {}", a.data.display()))?;
    let report_file = a.out.join("report.json");
    std::fs::write(&report_file, serde_json::to_string_pretty(&reports)?)
        .with_context(|| format!("writing {}", report_file.display()))?;
    for r in &reports {
        let types: Vec<String> = r.per_type.iter().map(|(t, n)| format!("{t} {n}")).collect();
        println!(
            "{}: {} statements about {} photos ({})",
            r.file.display(),
            r.statements,
            r.images,
            types.join(", ")
        );
    }
    println!("report: {}", report_file.display());
    Ok(())
}

pub fn dialogs_from_questions(a: DialogArgs) -> Result<()> {
    let questions = datasets::questions(&a.data, None, None)?;
    let (dialogs, rounds) = data::dialogs::from_questions(&questions.records, a.rounds, &a.out)
        .with_context(|| format!("writing {}", a.out.display()))?;
    println!("{}: {dialogs} dialogs, {rounds} rounds", a.out.display());
    Ok(())
}

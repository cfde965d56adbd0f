//! `edgevlm data synth` and `data stats`: write synthetic scenes, count a dataset.

use anyhow::{Context, Result};
use edgevlm::data::{self, synth::SynthOptions, LoadOptions};

use crate::cli::{StatsArgs, SynthArgs};

pub fn synth(a: SynthArgs) -> Result<()> {
    let opts = SynthOptions {
        count: a.n,
        seed: a.seed,
        size: a.size,
        questions_per_kind: a.questions_per_kind,
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

use anyhow::{Context, Result};
use clap::Parser;
use edgevlm::data::{self, synth::SynthOptions, LoadOptions};

mod cli;
use cli::{Cli, Command, DataCommand};

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Data(DataCommand::Synth(a)) => {
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
        }
        Command::Data(DataCommand::Stats(a)) => {
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
        }
    }
    Ok(())
}

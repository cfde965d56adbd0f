use anyhow::Result;
use clap::Parser;

mod bench;
mod cli;
mod commands;
mod info;
use cli::{Cli, Command};
use commands::{agent, bundle, explain, inference, preprocess, run};

fn main() -> Result<()> {
    let cli = Cli::parse();
    edgevlm_device::runtime::return_large_blocks_when_freed();
    if cli.threads > 1 {
        use tract_linalg::multithread::{set_default_executor, Executor};
        set_default_executor(Executor::multithread(cli.threads));
    }
    match cli.command {
        Command::Info { bundle } => bundle::info(&bundle)?,
        Command::Run {
            config,
            max_events,
            max_frames,
        } => run::run(
            &config,
            edgevlm_device::run::Limits {
                max_events,
                max_frames,
            },
        )?,
        Command::Agent(a) => agent::agent(a)?,
        Command::Install { state, bundle, sig } => agent::install(&state, bundle, sig)?,
        Command::Start { state, command } => agent::start(&state, command)?,
        Command::Unpack { bundle, out } => bundle::unpack(&bundle, &out)?,
        Command::Caption { image, model, search } => inference::caption(&image, &model, search)?,
        Command::CaptionClip {
            frames,
            reversed,
            model,
            search,
        } => inference::caption_clip(&frames, reversed, &model, search)?,
        Command::Ask {
            image,
            question,
            model,
        } => inference::ask(&image, &question, &model)?,
        Command::Verify {
            image,
            statement,
            model,
        } => inference::verify(&image, &statement, &model)?,
        Command::Chat { image, model } => inference::chat(&image, &model)?,
        Command::Explain {
            image,
            what,
            out,
            model,
        } => explain::explain(&image, &what, &out, &model)?,
        Command::Match { image, texts, model } => inference::match_texts(&image, &texts, &model)?,
        Command::Selftest { model } => inference::selftest(&model)?,
        Command::Bench {
            model,
            images,
            runs,
            search,
            report,
            profile,
        } => {
            let options = bench::BenchOptions {
                runs,
                threads: cli.threads,
                profile,
            };
            inference::bench(&model, &images, search, report, options)?
        }
        Command::Preprocess { image, config, out } => preprocess::preprocess(&image, config, out)?,
    }
    Ok(())
}

use anyhow::Result;
use clap::Parser;

mod cli;
mod jobs;
use cli::{BenchCommand, Cli, Command, DataCommand, ModelsCommand};
use jobs::{data, eval, inference, models, ship, training};

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Data(DataCommand::Synth(a)) => data::synth(a)?,
        Command::Data(DataCommand::Stats(a)) => data::stats(a)?,
        Command::Data(DataCommand::QaFromCaptions(a)) => data::qa_from_captions(a)?,
        Command::Data(DataCommand::StatementsFromCaptions(a)) => data::statements_from_captions(a)?,
        Command::Data(DataCommand::DialogsFromQuestions(a)) => data::dialogs_from_questions(a)?,
        Command::Pretrain(a) => training::pretrain(a)?,
        Command::Finetune(a) => training::finetune(a)?,
        Command::Eval(a) => eval::eval(a)?,
        Command::Join(a) => training::join(a)?,
        Command::Export(a) => ship::export(a)?,
        Command::Keygen { out, name } => ship::keygen(&out, &name)?,
        Command::Sign { bundle, key } => ship::sign(&bundle, &key)?,
        Command::Flash {
            bundle,
            to,
            token_file,
            baud,
            retries,
            board_arch,
        } => ship::flash(&bundle, &to, token_file.as_deref(), baud, retries, &board_arch)?,
        Command::Quantize(a) => ship::quantize(a)?,
        Command::Bench(BenchCommand::Train { steps, report }) => training::bench(steps, report)?,
        Command::Train(a) => training::recipe(a)?,
        Command::Models(ModelsCommand::Fetch) => models::fetch()?,
        Command::Models(ModelsCommand::Upgrade { dir, out }) => models::upgrade(&dir, out.as_deref())?,
        Command::Caption(a) => inference::caption(a)?,
        Command::CaptionClip(a) => inference::caption_clip(a)?,
        Command::Ask(a) => inference::ask(a)?,
        Command::Verify(a) => inference::verify(a)?,
        Command::Chat(a) => inference::chat(a)?,
        Command::Explain(a) => inference::explain(a)?,
        Command::Match(a) => inference::match_texts(a)?,
    }
    Ok(())
}

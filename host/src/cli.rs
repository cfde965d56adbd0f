//! Command-line interface, grouped by job. `main.rs` only dispatches.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use edgevlm::data::Format;

#[derive(Parser)]
#[command(
    name = "edgevlm",
    version,
    about = "Train, evaluate and ship a small vision-language model"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Datasets: generate synthetic scenes, inspect real ones.
    #[command(subcommand)]
    Data(DataCommand),
}

#[derive(Subcommand)]
pub enum DataCommand {
    /// Render Sort-of-CLEVR-style scenes with captions and questions.
    Synth(SynthArgs),
    /// Count images, texts, skipped records, answers and text lengths.
    Stats(StatsArgs),
}

#[derive(Args)]
pub struct SynthArgs {
    /// Output folder (created).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of images.
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Image side in pixels (at least 32).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(32..=1024))]
    pub size: u32,
    /// Questions of each kind (relational, non-relational) per image.
    #[arg(long, default_value_t = 10)]
    pub questions_per_kind: usize,
}

#[derive(Args)]
pub struct StatsArgs {
    /// Dataset format.
    #[arg(value_enum)]
    pub format: Format,
    /// Dataset folder (or file, for the JSON formats).
    pub path: PathBuf,
    /// Only this split (Flickr8k: train|dev|test; COCO: captions_<split>.json; easy-VQA: train|test).
    #[arg(long)]
    pub split: Option<String>,
    /// Fail on the first bad record instead of skipping it.
    #[arg(long)]
    pub strict: bool,
    /// Check only that images exist, without decoding them.
    #[arg(long)]
    pub no_decode: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

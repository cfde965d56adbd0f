//! Training: the shared loop ([`trainer`]), its checkpoints, schedule and plots, the
//! objectives, and the jobs behind `edgevlm pretrain` and `edgevlm finetune`.

pub mod calibration;
pub mod checkpoint;
pub mod clips;
pub mod config;
pub mod finetune;
pub mod locked_vqa;
pub mod objectives;
pub mod plot;
pub mod pretrain;
pub mod schedule;
pub mod steps;
pub mod tasks;
pub mod trainer;

pub use crate::error::{Error, Result};
pub use config::TrainConfig;

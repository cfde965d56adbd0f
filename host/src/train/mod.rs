//! Training: the shared loop ([`trainer`]), its checkpoints, schedule and plots, the
//! objectives, and the jobs behind `edgevlm pretrain` and `edgevlm finetune`.

pub mod calibration;
pub mod checkpoint;
pub mod config;
pub mod datasets;
pub mod error;
pub mod finetune;
pub mod objectives;
pub mod plot;
pub mod pretrain;
pub mod schedule;
pub mod steps;
pub mod tasks;
pub mod trainer;

pub use config::TrainConfig;
pub use error::{Result, TrainError};

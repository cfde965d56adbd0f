//! The multimodal model in burn, one component per file (nanoVLM style):
//! `vit` and `bert` encoders, the `grid` encoder (CNN cells with coordinates),
//! `fusion`, `heads` (with the fused VQA head's `count` read-out), the `spatial`
//! VQA head, the caption `decoder`, and `vlm`
//! wiring them into [`EdgeVlm`].

pub mod attention;
pub mod bert;
pub mod config;
pub mod consensus;
pub mod count;
pub mod decoder;
pub mod efficientnet;
pub mod feed_forward;
pub mod freeze;
pub mod fusion;
pub mod grid;
pub mod heads;
pub mod image_tower;
pub mod input;
pub mod join;
pub mod params;
pub mod pretrained;
pub mod saved;
pub mod spatial;
pub mod temporal;
pub mod vit;
pub mod vlm;
pub mod weights;

pub use config::{EdgeVlmConfig, TextPooling, VqaHeadKind};
pub use decoder::DecodeOptions;
pub use fusion::FusionKind;
pub use vlm::EdgeVlm;

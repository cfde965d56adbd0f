//! Synthetic scenes in the style of Sort-of-CLEVR (Santoro et al. 2017, "A simple
//! neural network module for relational reasoning"): coloured circles, squares and
//! triangles on a plain background, with template captions and questions whose
//! answers, and statements whose truth, are computed from the scene description.
//!
//! Lives in the shared crate so the trainer writes datasets with it and the
//! firmware's synthetic camera renders the very same scenes.

mod captions;
mod clips;
mod dialogs;
mod questions;
mod render;
mod scene;
mod statements;

pub use captions::captions;
pub use clips::{clip_captions, Clip, ClipEvent, Direction, MAX_FRAMES, MIN_FRAMES};
pub use dialogs::{dialog, Round, MAX_DISTANCE, ROUNDS};
pub use questions::{questions, Question, QuestionKind};
pub use render::render;
pub use scene::{Colour, Object, Scene, Shape, Size};
pub use statements::{statements, Statement, StatementKind};

//! Synthetic scenes in the style of Sort-of-CLEVR (Santoro et al. 2017, "A simple
//! neural network module for relational reasoning"): coloured circles, squares and
//! triangles on a plain background, with template captions and questions whose
//! answers are computed from the scene description.
//!
//! Lives in the shared crate so the trainer writes datasets with it and the
//! firmware's synthetic camera renders the very same scenes.

mod captions;
mod questions;
mod render;
mod scene;

pub use captions::captions;
pub use questions::{questions, Question, QuestionKind};
pub use render::render;
pub use scene::{Colour, Object, Scene, Shape, Size};

//! Names of the bundle's graphs and of their inputs and outputs, shared by the
//! exporter and the device runtime.

pub const IMAGE_ENCODER: &str = "image_encoder";
pub const TEXT_ENCODER: &str = "text_encoder";
pub const VQA: &str = "vqa";
pub const CAPTION_DECODER: &str = "caption_decoder";
pub const CAPTION_STEP: &str = "caption_decoder_step";
/// Clip bundles: the temporal encoder, and the caption decoders over its memory.
pub const TEMPORAL: &str = "temporal";
pub const CLIP_DECODER: &str = "clip_decoder";
pub const CLIP_STEP: &str = "clip_decoder_step";

/// `[n, 3, s, s]` f32, preprocessed by `preprocess_image`.
pub const IMAGE: &str = "image";
/// `[n, 1 + patches, d]` f32.
pub const IMAGE_TOKENS: &str = "image_tokens";
/// `[1, frames * n, d]` f32: a clip's memory, frame by frame.
pub const CLIP_MEMORY: &str = "clip_memory";
/// `[n, d_embed]` f32, unit length.
pub const EMBEDDING: &str = "embedding";
/// `[n, len]` int64 token ids.
pub const IDS: &str = "ids";
/// `[n, len]` f32, 1 for tokens, 0 for padding.
pub const MASK: &str = "mask";
/// `[n, len, d_text]` f32: the text tower's state of every token, which the text
/// encoder outputs after the embedding and the VQA graph reads, so the one copy
/// of the tower in a bundle serves both.
pub const TEXT_STATES: &str = "text_states";
/// `[1]` int64: the position of the step's token.
pub const POSITION: &str = "position";
pub const LOGITS: &str = "logits";
/// `[n, grid²]` f32, row-major over the grid's cells: where a spatial VQA head
/// read its answer (sums to 1).
pub const ANSWER_FOCUS: &str = "answer_focus";

pub fn past_key(layer: usize) -> String {
    format!("past_key_{layer}")
}
pub fn past_value(layer: usize) -> String {
    format!("past_value_{layer}")
}
pub fn present_key(layer: usize) -> String {
    format!("present_key_{layer}")
}
pub fn present_value(layer: usize) -> String {
    format!("present_value_{layer}")
}
/// `[1, heads, n, d_head]` f32: a decoder layer's cross-attention keys of the image
/// tokens (or a clip's memory), which the prefix graph outputs once per image and
/// every step graph call reads, instead of projecting the image again each step.
pub fn image_key(layer: usize) -> String {
    format!("image_key_{layer}")
}
/// The values beside [`image_key`].
pub fn image_value(layer: usize) -> String {
    format!("image_value_{layer}")
}

/// File name of a graph inside a bundle.
pub fn graph_file(graph: &str) -> String {
    format!("{graph}.onnx")
}

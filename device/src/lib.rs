//! edgevlm-device: the firmware side. It shares preprocessing, tokenization and
//! configs with the trainer through `edgevlm-shared`, and never links burn.

pub use edgevlm_shared as shared;

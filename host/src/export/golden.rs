//! The self-test's expected outputs, from the trainer's own model (burn) rather
//! than from the exported graphs: a bundle that does not reproduce the model it
//! was exported from is refused here, and a board checks each bundle against its
//! trainer, not against itself.

use burn::tensor::{Device, Tensor, TensorData};
use edgevlm_shared::search::DecodeOptions;
use edgevlm_shared::{preprocess_image, TextTokenizer};
use image::RgbImage;

use super::ModelSource;
use crate::error::Result;
use crate::model::input::text_input;
use crate::model::weights::floats;

/// What burn computes on the self-test image.
pub struct Golden {
    /// Greedy caption.
    pub caption: String,
    /// Unit ITC embedding of the image.
    pub embedding: Vec<f32>,
    /// The answer to the self-test question, when the model answers questions.
    pub answer: Option<String>,
}

fn greedy_caption(
    decoder: &crate::model::decoder::CaptionDecoder,
    tokens: Tensor<3>,
    tokenizer: &TextTokenizer,
) -> Result<String> {
    let special = tokenizer.special_ids();
    let ids = decoder
        .generate(tokens, special.cls, special.sep, DecodeOptions::default())
        .pop()
        .unwrap_or_default();
    Ok(tokenizer.decode(&ids)?)
}

pub fn compute(source: &ModelSource, image: &RgbImage, question: &str) -> Result<Golden> {
    let device = Device::flex();
    let model = source.model;
    let s = source.preprocess.image_size as usize;
    let pixels = preprocess_image(image, source.preprocess);
    let pixels = Tensor::<4>::from_data(TensorData::new(pixels.data, [1, 3, s, s]), &device);
    let decoder_tokenizer = source.decoder_tokenizer.unwrap_or(source.tokenizer);
    let tower = model.tower_tokens(pixels.clone());
    let embedding = floats(model.image_embedding(tower.clone()).into_data())?;
    let caption = greedy_caption(&model.decoder, model.image_tokens(tower), decoder_tokenizer)?;
    let answer = if source.answers.is_empty() {
        None
    } else {
        let enc = source.tokenizer.encode_batch(&[question])?;
        let text = text_input(&enc.ids, &enc.mask, enc.batch, enc.seq_len, &device);
        let encoded = model.encode_vqa_image(pixels);
        let logits = floats(model.vqa_logits_from(encoded, text.ids, text.mask).into_data())?;
        let best = edgevlm_shared::search::argmax(&logits) as usize;
        source.answers.get(best).cloned()
    };
    Ok(Golden {
        caption,
        embedding,
        answer,
    })
}

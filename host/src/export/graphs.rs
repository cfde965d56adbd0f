//! The graphs of a bundle, built from a trained [`EdgeVlm`]. Names of graphs and of
//! their inputs and outputs come from `edgevlm_shared::bundle::io`, which the device
//! runtime reads too.

use edgevlm_shared::bundle::io;
use tract_onnx::pb::ModelProto;

use super::blocks::{self, DecoderInput};
use super::onnx::{Dim, GraphBuilder};
use super::quantize::WeightFormat;
use super::towers;
use crate::model::bert::Bert;
use crate::model::decoder::CaptionDecoder;
use crate::model::efficientnet::EfficientNet;
use crate::model::photo::PhotoVlm;
use crate::model::vlm::EdgeVlm;

const N: Dim = Dim::Named("batch");
const LEN: Dim = Dim::Named("len");
const PAST: Dim = Dim::Named("past");

/// Image `[n, 3, s, s]` → image tokens `[n, 1 + patches, d]` and the unit-length
/// ITC embedding `[n, d_embed]`.
pub fn image_encoder(model: &EdgeVlm, image_size: usize, weights: WeightFormat) -> ModelProto {
    let mut g = GraphBuilder::new(io::IMAGE_ENCODER, weights);
    let image = g.input_f32(
        io::IMAGE,
        &[N, Dim::Fixed(3), Dim::Fixed(image_size), Dim::Fixed(image_size)],
    );
    let tokens = blocks::vit(&mut g, &image, &model.vision, image_size);
    let pooled = blocks::first_token(&mut g, &tokens);
    let projected = blocks::linear(&mut g, &pooled, &model.itc.image_proj);
    let embedding = blocks::l2_normalize(&mut g, &projected);
    let d = model.vision.position.val().dims()[2];
    let n_tokens = model.vision.position.val().dims()[1];
    g.output(
        &tokens,
        io::IMAGE_TOKENS,
        &[N, Dim::Fixed(n_tokens), Dim::Fixed(d)],
    );
    let d_embed = model.itc.image_proj.weight.val().dims()[1];
    g.output(&embedding, io::EMBEDDING, &[N, Dim::Fixed(d_embed)]);
    g.finish()
}

/// Token ids `[n, len]` (int64) and mask `[n, len]` → unit-length ITC embedding.
pub fn text_encoder(model: &EdgeVlm, weights: WeightFormat) -> ModelProto {
    let mut g = GraphBuilder::new(io::TEXT_ENCODER, weights);
    let ids = g.input_i64(io::IDS, &[N, LEN]);
    let mask = g.input_f32(io::MASK, &[N, LEN]);
    let states = blocks::bert(&mut g, &ids, &mask, &model.text);
    let cls = blocks::first_token(&mut g, &states);
    let projected = blocks::linear(&mut g, &cls, &model.itc.text_proj);
    let embedding = blocks::l2_normalize(&mut g, &projected);
    let d_embed = model.itc.text_proj.weight.val().dims()[1];
    g.output(&embedding, io::EMBEDDING, &[N, Dim::Fixed(d_embed)]);
    g.finish()
}

/// The real-photo model's image encoder: images `[n, 3, s, s]` → the tower's grid
/// tokens, projected to the model's width `[n, h·w, d_model]` (what the decoder
/// reads), and the unit ITC embedding of their mean `[n, d_embed]`.
pub fn photo_image_encoder(
    tower: &EfficientNet,
    heads: &PhotoVlm,
    image_size: usize,
    weights: WeightFormat,
) -> ModelProto {
    let mut g = GraphBuilder::new(io::IMAGE_ENCODER, weights);
    let image = g.input_f32(
        io::IMAGE,
        &[N, Dim::Fixed(3), Dim::Fixed(image_size), Dim::Fixed(image_size)],
    );
    // The tower keeps f32 weights in int8 graphs: per-channel int8 of its 1x1
    // convolutions moved the projected tokens by up to 0.3 (0.013 with the tower in
    // f32, export/tests/photo.rs), for 14 MB of file size; tract widens constants
    // this small to f32 at load anyway, so memory on the board is the same.
    let (features, side) = g.f32_weights(|g| towers::efficientnet(g, &image, tower, image_size));
    let grid = towers::grid_tokens(&mut g, &features);
    let tokens = towers::project_tokens(&mut g, &grid, &heads.image_proj, &heads.image_norm);
    let pooled = towers::mean_tokens(&mut g, &grid);
    let embedding = towers::projection(&mut g, &pooled, &heads.itc_image);
    let [d_model, d_embed] = photo_widths(heads);
    g.output(
        &tokens,
        io::IMAGE_TOKENS,
        &[N, Dim::Fixed(side * side), Dim::Fixed(d_model)],
    );
    g.output(&embedding, io::EMBEDDING, &[N, Dim::Fixed(d_embed)]);
    g.finish()
}

/// `[d_model, d_embed]` of the real-photo model's heads.
fn photo_widths(heads: &PhotoVlm) -> [usize; 2] {
    [
        heads.image_proj.weight.val().dims()[1],
        heads.itc_image.output.weight.val().dims()[1],
    ]
}

/// The real-photo model's text encoder: ids and mask `[n, len]` → the text tower's
/// sentence embedding (masked mean, unit length) → the unit ITC embedding.
pub fn photo_text_encoder(tower: &Bert, heads: &PhotoVlm, weights: WeightFormat) -> ModelProto {
    let mut g = GraphBuilder::new(io::TEXT_ENCODER, weights);
    let ids = g.input_i64(io::IDS, &[N, LEN]);
    let mask = g.input_f32(io::MASK, &[N, LEN]);
    let states = blocks::bert(&mut g, &ids, &mask, tower);
    let sentence = towers::sentence_embedding(&mut g, &states, &mask);
    let embedding = towers::projection(&mut g, &sentence, &heads.itc_text);
    g.output(
        &embedding,
        io::EMBEDDING,
        &[N, Dim::Fixed(photo_widths(heads)[1])],
    );
    g.finish()
}

/// The shape of the image tokens of an [`EdgeVlm`].
pub fn vit_tokens(model: &EdgeVlm) -> TokenShape {
    let dims = model.vision.position.val().dims();
    [dims[1], dims[2]]
}

/// Image tokens (the fused head) or the image itself (the spatial head, through the
/// grid encoder) + question ids/mask → answer logits `[n, answers]`; `None` when
/// the model has no VQA head.
pub fn vqa(model: &EdgeVlm, image_size: usize, weights: WeightFormat) -> Option<ModelProto> {
    let mut g = GraphBuilder::new(io::VQA, weights);
    let (logits, answers) = if let Some(head) = &model.spatial_vqa {
        let grid = model
            .grid
            .as_ref()
            .expect("the spatial VQA head reads a grid encoder");
        let image = g.input_f32(
            io::IMAGE,
            &[N, Dim::Fixed(3), Dim::Fixed(image_size), Dim::Fixed(image_size)],
        );
        let (ids, mask) = question_inputs(&mut g);
        let text = blocks::bert(&mut g, &ids, &mask, &model.text);
        let cells = blocks::grid_encoder(&mut g, &image, grid, image_size);
        let logits = blocks::spatial_vqa(&mut g, &cells, &text, &mask, head);
        (logits, head.answer.weight.val().dims()[1])
    } else {
        let head = model.vqa.as_ref()?;
        let image = tokens_input(&mut g, vit_tokens(model));
        let (ids, mask) = question_inputs(&mut g);
        let text = blocks::bert(&mut g, &ids, &mask, &model.text);
        let fused = blocks::fusion(&mut g, &text, &mask, &image, &model.fusion);
        let cls = blocks::first_token(&mut g, &fused);
        (
            blocks::vqa_head(&mut g, &cls, head),
            head.output.weight.val().dims()[1],
        )
    };
    g.output(&logits, io::LOGITS, &[N, Dim::Fixed(answers)]);
    Some(g.finish())
}

fn question_inputs(g: &mut GraphBuilder) -> (String, String) {
    (g.input_i64(io::IDS, &[N, LEN]), g.input_f32(io::MASK, &[N, LEN]))
}

fn vocab(decoder: &CaptionDecoder) -> usize {
    decoder.token_embedding.weight.val().dims()[0]
}

fn cache_dims(decoder: &CaptionDecoder, len: Dim) -> [Dim; 4] {
    let a = &decoder.layers[0].self_attention;
    [N, Dim::Fixed(a.heads()), len, Dim::Fixed(a.d_head())]
}

/// `[tokens, width]` of the image tokens a decoder reads.
pub type TokenShape = [usize; 2];

/// The decoders read one image's tokens `[1, n, d]` whatever the number of rows
/// (beams) they decode: cross-attention projects its keys and values once and
/// the products broadcast over the rows.
fn decoder_tokens_input(g: &mut GraphBuilder, shape: TokenShape) -> String {
    g.input_f32(
        io::IMAGE_TOKENS,
        &[Dim::Fixed(1), Dim::Fixed(shape[0]), Dim::Fixed(shape[1])],
    )
}

fn tokens_input(g: &mut GraphBuilder, shape: TokenShape) -> String {
    g.input_f32(io::IMAGE_TOKENS, &[N, Dim::Fixed(shape[0]), Dim::Fixed(shape[1])])
}

/// Image tokens + a prefix `[n, len]` → next-token logits at every position
/// `[n, len, vocab]` and each layer's self-attention keys/values (the cache for
/// [`caption_decoder_step`]).
pub fn caption_decoder(decoder: &CaptionDecoder, image: TokenShape, weights: WeightFormat) -> ModelProto {
    let mut g = GraphBuilder::new(io::CAPTION_DECODER, weights);
    let image = decoder_tokens_input(&mut g, image);
    let ids = g.input_i64(io::IDS, &[N, LEN]);
    let (logits, cache) =
        blocks::caption_decoder(&mut g, DecoderInput::Prefix { ids: &ids }, &image, decoder);
    g.output(&logits, io::LOGITS, &[N, LEN, Dim::Fixed(vocab(decoder))]);
    for (i, (k, v)) in cache.iter().enumerate() {
        g.output(k, &io::present_key(i), &cache_dims(decoder, LEN));
        g.output(v, &io::present_value(i), &cache_dims(decoder, LEN));
    }
    g.finish()
}

/// One decoding step with the KV cache: image tokens, the newest token `[n, 1]`,
/// its position `[1]` and the cached keys/values `[n, heads, past, d_head]` →
/// logits `[n, 1, vocab]` and the extended cache.
pub fn caption_decoder_step(
    decoder: &CaptionDecoder,
    image: TokenShape,
    weights: WeightFormat,
) -> ModelProto {
    let mut g = GraphBuilder::new(io::CAPTION_STEP, weights);
    let image = decoder_tokens_input(&mut g, image);
    let ids = g.input_i64(io::IDS, &[N, Dim::Fixed(1)]);
    let position = g.input_i64(io::POSITION, &[Dim::Fixed(1)]);
    let past: Vec<(String, String)> = (0..decoder.layers.len())
        .map(|i| {
            (
                g.input_f32(&io::past_key(i), &cache_dims(decoder, PAST)),
                g.input_f32(&io::past_value(i), &cache_dims(decoder, PAST)),
            )
        })
        .collect();
    let input = DecoderInput::Step {
        ids: &ids,
        position: &position,
        past,
    };
    let (logits, cache) = blocks::caption_decoder(&mut g, input, &image, decoder);
    g.output(
        &logits,
        io::LOGITS,
        &[N, Dim::Fixed(1), Dim::Fixed(vocab(decoder))],
    );
    let grown = Dim::Named("past_plus_one");
    for (i, (k, v)) in cache.iter().enumerate() {
        g.output(k, &io::present_key(i), &cache_dims(decoder, grown.clone()));
        g.output(v, &io::present_value(i), &cache_dims(decoder, grown.clone()));
    }
    g.finish()
}

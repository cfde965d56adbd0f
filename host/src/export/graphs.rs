//! The graphs of a bundle, built from a trained [`EdgeVlm`] of any towers. Names of graphs and of
//! their inputs and outputs come from `edgevlm_shared::bundle::io`, which the device
//! runtime reads too.

use edgevlm_shared::bundle::io;
use tract_onnx::pb::ModelProto;

use super::blocks::{self, DecoderInput, DecoderMemory};
use super::onnx::{Dim, GraphBuilder};
use super::quantize::WeightFormat;
use super::spatial;
use super::towers;
use crate::model::decoder::CaptionDecoder;
use crate::model::image_tower::ImageTower;
use crate::model::{EdgeVlm, TextPooling};

const N: Dim = Dim::Named("batch");
const LEN: Dim = Dim::Named("len");
const PAST: Dim = Dim::Named("past");

/// Image `[n, 3, s, s]` → the image tokens fusion and decoder read `[n, k, d_image]`
/// and the unit-length ITC embedding `[n, d_embed]`, whichever tower the model has.
pub fn image_encoder(model: &EdgeVlm, image_size: usize, weights: WeightFormat) -> ModelProto {
    let mut g = GraphBuilder::new(io::IMAGE_ENCODER, weights);
    let image = g.input_f32(
        io::IMAGE,
        &[N, Dim::Fixed(3), Dim::Fixed(image_size), Dim::Fixed(image_size)],
    );
    let (tower, pooled, count) = match &model.vision {
        ImageTower::Vit(vit) => {
            let tokens = blocks::vit(&mut g, &image, vit, image_size);
            let pooled = blocks::first_token(&mut g, &tokens);
            (tokens, pooled, vit.position.val().dims()[1])
        }
        ImageTower::EfficientNet(net) => {
            // The tower keeps f32 weights in int8 graphs: per-channel int8 of its 1x1
            // convolutions moved the projected tokens by up to 0.3 (0.013 with the
            // tower in f32, export/tests/photo.rs), for 14 MB of file size; tract
            // widens constants this small to f32 at load anyway, so memory on the
            // board is the same.
            let (features, side) = g.f32_weights(|g| towers::efficientnet(g, &image, net, image_size));
            let grid = towers::grid_tokens(&mut g, &features);
            let pooled = towers::mean_tokens(&mut g, &grid);
            (grid, pooled, side * side)
        }
    };
    let tokens = match &model.image_adapter {
        Some(adapter) => towers::project_tokens(&mut g, &tower, &adapter.proj, &adapter.norm),
        None => tower,
    };
    let itc = &model.itc;
    let embedding = towers::projection(&mut g, &pooled, &itc.image_proj, itc.image_residual.as_ref());
    let [_, d_image] = token_shape(model, image_size);
    g.output(
        &tokens,
        io::IMAGE_TOKENS,
        &[N, Dim::Fixed(count), Dim::Fixed(d_image)],
    );
    g.output(&embedding, io::EMBEDDING, &[N, Dim::Fixed(d_embed(model))]);
    g.finish()
}

/// `[tokens, width]` of the image tokens fusion and decoder read, for images of
/// `image_size`.
pub fn token_shape(model: &EdgeVlm, image_size: usize) -> TokenShape {
    let tokens = match &model.vision {
        ImageTower::Vit(vit) => vit.position.val().dims()[1],
        // Every stride of the tower pads "SAME": the grid is ceil(s / 32) a side.
        ImageTower::EfficientNet(_) => image_size.div_ceil(32).pow(2),
    };
    let width = match &model.image_adapter {
        Some(adapter) => adapter.proj.weight.val().dims()[1],
        None => model.itc.image_proj.weight.val().dims()[0],
    };
    [tokens, width]
}

fn d_embed(model: &EdgeVlm) -> usize {
    model.itc.image_proj.weight.val().dims()[1]
}

/// Token ids `[n, len]` (int64) and mask `[n, len]` → the unit ITC embedding of
/// the text tower's pooled state ([CLS], or the masked mean at unit length), and
/// the tower's token states `[n, len, d_text]`, which the VQA graph reads.
pub fn text_encoder(model: &EdgeVlm, weights: WeightFormat) -> ModelProto {
    let mut g = GraphBuilder::new(io::TEXT_ENCODER, weights);
    let ids = g.input_i64(io::IDS, &[N, LEN]);
    let mask = g.input_f32(io::MASK, &[N, LEN]);
    let states = blocks::bert(&mut g, &ids, &mask, &model.text);
    let pooled = match model.text_pooling {
        TextPooling::Cls => blocks::first_token(&mut g, &states),
        TextPooling::Mean => towers::sentence_embedding(&mut g, &states, &mask),
    };
    let itc = &model.itc;
    let embedding = towers::projection(&mut g, &pooled, &itc.text_proj, itc.text_residual.as_ref());
    g.output(&embedding, io::EMBEDDING, &[N, Dim::Fixed(d_embed(model))]);
    g.output(&states, io::TEXT_STATES, &[N, LEN, Dim::Fixed(d_text(model))]);
    g.finish()
}

fn d_text(model: &EdgeVlm) -> usize {
    model.text.word_embeddings.weight.val().dims()[1]
}

/// Image tokens (the fused head) or the image itself (the spatial head, through the
/// grid encoder) + the question's token states (the text encoder's
/// [`io::TEXT_STATES`]) and mask → answer logits `[n, answers]` (and, from the
/// spatial head, its focus over the grid's cells); `None` when the model has no
/// VQA head. The text tower is not in this graph: the bundle's one
/// copy of it is the text encoder's.
pub fn vqa(
    model: &EdgeVlm,
    tokens: TokenShape,
    image_size: usize,
    weights: WeightFormat,
) -> Option<ModelProto> {
    let mut g = GraphBuilder::new(io::VQA, weights);
    if let Some(head) = &model.spatial_vqa {
        let grid = model
            .grid
            .as_ref()
            .expect("the spatial VQA head reads a grid encoder");
        let image = g.input_f32(
            io::IMAGE,
            &[N, Dim::Fixed(3), Dim::Fixed(image_size), Dim::Fixed(image_size)],
        );
        let (text, mask) = question_inputs(&mut g, model);
        let cells = spatial::grid_encoder(&mut g, &image, grid, image_size);
        let (logits, focus) = spatial::spatial_vqa(&mut g, &cells, &text, &mask, head);
        let answers = head.answer.weight.val().dims()[1];
        g.output(&logits, io::LOGITS, &[N, Dim::Fixed(answers)]);
        let cells = head.grid() * head.grid();
        g.output(&focus, io::ANSWER_FOCUS, &[N, Dim::Fixed(cells)]);
    } else {
        let head = model.vqa.as_ref()?;
        let image = tokens_input(&mut g, tokens);
        let (text, mask) = question_inputs(&mut g, model);
        let fused = blocks::fusion(&mut g, &text, &mask, &image, &model.fusion);
        let cls = blocks::first_token(&mut g, &fused);
        let logits = blocks::vqa_head(&mut g, &cls, head, &image, &text, &mask);
        let answers = head.output.weight.val().dims()[1];
        g.output(&logits, io::LOGITS, &[N, Dim::Fixed(answers)]);
    }
    Some(g.finish())
}

/// The question as the text encoder leaves it: token states and their mask.
fn question_inputs(g: &mut GraphBuilder, model: &EdgeVlm) -> (String, String) {
    (
        g.input_f32(io::TEXT_STATES, &[N, LEN, Dim::Fixed(d_text(model))]),
        g.input_f32(io::MASK, &[N, LEN]),
    )
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

/// The prefix decoder reads one image's tokens `[1, n, d]` whatever the number of
/// rows (beams) it decodes: cross-attention projects its keys and values once and
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

fn memory_dims(decoder: &CaptionDecoder, image: TokenShape) -> [Dim; 4] {
    let a = &decoder.layers[0].cross_attention;
    [
        Dim::Fixed(1),
        Dim::Fixed(a.heads()),
        Dim::Fixed(image[0]),
        Dim::Fixed(a.d_head()),
    ]
}

/// Image tokens + a prefix `[n, len]` → next-token logits at every position
/// `[n, len, vocab]`, each layer's self-attention keys/values (the cache for
/// [`caption_decoder_step`]) and each layer's cross-attention keys/values of the
/// image, which the steps read instead of projecting the image again.
///
/// `name` is [`io::CAPTION_DECODER`], or [`io::CLIP_DECODER`] over a clip's memory.
pub fn caption_decoder(
    name: &str,
    decoder: &CaptionDecoder,
    image: TokenShape,
    weights: WeightFormat,
) -> ModelProto {
    let mut g = GraphBuilder::new(name, weights);
    let image_shape = image;
    let image = decoder_tokens_input(&mut g, image);
    let ids = g.input_i64(io::IDS, &[N, LEN]);
    let out = blocks::caption_decoder(
        &mut g,
        DecoderInput::Prefix { ids: &ids },
        DecoderMemory::Tokens(&image),
        decoder,
    );
    g.output(&out.logits, io::LOGITS, &[N, LEN, Dim::Fixed(vocab(decoder))]);
    for (i, (k, v)) in out.cache.iter().enumerate() {
        g.output(k, &io::present_key(i), &cache_dims(decoder, LEN));
        g.output(v, &io::present_value(i), &cache_dims(decoder, LEN));
    }
    for (i, (k, v)) in out.memory.iter().enumerate() {
        g.output(k, &io::image_key(i), &memory_dims(decoder, image_shape));
        g.output(v, &io::image_value(i), &memory_dims(decoder, image_shape));
    }
    g.finish()
}

/// One decoding step with the KV cache: the newest token `[n, 1]`, its position
/// `[1]`, the cached keys/values `[n, heads, past, d_head]` and the image's
/// cross-attention keys/values from the prefix graph `[1, heads, tokens, d_head]`
/// → logits `[n, 1, vocab]` and the extended cache.
///
/// `name` is [`io::CAPTION_STEP`], or [`io::CLIP_STEP`] over a clip's memory.
pub fn caption_decoder_step(
    name: &str,
    decoder: &CaptionDecoder,
    image: TokenShape,
    weights: WeightFormat,
) -> ModelProto {
    let mut g = GraphBuilder::new(name, weights);
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
    let memory = (0..decoder.layers.len())
        .map(|i| {
            (
                g.input_f32(&io::image_key(i), &memory_dims(decoder, image)),
                g.input_f32(&io::image_value(i), &memory_dims(decoder, image)),
            )
        })
        .collect();
    let input = DecoderInput::Step {
        ids: &ids,
        position: &position,
        past,
    };
    let out = blocks::caption_decoder(&mut g, input, DecoderMemory::Projected(memory), decoder);
    let (logits, cache) = (out.logits, out.cache);
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

/// A clip's frame tokens `[frames, n, d]` (the image encoder's, frame by frame) →
/// the memory the clip decoders read `[1, frames * n, d]`; `None` when the model
/// has no temporal encoder. Mirrors [`crate::model::temporal::TemporalEncoder::forward`].
pub fn temporal(model: &EdgeVlm, tokens: TokenShape, weights: WeightFormat) -> Option<ModelProto> {
    let temporal = model.temporal.as_ref()?;
    let (frames, [n, d]) = (temporal.frames(), tokens);
    let mut g = GraphBuilder::new(io::TEMPORAL, weights);
    let x = g.input_f32(
        io::IMAGE_TOKENS,
        &[Dim::Fixed(frames), Dim::Fixed(n), Dim::Fixed(d)],
    );
    let (position, _) = blocks::values(&temporal.frame_embedding.weight);
    let position = g.constant("frame_position", &position, &[frames, 1, d]);
    let x = g.add(&x, &position);
    // One sequence over time per token position: [n, frames, d].
    let mut x = g.transpose(&x, &[1, 0, 2]);
    for layer in &temporal.layers {
        let h = blocks::layer_norm(&mut g, &x, &layer.attention_norm, blocks::eps::TEMPORAL);
        let attended = blocks::attention(&mut g, &h, &h, None, &layer.attention);
        x = g.add(&x, &attended);
        let h = blocks::layer_norm(&mut g, &x, &layer.ff_norm, blocks::eps::TEMPORAL);
        let fed = blocks::feed_forward(&mut g, &h, &layer.feed_forward);
        x = g.add(&x, &fed);
    }
    let x = g.transpose(&x, &[1, 0, 2]);
    let memory = g.reshape(&x, &[1, -1, d as i64]);
    g.output(
        &memory,
        io::CLIP_MEMORY,
        &[Dim::Fixed(1), Dim::Fixed(frames * n), Dim::Fixed(d)],
    );
    Some(g.finish())
}

//! One exporter per burn module, mirroring its `forward` op for op, so that the
//! ONNX graph computes what the trained model computes. Parity with burn is tested
//! per block in `tests.rs`.

use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::Tensor;

use super::conv;
use super::onnx::{Attr, GraphBuilder, SliceEnd};
use crate::model::attention::Attention;
use crate::model::bert::{Bert, BertLayer};
use crate::model::count::CountReadout;
use crate::model::decoder::{CaptionDecoder, DecoderLayer};
use crate::model::feed_forward::FeedForward;
use crate::model::fusion::Fusion;
use crate::model::heads::VqaHead;
use crate::model::vit::Vit;

/// LayerNorm epsilons of the model's parts (burn keeps them private to the module;
/// these are the values the model configs set).
pub mod eps {
    pub const VIT: f32 = 1e-6;
    pub const BERT: f32 = 1e-12;
    pub const DECODER: f32 = 1e-5;
    pub const VQA_HEAD: f32 = 1e-5;
    pub const SPATIAL: f32 = 1e-5;
    pub const GRID: f32 = 1e-5;
    /// The real-photo model's projection of tower tokens.
    pub const TOKENS: f32 = 1e-5;
    pub const TEMPORAL: f32 = 1e-5;
}

/// A parameter's values and shape.
pub fn values<const D: usize>(param: &Param<Tensor<D>>) -> (Vec<f32>, Vec<usize>) {
    let tensor = param.val();
    let dims = tensor.dims().to_vec();
    let values = tensor
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("float parameter");
    (values, dims)
}

/// `x · W + b` with burn's `[d_in, d_out]` weight; output channels along axis 1.
pub fn linear(g: &mut GraphBuilder, x: &str, linear: &Linear) -> String {
    let (w, dims) = values(&linear.weight);
    let w = g.weight("linear_weight", &w, &dims, 1);
    let y = g.matmul(x, &w);
    bias(g, &y, linear)
}

pub fn layer_norm(g: &mut GraphBuilder, x: &str, norm: &LayerNorm, epsilon: f32) -> String {
    let (gamma, dims) = values(&norm.gamma);
    let gamma = g.constant("ln_gamma", &gamma, &dims);
    let mut inputs = vec![x.to_string(), gamma];
    if let Some(beta) = &norm.beta {
        let (beta, dims) = values(beta);
        inputs.push(g.constant("ln_beta", &beta, &dims));
    }
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    g.node(
        "LayerNormalization",
        &inputs,
        vec![("axis", Attr::Int(-1)), ("epsilon", Attr::Float(epsilon))],
    )
}

/// burn's `gelu` is the exact (erf) form, ONNX's default.
pub fn gelu(g: &mut GraphBuilder, x: &str) -> String {
    g.node("Gelu", &[x], vec![])
}

pub fn feed_forward(g: &mut GraphBuilder, x: &str, ff: &FeedForward) -> String {
    let h = linear(g, x, &ff.intermediate);
    let h = gelu(g, &h);
    linear(g, &h, &ff.output)
}

/// Projects `x` and splits heads: `[n, len, d]` → `[n, heads, len, d_head]`.
fn split_heads(g: &mut GraphBuilder, x: &str, proj: &Linear, heads: usize, d_head: usize) -> String {
    let y = linear(g, x, proj);
    let y = g.reshape(&y, &[0, 0, heads as i64, d_head as i64]);
    g.transpose(&y, &[0, 2, 1, 3])
}

/// Attention over already split keys and values `[n, heads, k_len, d_head]`.
fn attend(
    g: &mut GraphBuilder,
    q: &str,
    k: &str,
    v: &str,
    bias: Option<&str>,
    attention: &Attention,
    d_head: usize,
) -> String {
    let kt = g.transpose(k, &[0, 1, 3, 2]);
    let scores = g.matmul(q, &kt);
    let scale = g.constant("inv_sqrt_d", &[(d_head as f32).sqrt()], &[]);
    let mut scores = g.node("Div", &[&scores, &scale], vec![]);
    if let Some(bias) = bias {
        scores = g.add(&scores, bias);
    }
    let weights = g.node("Softmax", &[&scores], vec![("axis", Attr::Int(-1))]);
    let mixed = g.matmul(&weights, v);
    let mixed = g.transpose(&mixed, &[0, 2, 1, 3]);
    let mixed = g.reshape(&mixed, &[0, 0, -1]);
    linear(g, &mixed, &attention.output)
}

/// Mirrors [`Attention::forward`]: `x` attends to `context`.
pub fn attention(g: &mut GraphBuilder, x: &str, context: &str, bias: Option<&str>, a: &Attention) -> String {
    let (k, v) = keys_values(g, context, a);
    attention_to(g, x, (&k, &v), bias, a)
}

/// The keys and values `[n, heads, len, d_head]` attention `a` reads of `context`.
pub fn keys_values(g: &mut GraphBuilder, context: &str, a: &Attention) -> (String, String) {
    let (heads, d_head) = (a.heads(), a.d_head());
    (
        split_heads(g, context, &a.key, heads, d_head),
        split_heads(g, context, &a.value, heads, d_head),
    )
}

/// [`attention`] over keys and values projected before ([`keys_values`]).
pub fn attention_to(
    g: &mut GraphBuilder,
    x: &str,
    (k, v): (&str, &str),
    bias: Option<&str>,
    a: &Attention,
) -> String {
    let (heads, d_head) = (a.heads(), a.d_head());
    let q = split_heads(g, x, &a.query, heads, d_head);
    attend(g, &q, k, v, bias, a, d_head)
}

/// Causal self-attention that also returns its keys and values (the KV cache):
/// with `past`, the new keys/values are appended to the cached ones.
pub fn cached_self_attention(
    g: &mut GraphBuilder,
    x: &str,
    bias: Option<&str>,
    past: Option<(&str, &str)>,
    a: &Attention,
) -> (String, String, String) {
    let (heads, d_head) = (a.heads(), a.d_head());
    let q = split_heads(g, x, &a.query, heads, d_head);
    let mut k = split_heads(g, x, &a.key, heads, d_head);
    let mut v = split_heads(g, x, &a.value, heads, d_head);
    if let Some((past_k, past_v)) = past {
        k = g.node("Concat", &[past_k, &k], vec![("axis", Attr::Int(2))]);
        v = g.node("Concat", &[past_v, &v], vec![("axis", Attr::Int(2))]);
    }
    let out = attend(g, &q, &k, &v, bias, a, d_head);
    (out, k, v)
}

/// Mirrors `padding_bias`: mask `[n, len]` (1 = token) → `[n, 1, 1, len]`.
pub fn padding_bias(g: &mut GraphBuilder, mask: &str) -> String {
    let one = g.constant("one", &[1.0], &[]);
    let hidden = g.node("Sub", &[&one, mask], vec![]);
    let big = g.constant("neg_big", &[-1e4], &[]);
    let bias = g.mul(&hidden, &big);
    g.unsqueeze(&bias, &[1, 2])
}

/// Mirrors `mean_over_tokens`: states `[n, len, d]` averaged over the tokens the
/// mask `[n, len]` keeps → `[n, d]`.
pub fn mean_over_tokens(g: &mut GraphBuilder, states: &str, mask: &str) -> String {
    masked_mean(g, states, mask, 1.0)
}

/// States `[n, len, d]` summed over the tokens the mask `[n, len]` keeps and divided
/// by how many it keeps, at least `count_floor` (what an empty mask divides by).
pub fn masked_mean(g: &mut GraphBuilder, states: &str, mask: &str, count_floor: f32) -> String {
    let weights = g.unsqueeze(mask, &[1]); // [n, 1, len]
    let total = g.matmul(&weights, states);
    let total = g.reshape(&total, &[0, -1]);
    let axes = g.constant_i64("axes", &[1]);
    let count = g.node("ReduceSum", &[mask, &axes], vec![("keepdims", Attr::Int(1))]);
    let floor = g.constant("count_floor", &[count_floor], &[]);
    let count = g.node("Max", &[&count, &floor], vec![]);
    g.node("Div", &[&total, &count], vec![])
}

/// `[n, len, d]` → `[n, d]`: the first position.
pub fn first_token(g: &mut GraphBuilder, x: &str) -> String {
    let first = g.slice(x, 1, 0, SliceEnd::Fixed(1));
    g.reshape(&first, &[0, -1])
}

/// Mirrors `l2_normalize` along the last axis of `[n, d]`.
pub fn l2_normalize(g: &mut GraphBuilder, x: &str) -> String {
    let squared = g.mul(x, x);
    let axes = g.constant_i64("axes", &[1]);
    let sum = g.node("ReduceSum", &[&squared, &axes], vec![("keepdims", Attr::Int(1))]);
    let norm = g.node("Sqrt", &[&sum], vec![]);
    let floor = g.constant("eps", &[1e-12], &[]);
    let norm = g.node("Max", &[&norm, &floor], vec![]);
    g.node("Div", &[x, &norm], vec![])
}

/// Mirrors [`BertLayer::forward`] (post-LN; cross-attention when present).
pub fn bert_layer(
    g: &mut GraphBuilder,
    x: &str,
    self_bias: Option<&str>,
    context: Option<(&str, Option<&str>)>,
    layer: &BertLayer,
    epsilon: f32,
) -> String {
    let attended = attention(g, x, x, self_bias, &layer.attention);
    let sum = g.add(x, &attended);
    let mut x = layer_norm(g, &sum, &layer.attention_norm, epsilon);
    if let (Some(cross), Some(norm), Some((context, bias))) =
        (&layer.cross_attention, &layer.cross_attention_norm, context)
    {
        let attended = attention(g, &x, context, bias, cross);
        let sum = g.add(&x, &attended);
        x = layer_norm(g, &sum, norm, epsilon);
    }
    let out = feed_forward(g, &x, &layer.feed_forward);
    let sum = g.add(&x, &out);
    layer_norm(g, &sum, &layer.output_norm, epsilon)
}

/// Mirrors [`Bert::forward`]: ids `[n, len]` (int64), mask `[n, len]` → `[n, len, d]`.
pub fn bert(g: &mut GraphBuilder, ids: &str, mask: &str, bert: &Bert) -> String {
    let (words, dims) = values(&bert.word_embeddings.weight);
    let x = g.gather_rows("word_embeddings", &words, &dims, ids);
    let (positions, dims) = values(&bert.position_embeddings.weight);
    let positions = g.weight("position_embeddings", &positions, &dims, 0);
    let len = g.dim(ids, 1);
    let positions = g.slice(&positions, 0, 0, SliceEnd::Value(len));
    let (types, dims) = values(&bert.token_type_embeddings.weight);
    // Every token has type 0.
    let type0 = g.constant("token_type_0", &types[..dims[1]], &[dims[1]]);
    let x = g.add(&x, &positions);
    let x = g.add(&x, &type0);
    let mut x = layer_norm(g, &x, &bert.embeddings_norm, eps::BERT);
    let bias = padding_bias(g, mask);
    for layer in &bert.layers {
        x = bert_layer(g, &x, Some(&bias), None, layer, eps::BERT);
    }
    x
}

/// Mirrors [`Fusion::forward`]: text `[n, len, d]`, mask, image tokens → fused text.
pub fn fusion(g: &mut GraphBuilder, text: &str, mask: &str, image: &str, fusion: &Fusion) -> String {
    if let (Some(text_proj), Some(image_proj)) = (&fusion.text_proj, &fusion.image_proj) {
        let pooled = g.slice(image, 1, 0, SliceEnd::Fixed(1));
        let t = linear(g, text, text_proj);
        let i = linear(g, &pooled, image_proj);
        return g.add(&t, &i);
    }
    let bias = padding_bias(g, mask);
    let mut x = text.to_string();
    for layer in &fusion.layers {
        x = bert_layer(g, &x, Some(&bias), Some((image, None)), layer, eps::BERT);
    }
    x
}

/// Mirrors [`Vit::forward`]: images `[n, 3, s, s]` → tokens `[n, 1 + patches, d]`.
pub fn vit(g: &mut GraphBuilder, images: &str, vit: &Vit, image_size: usize) -> String {
    let (mut x, mut size) = (images.to_string(), image_size);
    for conv in &vit.stem {
        let y = conv::conv2d(g, &x, conv, size);
        size = conv::output_size(conv, size);
        x = g.node("Relu", &[&y], vec![]);
    }
    let patches = conv::conv2d(g, &x, &vit.patch_embed, size);
    let tokens = g.reshape(&patches, &[0, 0, -1]);
    let tokens = g.transpose(&tokens, &[0, 2, 1]);
    // [CLS] goes in front: pad one zero token, then add positions whose first row
    // also carries the [CLS] vector (exactly burn's cat + add, element by element).
    let pads = g.constant_i64("pads", &[0, 1, 0, 0, 0, 0]);
    let padded = g.node("Pad", &[&tokens, &pads], vec![]);
    let (mut position, dims) = values(&vit.position);
    let (cls, _) = values(&vit.cls_token);
    for (p, c) in position.iter_mut().zip(&cls) {
        *p += c;
    }
    let position = g.weight("position_and_cls", &position, &dims, 1);
    let mut x = g.add(&padded, &position);
    for block in &vit.blocks {
        let h = layer_norm(g, &x, &block.norm1, eps::VIT);
        let attended = attention(g, &h, &h, None, &block.attention);
        x = g.add(&x, &attended);
        let h = layer_norm(g, &x, &block.norm2, eps::VIT);
        let out = feed_forward(g, &h, &block.mlp);
        x = g.add(&x, &out);
    }
    layer_norm(g, &x, &vit.norm, eps::VIT)
}

/// Mirrors [`VqaHead::forward`]: the fused [CLS] `[n, d]`, and for the counting
/// read-out the image tokens `[n, cells, d_image]` and the question's states and mask.
pub fn vqa_head(
    g: &mut GraphBuilder,
    cls: &str,
    head: &VqaHead,
    image: &str,
    states: &str,
    mask: &str,
) -> String {
    let mut h = linear(g, cls, &head.hidden);
    if let Some(count) = &head.count {
        let question = mean_over_tokens(g, states, mask);
        let counted = count_readout(g, image, &question, count);
        h = g.add(&h, &counted);
    }
    let h = gelu(g, &h);
    let h = layer_norm(g, &h, &head.norm, eps::VQA_HEAD);
    linear(g, &h, &head.output)
}

/// Mirrors [`CountReadout::forward`]: image tokens `[n, cells, d_image]` and the
/// question's mean state `[n, d_text]` → what the count adds `[n, d_hidden]`.
fn count_readout(g: &mut GraphBuilder, image: &str, question: &str, count: &CountReadout) -> String {
    let keys = linear(g, image, &count.image_key);
    let query = linear(g, question, &count.question_key);
    let query = g.unsqueeze(&query, &[2]); // [n, d_key, 1]
    let scores = g.matmul(&keys, &query);
    let scores = g.reshape(&scores, &[0, -1]); // [n, cells]
    let scale = g.constant("sqrt_d_key", &[(count.d_key() as f32).sqrt()], &[]);
    let scores = g.node("Div", &[&scores, &scale], vec![]);
    let (bias, _) = values(&count.gate_bias);
    let bias = g.constant("gate_bias", &bias, &[]);
    let scores = g.add(&scores, &bias);
    let gates = g.node("Sigmoid", &[&scores], vec![]);
    let axes = g.constant_i64("axes", &[1]);
    let total = g.node("ReduceSum", &[&gates, &axes], vec![("keepdims", Attr::Int(1))]);
    let max = count.max_count();
    let ceiling = g.constant("max_count", &[max as f32], &[]);
    let total = g.node("Min", &[&total, &ceiling], vec![]);
    let whole: Vec<f32> = (0..=max).map(|k| k as f32).collect();
    let whole = g.constant("whole_counts", &whole, &[1, max + 1]);
    let distance = g.node("Sub", &[&total, &whole], vec![]);
    let distance = g.node("Abs", &[&distance], vec![]);
    let one = g.constant("one", &[1.0], &[]);
    let closeness = g.node("Sub", &[&one, &distance], vec![]);
    let bins = g.node("Relu", &[&closeness], vec![]);
    linear(g, &bins, &count.bins)
}

/// One decoder block; returns the new state and this block's self-attention keys
/// and values (`[n, heads, len, d_head]`).
fn decoder_layer(
    g: &mut GraphBuilder,
    x: &str,
    causal: Option<&str>,
    past: Option<(&str, &str)>,
    image: (&str, &str),
    layer: &DecoderLayer,
) -> (String, String, String) {
    let h = layer_norm(g, x, &layer.self_norm, eps::DECODER);
    let (attended, k, v) = cached_self_attention(g, &h, causal, past, &layer.self_attention);
    let x = g.add(x, &attended);
    let h = layer_norm(g, &x, &layer.cross_norm, eps::DECODER);
    let attended = attention_to(g, &h, image, None, &layer.cross_attention);
    let x = g.add(&x, &attended);
    let h = layer_norm(g, &x, &layer.ff_norm, eps::DECODER);
    let out = feed_forward(g, &h, &layer.feed_forward);
    (g.add(&x, &out), k, v)
}

/// How the decoder graph receives its tokens.
pub enum DecoderInput<'a> {
    /// A whole prefix `[n, len]` from position 0, with a causal mask.
    Prefix { ids: &'a str },
    /// One token `[n, 1]` at `position` (`[1]`), attending to cached keys/values.
    Step {
        ids: &'a str,
        position: &'a str,
        past: Vec<(String, String)>,
    },
}

/// What the decoder's cross-attention reads.
pub enum DecoderMemory<'a> {
    /// The image tokens `[1, n, d]` (or a clip's memory), projected in the graph.
    Tokens(&'a str),
    /// Each layer's keys and values of them `[1, heads, n, d_head]`, projected
    /// once per image by the prefix graph.
    Projected(Vec<(String, String)>),
}

/// The graph's names of a decoder's output.
pub struct DecoderOutput {
    /// `[n, len, vocab]`.
    pub logits: String,
    /// Each layer's self-attention keys/values (the cache).
    pub cache: Vec<(String, String)>,
    /// Each layer's cross-attention keys/values of the memory.
    pub memory: Vec<(String, String)>,
}

/// Mirrors [`CaptionDecoder::forward`]: logits, each layer's keys/values for the
/// cache and its keys/values of the memory.
pub fn caption_decoder(
    g: &mut GraphBuilder,
    input: DecoderInput,
    memory: DecoderMemory,
    decoder: &CaptionDecoder,
) -> DecoderOutput {
    let memory = match memory {
        DecoderMemory::Tokens(tokens) => decoder
            .layers
            .iter()
            .map(|layer| keys_values(g, tokens, &layer.cross_attention))
            .collect(),
        DecoderMemory::Projected(kv) => kv,
    };
    let (table, dims) = values(&decoder.token_embedding.weight);
    let table = g.weight("token_embedding", &table, &dims, 0);
    let (positions, pos_dims) = values(&decoder.position_embedding.weight);
    let positions = g.weight("decoder_positions", &positions, &pos_dims, 0);
    let (ids, position_rows, causal, past) = match input {
        DecoderInput::Prefix { ids } => {
            let len = g.dim(ids, 1);
            let rows = g.slice(&positions, 0, 0, SliceEnd::Value(len.clone()));
            let max_len = pos_dims[0];
            let future: Vec<f32> = (0..max_len * max_len)
                .map(|i| if i % max_len > i / max_len { -1e4 } else { 0.0 })
                .collect();
            let causal = g.constant("causal", &future, &[max_len, max_len]);
            let causal = g.slice(&causal, 0, 0, SliceEnd::Value(len.clone()));
            let causal = g.slice(&causal, 1, 0, SliceEnd::Value(len));
            let causal = g.unsqueeze(&causal, &[0, 1]);
            (ids, rows, Some(causal), None)
        }
        DecoderInput::Step { ids, position, past } => {
            let rows = g.node("Gather", &[&positions, position], vec![("axis", Attr::Int(0))]);
            (ids, rows, None, Some(past))
        }
    };
    let tokens = g.node("Gather", &[&table, ids], vec![("axis", Attr::Int(0))]);
    let mut x = g.add(&tokens, &position_rows);
    let mut cache = Vec::new();
    for (i, layer) in decoder.layers.iter().enumerate() {
        let layer_past = past.as_ref().map(|p| (p[i].0.as_str(), p[i].1.as_str()));
        let image = (memory[i].0.as_str(), memory[i].1.as_str());
        let (y, k, v) = decoder_layer(g, &x, causal.as_deref(), layer_past, image, layer);
        x = y;
        cache.push((k, v));
    }
    let h = layer_norm(g, &x, &decoder.norm, eps::DECODER);
    let tied = g.transpose(&table, &[1, 0]);
    DecoderOutput {
        logits: g.matmul(&h, &tied),
        cache,
        memory,
    }
}

/// Adds a linear layer's bias, if it has one.
pub(super) fn bias(g: &mut GraphBuilder, x: &str, linear: &Linear) -> String {
    match &linear.bias {
        Some(bias) => {
            let (b, dims) = values(bias);
            let b = g.constant("linear_bias", &b, &dims);
            g.add(x, &b)
        }
        None => x.to_string(),
    }
}

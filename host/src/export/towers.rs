//! Exporters of the imported towers: EfficientNet-Lite (convolutions with their
//! BatchNorm folded, ReLU6 as `Clip`, MBConv residuals, "SAME" pads made explicit)
//! and the sentence embedding of a BERT-family text tower (masked mean + L2, as
//! sentence-transformers pools MiniLM). Each mirrors its burn `forward` op for op.

use burn::nn::Linear;

use super::blocks::{self, gelu, l2_normalize, linear};
use super::conv::{self, relu6};
use super::onnx::{Attr, GraphBuilder};
use crate::model::efficientnet::{EfficientNet, MbConvBlock};

/// Mirrors [`MbConvBlock::forward`] over a `size`×`size` input; returns the output
/// and its side.
fn mb_conv(g: &mut GraphBuilder, x: &str, block: &MbConvBlock, size: usize) -> (String, usize) {
    let mut h = x.to_string();
    if let (Some(expand), Some(bn)) = (&block.expand_conv, &block.bn0) {
        let y = conv::conv_batch_norm(g, &h, expand, bn, size);
        h = relu6(g, &y);
    }
    let y = conv::conv_batch_norm(g, &h, &block.depthwise_conv, &block.bn1, size);
    let out_size = conv::output_size(&block.depthwise_conv, size);
    h = relu6(g, &y);
    h = conv::conv_batch_norm(g, &h, &block.project_conv, &block.bn2, out_size);
    if block.residual {
        h = g.add(&h, x);
    }
    (h, out_size)
}

/// Mirrors [`EfficientNet::forward_features`]: images `[n, 3, s, s]` → the head's
/// feature map `[n, 1280, ceil(s / 32), ceil(s / 32)]`; returns it and its side.
pub fn efficientnet(
    g: &mut GraphBuilder,
    images: &str,
    net: &EfficientNet,
    image_size: usize,
) -> (String, usize) {
    let y = conv::conv_batch_norm(g, images, &net.conv_stem, &net.bn0, image_size);
    let mut size = conv::output_size(&net.conv_stem, image_size);
    let mut x = relu6(g, &y);
    for block in &net.blocks {
        (x, size) = mb_conv(g, &x, block, size);
    }
    let y = conv::conv_batch_norm(g, &x, &net.conv_head, &net.bn1, size);
    (relu6(g, &y), size)
}

/// A feature map `[n, d, h, w]` as tokens `[n, h·w, d]`, row-major.
pub fn grid_tokens(g: &mut GraphBuilder, features: &str) -> String {
    let flat = g.reshape(features, &[0, 0, -1]);
    g.transpose(&flat, &[0, 2, 1])
}

/// Mean over the tokens of `[n, k, d]` → `[n, d]`.
pub fn mean_tokens(g: &mut GraphBuilder, tokens: &str) -> String {
    let axes = g.constant_i64("axes", &[1]);
    g.node("ReduceMean", &[tokens, &axes], vec![("keepdims", Attr::Int(0))])
}

/// The unit-length mean of token states over the tokens the mask keeps:
/// states `[n, len, d]`, mask `[n, len]` → `[n, d]` (the sentence embedding).
pub fn sentence_embedding(g: &mut GraphBuilder, states: &str, mask: &str) -> String {
    let mean = blocks::masked_mean(g, states, mask, 1e-9);
    l2_normalize(g, &mean)
}

/// Mirrors [`crate::model::heads::ItcHead::embed_image`] (and `embed_text`):
/// `[n, d_in]` → `h = x · W + b`, plus `Linear(GELU(h))` when the head has the
/// residual layer, at unit length `[n, d_embed]`.
pub fn projection(g: &mut GraphBuilder, x: &str, proj: &Linear, residual: Option<&Linear>) -> String {
    let h = linear(g, x, proj);
    let sum = match residual {
        Some(residual) => {
            let activated = gelu(g, &h);
            let out = linear(g, &activated, residual);
            g.add(&h, &out)
        }
        None => h,
    };
    l2_normalize(g, &sum)
}

/// `LayerNorm(x · W + b)`: the projection of tower tokens to the model's width.
pub fn project_tokens(g: &mut GraphBuilder, x: &str, proj: &Linear, norm: &burn::nn::LayerNorm) -> String {
    let y = linear(g, x, proj);
    blocks::layer_norm(g, &y, norm, blocks::eps::TOKENS)
}

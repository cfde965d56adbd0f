//! The image tower is a config choice, not a model type (open_clip's pattern): a ViT
//! trained here, or EfficientNet-Lite0 imported from its ImageNet weights. Either
//! gives tokens `[batch, n, width]` and a pooled vector for ITC, so the heads, the
//! objectives and the exporter never ask which tower they got beyond these methods.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use super::efficientnet::{EfficientNet, EfficientNetConfig, FEATURES};
use super::vit::{Vit, VitConfig};

#[derive(Config, Debug)]
pub enum ImageTowerConfig {
    /// A ViT from scratch; its [CLS] token is the pooled vector.
    Vit(VitConfig),
    /// EfficientNet-Lite0 (imported): the head's feature map as one token per cell,
    /// mean-pooled for ITC.
    EfficientNet(EfficientNetConfig),
}

// Built once per model, never moved in a loop: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum ImageTower {
    Vit(Vit),
    EfficientNet(EfficientNet),
}

impl ImageTowerConfig {
    pub fn init(&self, device: &Device) -> ImageTower {
        match self {
            Self::Vit(vit) => ImageTower::Vit(vit.init(device)),
            Self::EfficientNet(net) => ImageTower::EfficientNet(net.init(device)),
        }
    }

    /// Width of the tower's tokens.
    pub fn width(&self) -> usize {
        match self {
            Self::Vit(vit) => vit.d_model,
            Self::EfficientNet(_) => FEATURES,
        }
    }

    /// Side of the square images the tower is shown.
    pub fn image_size(&self) -> usize {
        match self {
            Self::Vit(vit) => vit.image_size,
            Self::EfficientNet(net) => net.image_size,
        }
    }

    /// What the model card says about the tower.
    pub fn describe(&self) -> String {
        match self {
            Self::Vit(v) => format!(
                "ViT ({} px, {} px patches, width {}, {} layers)",
                v.image_size, v.patch_size, v.d_model, v.layers
            ),
            Self::EfficientNet(net) => {
                format!("EfficientNet-Lite0 ({} px, width {FEATURES})", net.image_size)
            }
        }
    }
}

impl ImageTower {
    /// # Shapes
    /// - images: `[batch, 3, s, s]` → `[batch, n, width]` (ViT: [CLS] + patches;
    ///   EfficientNet: the 7x7 cells at 224 px, row-major)
    pub fn forward(&self, images: Tensor<4>) -> Tensor<3> {
        match self {
            Self::Vit(vit) => vit.forward(images),
            Self::EfficientNet(net) => EfficientNet::grid(net.forward_features(images)),
        }
    }

    /// The vector ITC embeds: `[batch, n, width]` → `[batch, width]`.
    pub fn pool(&self, tokens: Tensor<3>) -> Tensor<2> {
        let [batch, _, d] = tokens.dims();
        match self {
            Self::Vit(_) => tokens.slice([0..batch, 0..1]).reshape([batch, d]),
            Self::EfficientNet(_) => tokens.mean_dim(1).reshape([batch, d]),
        }
    }

    pub fn vit(&self) -> Option<&Vit> {
        match self {
            Self::Vit(vit) => Some(vit),
            Self::EfficientNet(_) => None,
        }
    }

    pub fn efficientnet(&self) -> Option<&EfficientNet> {
        match self {
            Self::EfficientNet(net) => Some(net),
            Self::Vit(_) => None,
        }
    }
}

/// Brings a tower's tokens to the model's width (a tower wider than the heads, as
/// EfficientNet's 1280 against 256): a linear map, then LayerNorm.
#[derive(Module, Debug)]
pub struct ImageAdapter {
    pub proj: Linear,
    pub norm: LayerNorm,
}

impl ImageAdapter {
    pub fn new(d_tower: usize, d_model: usize, device: &Device) -> Self {
        Self {
            proj: LinearConfig::new(d_tower, d_model).init(device),
            norm: LayerNormConfig::new(d_model).init(device),
        }
    }

    /// `[batch, n, d_tower]` → `[batch, n, d_model]`.
    pub fn forward(&self, tokens: Tensor<3>) -> Tensor<3> {
        self.norm.forward(self.proj.forward(tokens))
    }
}

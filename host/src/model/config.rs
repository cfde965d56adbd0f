//! [`EdgeVlmConfig`]: which towers, which heads, how wide. The synthetic-scene
//! model and the real-photo model are two presets of it ([`EdgeVlmConfig::synthetic`],
//! [`EdgeVlmConfig::photo`]), not two types.

use burn::config::Config;
use burn::nn::LinearConfig;
use burn::tensor::Device;

use super::bert::BertConfig;
use super::count::CountReadoutConfig;
use super::decoder::CaptionDecoderConfig;
use super::efficientnet::EfficientNetConfig;
use super::fusion::{FusionConfig, FusionKind};
use super::grid::GridEncoderConfig;
use super::heads::{ItcHeadConfig, MimHead, MlmHead};
use super::image_tower::{ImageAdapter, ImageTowerConfig};
use super::spatial::SpatialVqaConfig;
use super::temporal::TemporalConfig;
use super::vit::VitConfig;
use super::vlm::EdgeVlm;

/// How VQA reads the image.
#[derive(Config, Debug, PartialEq, Eq, Copy)]
pub enum VqaHeadKind {
    /// A classifier on the fused [CLS] of the question attending to the image tokens.
    Fused,
    /// [`super::spatial::SpatialVqa`]: the grid encoder's cells with coordinates,
    /// reasoned over by the question.
    Spatial,
}

/// The text vector ITC embeds.
#[derive(Config, Debug, PartialEq, Eq, Copy)]
pub enum TextPooling {
    /// The [CLS] state (a tower trained here with ITC learns to fill it).
    Cls,
    /// The mean of the token states at unit length, as sentence-transformers pools
    /// MiniLM (a pretrained tower's [CLS] was never trained for this).
    Mean,
}

#[derive(Config, Debug)]
pub struct EdgeVlmConfig {
    pub vision: ImageTowerConfig,
    pub text: BertConfig,
    pub fusion: FusionConfig,
    pub decoder: CaptionDecoderConfig,
    /// Width of the shared ITC embedding space.
    #[config(default = 128)]
    pub d_embed: usize,
    /// Size of the VQA answer vocabulary; 0 until VQA fine-tuning adds the head.
    #[config(default = 0)]
    pub answers: usize,
    #[config(default = "VqaHeadKind::Fused")]
    pub vqa_head: VqaHeadKind,
    /// A grid of CNN cells with coordinates, which the spatial heads read.
    #[config(default = "None")]
    pub grid: Option<GridEncoderConfig>,
    /// A spatial head over the grid cells that predicts hidden caption words
    /// (pretraining's spatial MLM); VQA fine-tuning starts its spatial head from it.
    #[config(default = false)]
    pub spatial_mlm: bool,
    /// Width of the image tokens fusion and decoder read, when it is not the
    /// tower's: an [`ImageAdapter`] brings the tower's tokens to it.
    #[config(default = "None")]
    pub image_width: Option<usize>,
    #[config(default = "TextPooling::Cls")]
    pub text_pooling: TextPooling,
    /// Two-layer ITC projections (see [`ItcHeadConfig::residual`]).
    #[config(default = false)]
    pub itc_residual: bool,
    /// The masked-image-feature head (ViT towers only).
    #[config(default = true)]
    pub mim: bool,
    /// The VQA head answers from the question alone (the image tokens it reads are
    /// zeros): the baseline that shows what the image adds.
    #[config(default = false)]
    pub vqa_question_only: bool,
    /// The fused VQA head also counts: a [`CountReadout`] of gated image tokens
    /// (how many dogs, how many people).
    ///
    /// [`CountReadout`]: super::count::CountReadout
    #[config(default = false)]
    pub vqa_count: bool,
    /// Locked towers keep their weights (LiT); their features can be cached.
    #[config(default = false)]
    pub lock_image: bool,
    #[config(default = false)]
    pub lock_text: bool,
    /// The caption decoder writes its own vocabulary (`decoder_tokenizer.json`)
    /// rather than the text tower's.
    #[config(default = false)]
    pub decoder_vocabulary: bool,
    /// Longest text the text tower reads, special tokens included; `None`: the
    /// decoder's `max_len` (one tokenizer for both).
    #[config(default = "None")]
    pub text_max_len: Option<usize>,
    /// The temporal encoder that lets the decoder caption clips (`finetune
    /// clip-caption` adds it).
    #[config(default = "None")]
    pub temporal: Option<TemporalConfig>,
}

impl EdgeVlmConfig {
    /// The preset for synthetic scenes: 64 px images, 16 px patches after a
    /// two-layer convolutional stem, width 128.
    pub fn synthetic(vocab_size: usize) -> Self {
        Self::small(vocab_size, 64, 16, FusionKind::CrossAttention)
    }

    /// A small model with every part at width 128, trained from scratch.
    pub fn small(vocab_size: usize, image_size: usize, patch_size: usize, fusion: FusionKind) -> Self {
        let d = 128;
        // Two stride-2 3x3 convolutions before the patch projection, when the patch allows.
        let stem = if patch_size.is_multiple_of(4) {
            vec![32, 64]
        } else {
            Vec::new()
        };
        Self::new(
            ImageTowerConfig::Vit(
                VitConfig::new()
                    .with_image_size(image_size)
                    .with_patch_size(patch_size)
                    .with_d_model(d)
                    .with_stem_channels(stem),
            ),
            BertConfig::new(vocab_size).with_d_model(d),
            FusionConfig::new(d, d).with_kind(fusion),
            CaptionDecoderConfig::new(vocab_size, d).with_d_model(d),
        )
    }

    /// A minimal model for tests: everything tiny.
    pub fn tiny(vocab_size: usize) -> Self {
        let d = 32;
        Self::new(
            ImageTowerConfig::Vit(
                VitConfig::new()
                    .with_image_size(16)
                    .with_patch_size(8)
                    .with_d_model(d)
                    .with_layers(1)
                    .with_heads(2),
            ),
            BertConfig::new(vocab_size)
                .with_d_model(d)
                .with_layers(1)
                .with_heads(2)
                .with_d_intermediate(64),
            FusionConfig::new(d, d)
                .with_layers(1)
                .with_heads(2)
                .with_d_intermediate(64),
            CaptionDecoderConfig::new(vocab_size, d)
                .with_d_model(d)
                .with_layers(1)
                .with_heads(2)
                .with_d_intermediate(64)
                .with_max_len(16),
        )
        .with_d_embed(16)
    }

    /// The preset for real photos: EfficientNet-Lite0 and a pretrained BERT-family
    /// text tower (`text`, e.g. MiniLM-L6), both locked; their tokens meet at width
    /// 256 in one cross-attention layer; two-layer ITC projections over the
    /// mean-pooled towers; `decoder` writes its own vocabulary.
    pub fn photo(text: BertConfig, text_max_len: usize, decoder: CaptionDecoderConfig) -> Self {
        let d = 256;
        let fusion = FusionConfig::new(text.d_model, d)
            .with_kind(FusionKind::CrossAttention)
            .with_layers(1)
            .with_heads(6)
            .with_d_intermediate(1024);
        Self::new(
            ImageTowerConfig::EfficientNet(EfficientNetConfig::new().with_classifier(false)),
            text,
            fusion,
            decoder,
        )
        .with_d_embed(256)
        .with_image_width(Some(d))
        .with_text_pooling(TextPooling::Mean)
        .with_itc_residual(true)
        .with_mim(false)
        .with_lock_image(true)
        .with_lock_text(true)
        .with_decoder_vocabulary(true)
        .with_text_max_len(Some(text_max_len))
    }

    /// Width of the image tokens fusion and decoder read.
    pub fn d_image(&self) -> usize {
        self.image_width.unwrap_or(self.vision.width())
    }

    /// Longest text the text tower reads.
    pub fn text_len(&self) -> usize {
        self.text_max_len.unwrap_or(self.decoder.max_len)
    }

    pub fn init(&self, device: &Device) -> EdgeVlm {
        let d_tower = self.vision.width();
        let d_text = self.text.d_model;
        EdgeVlm {
            vision: self.vision.init(device),
            image_adapter: self
                .image_width
                .filter(|&d| d != d_tower)
                .map(|d| ImageAdapter::new(d_tower, d, device)),
            text: self.text.init(device),
            fusion: self.fusion.init(device),
            itc: ItcHeadConfig::new(d_tower, d_text, self.d_embed)
                .with_residual(self.itc_residual)
                .init(device),
            itm: LinearConfig::new(d_text, 2).init(device),
            mlm: MlmHead::new(d_text, self.text.vocab_size, device),
            // Parts are drawn in this order from the seeded generator: it fixes a run.
            mim: match (&self.vision, self.mim) {
                (ImageTowerConfig::Vit(vit), true) => Some(MimHead::new(
                    vit.d_model,
                    d_text,
                    vit.heads,
                    3 * vit.patch_size.pow(2),
                    device,
                )),
                _ => None,
            },
            decoder: self.decoder.init(device),
            grid: self.grid.as_ref().map(|grid| grid.init(device)),
            spatial_mlm: (self.spatial_mlm && self.grid.is_some())
                .then(|| self.spatial_vqa_with(self.text.vocab_size).init(device)),
            temporal: self.temporal.as_ref().map(|temporal| temporal.init(device)),
            vqa: None,
            spatial_vqa: None,
            text_pooling: self.text_pooling,
            vqa_question_only: self.vqa_question_only,
        }
        .with_vqa_heads(self, device)
        .locked(self)
    }

    /// A temporal encoder that fits this model: clips of `frames` frames.
    pub fn default_temporal(&self, frames: usize) -> TemporalConfig {
        TemporalConfig::new(self.d_image()).with_frames(frames)
    }

    /// A grid encoder that fits this model: the images' size, the image tokens' width.
    pub fn default_grid(&self) -> GridEncoderConfig {
        GridEncoderConfig::new(self.vision.image_size()).with_d_model(self.d_image())
    }

    /// This configuration with VQA heads of `kind`; the spatial head brings a grid
    /// encoder if the model has none.
    pub fn with_vqa_head_kind(mut self, kind: VqaHeadKind) -> Self {
        if kind == VqaHeadKind::Spatial && self.grid.is_none() {
            self.grid = Some(self.default_grid());
        }
        self.vqa_head = kind;
        self
    }

    /// The fused VQA head's counting read-out, when [`Self::vqa_count`] asks for one.
    pub fn count_readout(&self) -> Option<CountReadoutConfig> {
        let d_text = self.text.d_model;
        self.vqa_count
            .then(|| CountReadoutConfig::new(self.d_image(), d_text, 2 * d_text))
    }

    /// The spatial VQA head's configuration for this model.
    ///
    /// Panics without a grid encoder (see [`Self::with_vqa_head_kind`]).
    pub fn spatial_vqa(&self) -> SpatialVqaConfig {
        self.spatial_vqa_with(self.answers)
    }

    fn spatial_vqa_with(&self, answers: usize) -> SpatialVqaConfig {
        let grid = self
            .grid
            .as_ref()
            .expect("the spatial VQA head reads a grid encoder");
        SpatialVqaConfig::new(self.text.d_model, answers)
            .with_d_model(grid.d_model)
            .with_grid(grid.grid)
    }

    /// What the model card says about the architecture.
    pub fn describe(&self) -> String {
        let lock = |locked: bool| if locked { "locked" } else { "trained" };
        let t = &self.text;
        let decoder = &self.decoder;
        format!(
            "- image tower: {image} ({image_lock}){adapter}\n\
             - text tower: BERT layout ({text_lock}, width {dt}, {lt} layers, vocabulary {vocab}), \
             {pooling:?}-pooled for ITC\n\
             - fusion: {fusion:?}, {lf} layers; ITC width {embed}{residual}\n\
             - caption decoder: {ld} layers, width {dd}, vocabulary {dv}{own}\n",
            image = self.vision.describe(),
            image_lock = lock(self.lock_image),
            adapter = match self.image_width {
                Some(d) if d != self.vision.width() => format!(", tokens projected to width {d}"),
                _ => String::new(),
            },
            text_lock = lock(self.lock_text),
            dt = t.d_model,
            lt = t.layers,
            vocab = t.vocab_size,
            pooling = self.text_pooling,
            fusion = self.fusion.kind,
            lf = self.fusion.layers,
            embed = self.d_embed,
            residual = if self.itc_residual {
                " (two-layer projections)"
            } else {
                ""
            },
            ld = decoder.layers,
            dd = decoder.d_model,
            dv = decoder.vocab_size,
            own = if self.decoder_vocabulary {
                " (its own)"
            } else {
                " (the text tower's)"
            },
        )
    }
}

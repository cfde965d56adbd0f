//! The edgevlm model: image encoder + text encoder + fusion, with the pretraining
//! heads (ITC, ITM, MLM, masked image features) and the task heads (caption
//! decoder, VQA classifier). This file only wires the components together.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Int, Tensor};

use super::bert::Bert;
use super::config::{EdgeVlmConfig, TextPooling, VqaHeadKind};
use super::decoder::CaptionDecoder;
use super::fusion::Fusion;
use super::grid::GridEncoder;
pub use super::heads::mean_over_tokens;
use super::heads::{sentence_embedding, ItcHead, MimHead, MlmHead, VqaHead};
use super::image_tower::{ImageAdapter, ImageTower};
use super::spatial::SpatialVqa;
use super::temporal::TemporalEncoder;

#[derive(Module, Debug)]
pub struct EdgeVlm {
    pub vision: ImageTower,
    /// The tower's tokens to the width fusion and decoder read, when they differ.
    pub image_adapter: Option<ImageAdapter>,
    pub text: Bert,
    pub fusion: Fusion,
    pub itc: ItcHead,
    pub itm: Linear,
    pub mlm: MlmHead,
    pub mim: Option<MimHead>,
    pub decoder: CaptionDecoder,
    pub grid: Option<GridEncoder>,
    pub spatial_mlm: Option<SpatialVqa>,
    pub vqa: Option<VqaHead>,
    pub spatial_vqa: Option<SpatialVqa>,
    pub temporal: Option<TemporalEncoder>,
    #[module(skip)]
    pub text_pooling: TextPooling,
    /// See [`EdgeVlmConfig::vqa_question_only`].
    #[module(skip)]
    pub vqa_question_only: bool,
}

/// First position of a sequence: `[batch, len, d]` → `[batch, d]`.
pub fn first_token(x: Tensor<3>) -> Tensor<2> {
    let [batch, _, d] = x.dims();
    x.slice([0..batch, 0..1]).reshape([batch, d])
}

impl EdgeVlm {
    /// Fresh VQA heads as `config` asks (`answers`, `vqa_head`), replacing any the
    /// model had: the one of its kind, none of the other. A grid encoder the
    /// config names and the model lacks comes fresh too; one it has is kept.
    pub fn with_vqa_heads(mut self, config: &EdgeVlmConfig, device: &Device) -> Self {
        (self.vqa, self.spatial_vqa) = (None, None);
        self.with_vqa_heads_keeping(config, false, device)
    }

    /// [`Self::with_vqa_heads`] for a model that may answer already: a head it has
    /// of the wanted kind is kept (what it learned carries over to the next task),
    /// with its answer layer too when `classes_kept` (the answers are the same),
    /// else with a fresh one over `config.answers` classes.
    pub fn with_vqa_heads_keeping(
        mut self,
        config: &EdgeVlmConfig,
        classes_kept: bool,
        device: &Device,
    ) -> Self {
        if self.grid.is_none() {
            self.grid = config.grid.as_ref().map(|grid| grid.init(device));
        }
        let wanted = |kind| config.answers > 0 && config.vqa_head == kind;
        let (fused, spatial) = (self.vqa.take(), self.spatial_vqa.take());
        let count = config.count_readout();
        self.vqa = wanted(VqaHeadKind::Fused).then(|| match fused {
            Some(head) if classes_kept => head.with_count(count.as_ref(), device),
            Some(head) => head
                .with_answers(config.answers, device)
                .with_count(count.as_ref(), device),
            None => VqaHead::new(config.text.d_model, config.answers, count.as_ref(), device),
        });
        // Else the spatial head starts from the spatial MLM head when pretraining made
        // one: all but the answer layer, whose classes differ.
        self.spatial_vqa = wanted(VqaHeadKind::Spatial).then(|| match (spatial, &self.spatial_mlm) {
            (Some(head), _) if classes_kept => head,
            (Some(head), _) => head.with_answers(config.answers, device),
            (None, Some(pretrained)) => pretrained.clone().with_answers(config.answers, device),
            (None, None) => config.spatial_vqa().init(device),
        });
        if !config.spatial_mlm {
            self.spatial_mlm = None;
        }
        self.vqa_question_only = config.vqa_question_only;
        self
    }

    /// The temporal encoder `config` names, fresh when the model has none.
    pub fn with_temporal(mut self, config: &EdgeVlmConfig, device: &Device) -> Self {
        if self.temporal.is_none() {
            self.temporal = config.temporal.as_ref().map(|temporal| temporal.init(device));
        }
        self
    }

    /// A batch of clips' frames `[clips * frames, 3, s, s]` (each clip's frames in
    /// order) → the memory the decoder reads `[clips, frames * n, d_image]`.
    ///
    /// Panics if the model has no temporal encoder.
    pub fn encode_clip(&self, frames: Tensor<4>) -> Tensor<3> {
        self.clip_memory(self.encode_image(frames))
    }

    /// [`Self::encode_clip`] from the frames' image tokens `[clips * frames, n, d_image]`.
    ///
    /// Panics if the model has no temporal encoder.
    pub fn clip_memory(&self, frame_tokens: Tensor<3>) -> Tensor<3> {
        self.temporal
            .as_ref()
            .expect("model has no temporal encoder: fine-tune it with `finetune clip-caption` first")
            .forward(frame_tokens)
    }

    /// The towers locked as `config` asks: their weights stay as loaded.
    pub fn locked(mut self, config: &EdgeVlmConfig) -> Self {
        if config.lock_image {
            self.vision = self.vision.freeze();
        }
        if config.lock_text {
            self.text = self.text.freeze();
        }
        self
    }

    /// `[batch, 3, s, s]` → the image tower's tokens `[batch, n, d_tower]`.
    pub fn tower_tokens(&self, images: Tensor<4>) -> Tensor<3> {
        self.vision.forward(images)
    }

    /// The tower's tokens at the width fusion and decoder read: `[batch, n, d_image]`.
    pub fn image_tokens(&self, tower_tokens: Tensor<3>) -> Tensor<3> {
        match &self.image_adapter {
            Some(adapter) => adapter.forward(tower_tokens),
            None => tower_tokens,
        }
    }

    /// The image tokens the fused VQA head reads: zeros for the question-only
    /// baseline, made without running the adapter (a training step then keeps no
    /// graph for a branch that no gradient reaches).
    pub fn vqa_image_tokens(&self, tower_tokens: Tensor<3>) -> Tensor<3> {
        if !self.vqa_question_only {
            return self.image_tokens(tower_tokens);
        }
        let [batch, tokens, width] = tower_tokens.dims();
        let width = self
            .image_adapter
            .as_ref()
            .map_or(width, |adapter| adapter.proj.weight.dims()[1]);
        Tensor::zeros([batch, tokens, width], &tower_tokens.device())
    }

    /// `[batch, 3, s, s]` → image tokens `[batch, n, d_image]`.
    pub fn encode_image(&self, images: Tensor<4>) -> Tensor<3> {
        self.image_tokens(self.tower_tokens(images))
    }

    /// Token ids and mask `[batch, len]` → text states `[batch, len, d_text]`.
    pub fn encode_text(&self, ids: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<3> {
        self.text.forward(ids, mask)
    }

    /// Fused [CLS] for a (text, image) pair: `[batch, d_text]`.
    pub fn fused_cls(&self, text: Tensor<3>, mask: Tensor<2>, image: Tensor<3>) -> Tensor<2> {
        first_token(self.fusion.forward(text, mask, image))
    }

    /// VQA answer logits `[batch, answers]`.
    ///
    /// Panics if the model has no VQA head (`answers == 0`).
    pub fn vqa_logits(&self, images: Tensor<4>, ids: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<2> {
        self.vqa_logits_from(self.encode_vqa_image(images), ids, mask)
    }

    /// What the VQA head reads of each image: the image tokens for the fused head,
    /// the grid cells with their question-independent projections for the spatial
    /// one ([`SpatialVqa::cells`]).
    ///
    /// Panics if the spatial head has no grid encoder.
    pub fn encode_vqa_image(&self, images: Tensor<4>) -> Tensor<3> {
        match (&self.spatial_vqa, &self.grid) {
            (Some(spatial), Some(grid)) => spatial.cells(grid.forward(images)),
            (Some(_), None) => panic!("the spatial VQA head reads a grid encoder"),
            (None, _) => self.vqa_image_tokens(self.tower_tokens(images)),
        }
    }

    /// VQA answer logits from already encoded images ([`Self::encode_vqa_image`],
    /// one row per question).
    pub fn vqa_logits_from(
        &self,
        image_tokens: Tensor<3>,
        ids: Tensor<2, Int>,
        mask: Tensor<2>,
    ) -> Tensor<2> {
        let text = self.encode_text(ids, mask.clone());
        self.answer_logits(image_tokens, text, mask)
    }

    /// VQA answer logits from encoded images ([`Self::encode_vqa_image`]) and
    /// already encoded questions `[batch, len, d_text]` (one row per question).
    ///
    /// Panics if the model has no VQA head (`answers == 0`).
    pub fn answer_logits(&self, image_tokens: Tensor<3>, question: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
        if let Some(spatial) = &self.spatial_vqa {
            return spatial.forward(image_tokens, mean_over_tokens(question, mask));
        }
        let head = self
            .vqa
            .as_ref()
            .expect("model has no VQA head: fine-tune it for VQA first");
        let cls = self.fused_cls(question.clone(), mask.clone(), image_tokens.clone());
        head.forward(cls, image_tokens, question, mask)
    }

    /// [`Self::answer_logits`], and for a spatial head where it looked for the
    /// answer: its weights over the grid's cells `[batch, grid²]`
    /// ([`SpatialVqa::forward_with_focus`]); `None` for the fused head.
    pub fn answer_logits_with_focus(
        &self,
        image_tokens: Tensor<3>,
        question: Tensor<3>,
        mask: Tensor<2>,
    ) -> (Tensor<2>, Option<Tensor<2>>) {
        match &self.spatial_vqa {
            Some(spatial) => {
                let (logits, focus) =
                    spatial.forward_with_focus(image_tokens, mean_over_tokens(question, mask));
                (logits, Some(focus))
            }
            None => (self.answer_logits(image_tokens, question, mask), None),
        }
    }

    /// ITC embeddings of images from the tower's tokens ([`Self::tower_tokens`]):
    /// `[batch, d_embed]`, unit length.
    pub fn image_embedding(&self, tower_tokens: Tensor<3>) -> Tensor<2> {
        self.itc.embed_image(self.vision.pool(tower_tokens))
    }

    /// The text vector ITC embeds: `[batch, len, d_text]` → `[batch, d_text]`.
    pub fn pool_text(&self, text_states: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
        match self.text_pooling {
            TextPooling::Cls => first_token(text_states),
            TextPooling::Mean => sentence_embedding(text_states, mask),
        }
    }

    /// ITC embeddings of texts: `[batch, d_embed]`, unit length.
    pub fn text_embedding(&self, text_states: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
        self.itc.embed_text(self.pool_text(text_states, mask))
    }

    /// ITM probability that each (text, image) pair matches: `[batch]`.
    pub fn match_probability(&self, text: Tensor<3>, mask: Tensor<2>, image: Tensor<3>) -> Tensor<1> {
        let logits = self.itm.forward(self.fused_cls(text, mask, image));
        let batch = logits.dims()[0];
        burn::tensor::activation::softmax(logits, 1)
            .slice([0..batch, 1..2])
            .reshape([batch])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fusion::FusionKind;
    use crate::model::params::{max_difference, named_parameters};
    use burn::tensor::{Distribution, TensorData};

    fn inputs(device: &Device) -> (Tensor<4>, Tensor<2, Int>, Tensor<2>) {
        let images = Tensor::<4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), device);
        let ids =
            Tensor::<2, Int>::from_data(TensorData::new(vec![2i64, 7, 9, 3, 2, 5, 3, 0], [2, 4]), device);
        let mask = Tensor::<2>::from_data(
            TensorData::new(vec![1f32, 1., 1., 1., 1., 1., 1., 0.], [2, 4]),
            device,
        );
        (images, ids, mask)
    }

    #[test]
    fn tiny_model_shapes_and_finite_outputs() {
        let device = Device::flex();
        for kind in [FusionKind::CrossAttention, FusionKind::Linear] {
            let mut cfg = EdgeVlmConfig::tiny(20).with_answers(5);
            cfg.fusion.kind = kind;
            let model = cfg.init(&device);
            let (images, ids, mask) = inputs(&device);
            let image = model.encode_image(images.clone());
            assert_eq!(image.dims(), [2, 5, 32], "cls + 2x2 patches");
            let text = model.encode_text(ids.clone(), mask.clone());
            assert_eq!(text.dims(), [2, 4, 32]);
            let logits = model.vqa_logits(images, ids.clone(), mask.clone());
            assert_eq!(logits.dims(), [2, 5]);
            let p = model.match_probability(text, mask, image.clone());
            let p: Vec<f32> = p.into_data().try_to_vec().unwrap();
            assert!(p.iter().all(|v| (0.0..=1.0).contains(v)), "{p:?}");
            let caption = model.decoder.forward(ids, image);
            assert_eq!(caption.dims(), [2, 4, 20]);
            assert!(caption.abs().max().into_scalar::<f32>().is_finite());
        }
    }

    /// VQA fine-tuning takes the spatial MLM head over whole but for its answer
    /// layer, and keeps the pretrained grid encoder.
    #[test]
    fn the_spatial_vqa_head_starts_from_the_spatial_mlm_head() {
        let device = Device::flex();
        device.seed(7);
        let mut cfg = EdgeVlmConfig::tiny(20);
        cfg.grid = Some(cfg.default_grid());
        cfg.spatial_mlm = true;
        let pretrained = cfg.init(&device);
        let words = pretrained.spatial_mlm.clone().unwrap();
        assert_eq!(words.answer.weight.val().dims(), [256, 20], "over the vocabulary");

        let mut vqa_cfg = cfg
            .clone()
            .with_answers(4)
            .with_vqa_head_kind(VqaHeadKind::Spatial);
        vqa_cfg.spatial_mlm = false;
        let model = pretrained.clone().with_vqa_heads(&vqa_cfg, &device);
        assert!(model.spatial_mlm.is_none());
        let head = model.spatial_vqa.as_ref().unwrap();
        assert_eq!(head.answer.weight.val().dims(), [256, 4]);
        let same = |a: &Linear, b: &Linear| {
            let (a, b) = (a.weight.val(), b.weight.val());
            (a - b).abs().max().into_scalar::<f32>() == 0.0
        };
        assert!(same(&head.anchor_query, &words.anchor_query));
        assert!(same(&head.answer_hidden, &words.answer_hidden));
        let grid = |m: &EdgeVlm| m.grid.as_ref().unwrap().cell.weight.val();
        assert_eq!(
            (grid(&model) - grid(&pretrained))
                .abs()
                .max()
                .into_scalar::<f32>(),
            0.0
        );
        // From scratch the head is fresh, not the pretrained one.
        let fresh = vqa_cfg.init(&device);
        assert!(!same(
            &fresh.spatial_vqa.unwrap().anchor_query,
            &words.anchor_query
        ));
    }

    /// The next task's fine-tuning keeps a trained head: whole when the answers are
    /// the same, with a fresh answer layer when they are not.
    #[test]
    fn a_trained_head_carries_over_to_the_next_task() {
        let device = Device::flex();
        device.seed(8);
        let cfg = EdgeVlmConfig::tiny(20)
            .with_answers(6)
            .with_vqa_head_kind(VqaHeadKind::Spatial);
        let vqa = cfg.init(&device);
        let trained = vqa.spatial_vqa.clone().unwrap();
        let same = |a: &Linear, b: &Linear| {
            let (a, b) = (a.weight.val(), b.weight.val());
            a.dims() == b.dims() && (a - b).abs().max().into_scalar::<f32>() == 0.0
        };
        let kept = vqa.clone().with_vqa_heads_keeping(&cfg, true, &device);
        let head = kept.spatial_vqa.as_ref().unwrap();
        assert!(same(&head.answer, &trained.answer) && same(&head.anchor_query, &trained.anchor_query));
        let verdicts = cfg.clone().with_answers(2);
        let relabelled = vqa.clone().with_vqa_heads_keeping(&verdicts, false, &device);
        let head = relabelled.spatial_vqa.as_ref().unwrap();
        assert_eq!(head.answer.weight.val().dims()[1], 2);
        assert!(same(&head.scored_hidden, &trained.scored_hidden));
        // `with_vqa_heads` starts over.
        let fresh = vqa.with_vqa_heads(&cfg, &device);
        assert!(!same(
            &fresh.spatial_vqa.unwrap().anchor_query,
            &trained.anchor_query
        ));
    }

    #[test]
    fn save_and_load_round_trip() {
        let device = Device::flex();
        let cfg = EdgeVlmConfig::tiny(20).with_answers(3);
        let model = cfg.init(&device);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.bpk");
        model.clone().save_file(&path).unwrap();
        let loaded = cfg.init(&device).try_load_file(&path).unwrap();
        assert_eq!(max_difference(&model, &loaded).unwrap(), 0.0);
        let names: Vec<String> = named_parameters(&model).into_iter().map(|p| p.path).collect();
        assert!(
            names.iter().any(|n| n == "text.word_embeddings.weight"),
            "{names:?}"
        );
        // A record of another architecture is refused, not half-loaded.
        let wrong = EdgeVlmConfig::tiny(21).init(&device);
        assert!(wrong.try_load_file(&path).is_err());
    }
}

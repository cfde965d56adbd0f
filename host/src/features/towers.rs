//! The frozen pretrained towers and the features they give the trained heads:
//! EfficientNet-Lite0's 7x7 grid of 1280-wide tokens per image, MiniLM's token
//! states and sentence embedding per text.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use edgevlm_shared::PreprocessConfig;
use indicatif::{ProgressBar, ProgressStyle};

use super::cache::{self, ImageFeatures, ImageHeader, TextFeatures, TextHeader};
use crate::data::store::ImageStore;
use crate::error::{Error, Result};
use crate::model::efficientnet::EfficientNet;
use crate::model::heads::sentence_embedding;
use crate::model::image_tower::ImageTower;
use crate::model::pretrained::{load_bert, load_efficientnet, PretrainedBert};
use crate::model::saved::{ModelMeta, WEIGHTS_FILE};
use crate::model::EdgeVlm;

pub const IMAGE_TOWER: &str = "efficientnet-lite0";
pub const TEXT_TOWER: &str = "minilm-l6";
/// Longest text the text tower reads, special tokens included.
pub const TEXT_MAX_LEN: usize = 40;
/// Images per tower forward pass.
const IMAGE_BATCH: usize = 32;
const TEXT_BATCH: usize = 128;

/// How an image is shown to the image tower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Original,
    /// Flipped left to right.
    Mirrored,
}

impl View {
    /// What a cache of this view adds to its file label and key.
    fn suffix(self) -> &'static str {
        match self {
            View::Original => "",
            View::Mirrored => "-mirrored",
        }
    }
}

pub struct Towers {
    pub image: EfficientNet,
    pub text: PretrainedBert,
    /// sha256 of the files the towers and the tokenizer were read from, part of
    /// every cache key.
    pub image_sha: String,
    pub text_sha: String,
    pub tokenizer_sha: String,
}

impl Towers {
    /// Loads `DIR/efficientnet-lite0` and `DIR/minilm-l6` (as `edgevlm models fetch`
    /// lays them out), frozen.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        Self::load_from(&dir.join(IMAGE_TOWER), &dir.join(TEXT_TOWER), device)
    }

    /// The EfficientNet-Lite0 weights folder and any HF BERT-family model folder
    /// (`config.json`, `model.safetensors`, `tokenizer.json`), frozen.
    pub fn load_from(image_dir: &Path, text_dir: &Path, device: &Device) -> Result<Self> {
        for d in [image_dir, text_dir] {
            if !d.join("model.safetensors").is_file() {
                return Err(Error::record(
                    d,
                    "no model.safetensors: run `edgevlm models fetch` (or models/fetch-pretrained.sh)",
                ));
            }
        }
        Ok(Self {
            image: load_efficientnet(image_dir, false, device)?.freeze(),
            text: {
                let mut bert = load_bert(text_dir, TEXT_MAX_LEN, device)?;
                bert.model = bert.model.freeze();
                bert
            },
            image_sha: cache::file_sha256(&image_dir.join("model.safetensors"))?,
            text_sha: cache::file_sha256(&text_dir.join("model.safetensors"))?,
            tokenizer_sha: cache::file_sha256(&text_dir.join("tokenizer.json"))?,
        })
    }

    /// The locked towers of a model folder's model (the photo preset's): keyed by
    /// the folder's weight file and tokenizer. `None` when its image tower is not
    /// EfficientNet-Lite0 or either tower trains.
    pub fn of_model(model: &EdgeVlm, meta: &ModelMeta, dir: &Path) -> Result<Option<Self>> {
        let ImageTower::EfficientNet(image) = &model.vision else {
            return Ok(None);
        };
        if !(meta.config.lock_image && meta.config.lock_text) {
            return Ok(None);
        }
        let weights = cache::file_sha256(&dir.join(WEIGHTS_FILE))?;
        Ok(Some(Self {
            image: image.clone(),
            text: PretrainedBert {
                config: meta.config.text.clone(),
                model: model.text.clone(),
                tokenizer: meta.tokenizer.clone(),
            },
            image_sha: weights.clone(),
            text_sha: weights,
            tokenizer_sha: cache::file_sha256(&dir.join("tokenizer.json"))?,
        }))
    }

    /// `model` with these towers in place of its own (the photo preset's, freshly
    /// initialised), locked.
    pub fn install(&self, mut model: EdgeVlm) -> EdgeVlm {
        model.vision = ImageTower::EfficientNet(self.image.clone());
        model.text = self.text.model.clone();
        model
    }

    /// EfficientNet-Lite's own input scaling, (x - 127) / 128, at 224 px.
    pub fn preprocess() -> PreprocessConfig {
        PreprocessConfig {
            image_size: 224,
            mean: [127.0 / 255.0; 3],
            std: [128.0 / 255.0; 3],
        }
    }

    pub fn d_image(&self) -> usize {
        1280
    }

    pub fn d_text(&self) -> usize {
        self.text.config.d_model
    }

    /// Grid tokens of stored images: `[n, 49, 1280]` at 224 px.
    pub fn image_tokens(&self, store: &ImageStore, indices: &[usize], device: &Device) -> Tensor<3> {
        self.view_tokens(store, indices, View::Original, device)
    }

    /// Grid tokens of stored images seen as `view`.
    pub fn view_tokens(
        &self,
        store: &ImageStore,
        indices: &[usize],
        view: View,
        device: &Device,
    ) -> Tensor<3> {
        let s = store.config().image_size as usize;
        let mut pixels = Tensor::<4>::from_data(
            TensorData::new(store.batch(indices), [indices.len(), 3, s, s]),
            device,
        );
        if view == View::Mirrored {
            pixels = pixels.flip([3]);
        }
        EfficientNet::grid(self.image.forward_features(pixels))
    }

    /// Token states `[n, len, 384]`, their mask `[n, len]` and the unit
    /// mean-pooled sentence embeddings `[n, 384]` of tokenized texts.
    pub fn encode_ids(
        &self,
        ids: &[u32],
        mask: &[u32],
        n: usize,
        len: usize,
        device: &Device,
    ) -> (Tensor<3>, Tensor<2>, Tensor<2>) {
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(ids.iter().map(|&i| i64::from(i)).collect::<Vec<_>>(), [n, len]),
            device,
        );
        let mask = Tensor::<2>::from_data(
            TensorData::new(mask.iter().map(|&m| m as f32).collect::<Vec<_>>(), [n, len]),
            device,
        );
        let states = self.text.model.forward(ids, mask.clone());
        let sentences = sentence_embedding(states.clone(), mask.clone());
        (states, mask, sentences)
    }

    /// Sentence embeddings of texts (what ITC's text side reads).
    pub fn sentences(&self, texts: &[String], device: &Device) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(TEXT_BATCH) {
            let enc = self.text.tokenizer.encode_batch(chunk)?;
            let (_, _, sentences) = self.encode_ids(&enc.ids, &enc.mask, enc.batch, enc.seq_len, device);
            let flat = floats(sentences.into_data())?;
            out.extend(flat.chunks(self.d_text()).map(<[f32]>::to_vec));
        }
        Ok(out)
    }

    fn image_key(&self, names: &[String], sizes: &[u64], view: View) -> String {
        let listing: Vec<String> = names.iter().zip(sizes).map(|(n, s)| format!("{n}:{s}")).collect();
        cache::key(&[
            &format!("image-grid-v1{}", view.suffix()),
            &self.image_sha,
            &serde_json::to_string(&Self::preprocess()).expect("plain data"),
            &listing.join("\n"),
        ])
    }

    /// Grid tokens of every image, from `cache_dir` when an up-to-date cache exists,
    /// else computed (with a progress bar) and stored there.
    pub fn cached_images(
        &self,
        paths: &[PathBuf],
        cache_dir: &Path,
        label: &str,
        device: &Device,
    ) -> Result<ImageFeatures> {
        self.cached_view(paths, cache_dir, label, View::Original, device)
    }

    /// Grid tokens of every image seen as `view`, cached like [`Self::cached_images`].
    pub fn cached_view(
        &self,
        paths: &[PathBuf],
        cache_dir: &Path,
        label: &str,
        view: View,
        device: &Device,
    ) -> Result<ImageFeatures> {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        let sizes = paths
            .iter()
            .map(|p| std::fs::metadata(p).map(|m| m.len()).map_err(|e| Error::io(p, e)))
            .collect::<Result<Vec<_>>>()?;
        let label = format!("{label}{}", view.suffix());
        let file = cache::path(
            cache_dir,
            &format!("{label}-{IMAGE_TOWER}"),
            &self.image_key(&names, &sizes, view),
        );
        if file.is_file() {
            eprintln!("{label}: image features from {}", file.display());
            return cache::load_images(&file);
        }
        let store = ImageStore::load(paths.to_vec(), &Self::preprocess())?;
        let bar = progress(paths.len(), &format!("{label}: {IMAGE_TOWER} features"));
        let mut values = Vec::new();
        let mut tokens = 0;
        let all: Vec<usize> = (0..paths.len()).collect();
        for chunk in all.chunks(IMAGE_BATCH) {
            let t = self.view_tokens(&store, chunk, view, device);
            tokens = t.dims()[1];
            values.extend(floats(t.into_data())?.into_iter().map(cache::to_bf16));
            bar.inc(chunk.len() as u64);
        }
        bar.finish();
        let features = ImageFeatures::new(
            ImageHeader {
                images: names,
                tokens,
                width: self.d_image(),
            },
            values,
        );
        cache::save_images(&file, &features)?;
        Ok(features)
    }

    /// Token states and sentence embeddings of every text, cached like images.
    pub fn cached_texts(
        &self,
        texts: &[String],
        cache_dir: &Path,
        label: &str,
        device: &Device,
    ) -> Result<TextFeatures> {
        let key = cache::key(&[
            "text-states-v1",
            &self.text_sha,
            &self.tokenizer_sha,
            &TEXT_MAX_LEN.to_string(),
            &texts.join("\n"),
        ]);
        let file = cache::path(cache_dir, &format!("{label}-{TEXT_TOWER}"), &key);
        if file.is_file() {
            eprintln!("{label}: text features from {}", file.display());
            return cache::load_texts(&file);
        }
        let d = self.d_text();
        let bar = progress(texts.len(), &format!("{label}: {TEXT_TOWER} features"));
        // Batches of similar lengths waste little on padding; rows go back in order.
        let encoded = texts
            .iter()
            .map(|t| self.text.tokenizer.encode(t))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| encoded[i].len());
        let mut rows: Vec<(Vec<f32>, Vec<f32>)> = vec![Default::default(); texts.len()];
        for chunk in order.chunks(TEXT_BATCH) {
            let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| encoded[i].clone()).collect();
            let enc = self.text.tokenizer.pad(&batch, None);
            let (s, _, pooled) = self.encode_ids(&enc.ids, &enc.mask, enc.batch, enc.seq_len, device);
            let pooled = floats(pooled.into_data())?;
            let s = floats(s.into_data())?;
            for (row, &i) in chunk.iter().enumerate() {
                let start = row * enc.seq_len;
                rows[i] = (
                    pooled[row * d..(row + 1) * d].to_vec(),
                    s[start * d..(start + batch[row].len()) * d].to_vec(),
                );
            }
            bar.inc(chunk.len() as u64);
        }
        let (mut sentences, mut states, mut ids, mut offsets) = (Vec::new(), Vec::new(), Vec::new(), vec![0]);
        for ((pooled, state), tokens) in rows.into_iter().zip(&encoded) {
            sentences.extend(pooled);
            states.extend(state);
            ids.extend_from_slice(tokens);
            offsets.push(offsets.last().copied().unwrap_or(0) + tokens.len());
        }
        bar.finish();
        let features = TextFeatures::new(
            TextHeader {
                texts: texts.len(),
                width: d,
                offsets,
            },
            &sentences,
            &states,
            ids,
        );
        cache::save_texts(&file, &features)?;
        Ok(features)
    }
}

pub use crate::model::weights::floats;

pub fn progress(len: usize, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}<{eta_precise}] {wide_bar} {pos}/{len} {per_sec}",
        )
        .expect("static template"),
    );
    bar.set_prefix(label.to_string());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgevlm_shared::rng::SplitMix64;
    use edgevlm_shared::synth::{render, Scene};

    #[test]
    fn the_mirrored_view_is_the_flipped_photo_and_has_its_own_cache() {
        let pretrained = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/pretrained");
        assert!(
            pretrained.join(IMAGE_TOWER).is_dir(),
            "{} is missing: run models/fetch-pretrained.sh",
            pretrained.display()
        );
        let device = Device::flex();
        let towers = Towers::load_from(
            &pretrained.join(IMAGE_TOWER),
            &pretrained.join(TEXT_TOWER),
            &device,
        )
        .expect("towers load");
        let dir = tempfile::tempdir().unwrap();
        let photo = render(&Scene::generate(&mut SplitMix64::new(3), 224));
        let (original, flipped) = (dir.path().join("a.png"), dir.path().join("b.png"));
        photo.save(&original).unwrap();
        image::imageops::flip_horizontal(&photo).save(&flipped).unwrap();

        let paths = vec![original.clone(), flipped];
        let store = ImageStore::load(paths.clone(), &Towers::preprocess()).unwrap();
        let values = |view, index| -> Vec<f32> {
            floats(towers.view_tokens(&store, &[index], view, &device).into_data()).unwrap()
        };
        let mirrored = values(View::Mirrored, 0);
        let max_gap = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(max_gap(&mirrored, &values(View::Original, 1)) < 1e-4);
        assert!(max_gap(&mirrored, &values(View::Original, 0)) > 0.1);

        let cache = dir.path().join("cache");
        let plain = towers
            .cached_images(&paths[..1], &cache, "train", &device)
            .unwrap();
        let view = towers
            .cached_view(&paths[..1], &cache, "train", View::Mirrored, &device)
            .unwrap();
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 2, "one file per view");
        assert_eq!(plain.header.images, view.header.images);
        let cached = view.tokens(&[0]);
        assert!(max_gap(&cached, &mirrored) < 0.02, "bf16-rounded mirrored tokens");
    }
}

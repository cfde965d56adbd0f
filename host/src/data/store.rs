//! Decoded images held in memory for training: each image is decoded, resized and
//! cropped once (by the shared pipeline), then normalised per batch. Epochs after the
//! first cost no decoding at all.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use edgevlm_shared::preprocess::{load_image, normalize, resize_and_crop};
use edgevlm_shared::PreprocessConfig;
use image::RgbImage;
use rayon::prelude::*;

use super::error::Result;

pub struct ImageStore {
    pub paths: Vec<PathBuf>,
    images: Vec<RgbImage>,
    cfg: PreprocessConfig,
}

impl ImageStore {
    /// Decodes `paths` in parallel; fails on the first unreadable image, naming it.
    pub fn load(paths: Vec<PathBuf>, cfg: &PreprocessConfig) -> Result<Self> {
        let images = paths
            .par_iter()
            .map(|p| Ok(resize_and_crop(&load_image(p)?, cfg.image_size)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            paths,
            images,
            cfg: cfg.clone(),
        })
    }

    /// Images already in memory (resized and cropped here as from files).
    pub fn from_images(images: &[RgbImage], cfg: &PreprocessConfig) -> Self {
        Self {
            paths: (0..images.len())
                .map(|i| PathBuf::from(format!("<image {i}>")))
                .collect(),
            images: images
                .iter()
                .map(|i| resize_and_crop(i, cfg.image_size))
                .collect(),
            cfg: cfg.clone(),
        }
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    pub fn config(&self) -> &PreprocessConfig {
        &self.cfg
    }

    /// Per-channel mean and standard deviation of the stored pixels (in [0, 1]), over
    /// at most `limit` images: the statistics to normalise a dataset trained from scratch.
    pub fn channel_stats(&self, limit: usize) -> ([f32; 3], [f32; 3]) {
        let (mut sum, mut sq, mut n) = ([0f64; 3], [0f64; 3], 0f64);
        for image in self.images.iter().take(limit) {
            for p in image.pixels() {
                for c in 0..3 {
                    let v = p[c] as f64 / 255.0;
                    sum[c] += v;
                    sq[c] += v * v;
                }
                n += 1.0;
            }
        }
        let n = n.max(1.0);
        let mean = sum.map(|s| s / n);
        let std = [0, 1, 2].map(|c| (sq[c] / n - mean[c] * mean[c]).max(1e-6).sqrt());
        (mean.map(|m| m as f32), std.map(|s| s as f32))
    }

    /// The same images normalised with another config (same image size).
    pub fn with_config(mut self, cfg: PreprocessConfig) -> Self {
        assert_eq!(
            cfg.image_size, self.cfg.image_size,
            "stored crops have the old size"
        );
        self.cfg = cfg;
        self
    }

    /// Normalised CHW floats of several images, concatenated: `[n, 3, s, s]`.
    pub fn batch(&self, indices: &[usize]) -> Vec<f32> {
        let per = 3 * (self.cfg.image_size as usize).pow(2);
        let mut out = Vec::with_capacity(indices.len() * per);
        for &i in indices {
            out.extend(normalize(&self.images[i], &self.cfg).data);
        }
        out
    }
}

/// Decodes the distinct images of `paths` into a store; returns it and each path's index.
pub fn store_for(
    paths: &[PathBuf],
    preprocess: &PreprocessConfig,
) -> Result<(Arc<ImageStore>, HashMap<PathBuf, usize>)> {
    let mut unique: Vec<PathBuf> = Vec::new();
    let mut index = HashMap::new();
    for p in paths {
        if !index.contains_key(p) {
            index.insert(p.clone(), unique.len());
            unique.push(p.clone());
        }
    }
    Ok((Arc::new(ImageStore::load(unique, preprocess)?), index))
}

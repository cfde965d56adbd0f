//! Batching for training: seeded shuffling, padding, parallel image decoding and
//! a bounded prefetch queue so the trainer never waits on the disk.
//!
//! A [`Loader`] cuts an epoch's shuffled indices into batches; a background thread
//! builds them with a [`Batcher`] (which decodes its images in parallel) and keeps
//! up to `prefetch` ready. The order depends only on (seed, epoch), so a resumed
//! run sees exactly the batches the interrupted one would have.

use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use edgevlm_shared::rng::SplitMix64;
use edgevlm_shared::{preprocess_file, EncodedBatch, PreprocessConfig, TextTokenizer};
use rayon::prelude::*;

use super::error::Result;

/// Builds one batch from dataset indices.
pub trait Batcher: Send + Sync + 'static {
    type Batch: Send + 'static;
    fn batch(&self, indices: &[usize]) -> Result<Self::Batch>;
}

/// The visiting order of `len` items in `epoch`: a seeded permutation, or 0..len.
pub fn epoch_order(len: usize, seed: u64, epoch: u64, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    if shuffle {
        SplitMix64::fork(seed, epoch).shuffle(&mut order);
    }
    order
}

#[derive(Debug, Clone)]
pub struct LoaderConfig {
    pub batch_size: usize,
    pub seed: u64,
    pub shuffle: bool,
    /// Drop a last, smaller batch (keeps batch statistics even in training).
    pub drop_last: bool,
    /// Batches built ahead of the consumer.
    pub prefetch: usize,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            batch_size: 32,
            seed: 0,
            shuffle: true,
            drop_last: false,
            prefetch: 4,
        }
    }
}

pub struct Loader<B: Batcher> {
    batcher: Arc<B>,
    len: usize,
    cfg: LoaderConfig,
}

impl<B: Batcher> Loader<B> {
    pub fn new(batcher: B, len: usize, cfg: LoaderConfig) -> Self {
        assert!(cfg.batch_size > 0, "batch_size must be positive");
        Self {
            batcher: Arc::new(batcher),
            len,
            cfg,
        }
    }

    /// Batches in one epoch.
    pub fn batches_per_epoch(&self) -> usize {
        if self.cfg.drop_last {
            self.len / self.cfg.batch_size
        } else {
            self.len.div_ceil(self.cfg.batch_size)
        }
    }

    /// The index lists of `epoch`'s batches.
    pub fn plan(&self, epoch: u64) -> Vec<Vec<usize>> {
        let order = epoch_order(self.len, self.cfg.seed, epoch, self.cfg.shuffle);
        order
            .chunks(self.cfg.batch_size)
            .take(self.batches_per_epoch())
            .map(<[usize]>::to_vec)
            .collect()
    }

    /// Iterates `epoch`'s batches, starting after `skip` of them (for resuming).
    pub fn epoch(&self, epoch: u64, skip: usize) -> Prefetch<B::Batch> {
        let plan: Vec<Vec<usize>> = self.plan(epoch).into_iter().skip(skip).collect();
        let (tx, rx) = sync_channel(self.cfg.prefetch.max(1));
        let batcher = Arc::clone(&self.batcher);
        let worker = std::thread::spawn(move || {
            for indices in plan {
                // A closed receiver means the consumer stopped early: just end.
                if tx.send(batcher.batch(&indices)).is_err() {
                    return;
                }
            }
        });
        Prefetch {
            rx: Some(rx),
            worker: Some(worker),
        }
    }
}

/// Batches as they become ready, in plan order.
pub struct Prefetch<T> {
    rx: Option<Receiver<Result<T>>>,
    worker: Option<JoinHandle<()>>,
}

impl<T> Iterator for Prefetch<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Self::Item> {
        self.rx.as_ref()?.recv().ok()
    }
}

impl<T> Drop for Prefetch<T> {
    fn drop(&mut self) {
        drop(self.rx.take());
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Images with one text each, e.g. a caption or a question.
#[derive(Debug, Clone)]
pub struct ImageTextBatch {
    /// `[batch, 3, size, size]`, preprocessed by the shared pipeline.
    pub images: Vec<f32>,
    pub image_size: usize,
    pub tokens: EncodedBatch,
    /// The dataset indices in this batch.
    pub indices: Vec<usize>,
}

/// Decodes images (in parallel) and tokenizes texts for (image, text) pairs.
pub struct ImageTextBatcher {
    pub items: Vec<(PathBuf, String)>,
    pub preprocess: PreprocessConfig,
    pub tokenizer: TextTokenizer,
}

impl Batcher for ImageTextBatcher {
    type Batch = ImageTextBatch;

    fn batch(&self, indices: &[usize]) -> Result<ImageTextBatch> {
        let tensors = indices
            .par_iter()
            .map(|&i| preprocess_file(&self.items[i].0, &self.preprocess))
            .collect::<Result<Vec<_>, _>>()?;
        let texts: Vec<&str> = indices.iter().map(|&i| self.items[i].1.as_str()).collect();
        Ok(ImageTextBatch {
            images: tensors.into_iter().flat_map(|t| t.data).collect(),
            image_size: self.preprocess.image_size as usize,
            tokens: self.tokenizer.encode_batch(&texts)?,
            indices: indices.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::write_png;

    struct Echo;
    impl Batcher for Echo {
        type Batch = Vec<usize>;
        fn batch(&self, indices: &[usize]) -> Result<Vec<usize>> {
            Ok(indices.to_vec())
        }
    }

    #[test]
    fn epochs_are_seeded_permutations_and_resume_exactly() {
        let cfg = LoaderConfig {
            batch_size: 4,
            seed: 9,
            ..Default::default()
        };
        let loader = Loader::new(Echo, 10, cfg.clone());
        assert_eq!(loader.batches_per_epoch(), 3);
        let e0: Vec<Vec<usize>> = loader.epoch(0, 0).map(|b| b.unwrap()).collect();
        let mut seen: Vec<usize> = e0.concat();
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert_eq!(e0, loader.plan(0));
        assert_ne!(loader.plan(0), loader.plan(1));
        assert_eq!(Loader::new(Echo, 10, cfg.clone()).plan(1), loader.plan(1));
        let resumed: Vec<Vec<usize>> = loader.epoch(0, 2).map(|b| b.unwrap()).collect();
        assert_eq!(resumed, e0[2..]);
        let dropped = Loader::new(
            Echo,
            10,
            LoaderConfig {
                drop_last: true,
                ..cfg
            },
        );
        assert_eq!(dropped.plan(0).len(), 2);
    }

    #[test]
    fn stopping_early_does_not_hang() {
        let loader = Loader::new(
            Echo,
            1000,
            LoaderConfig {
                batch_size: 1,
                prefetch: 2,
                ..Default::default()
            },
        );
        let first: Vec<_> = loader.epoch(0, 0).take(3).collect();
        assert_eq!(first.len(), 3);
    }

    #[test]
    fn image_text_batches_are_preprocessed_and_padded() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.png");
        write_png(&a, 6, 4);
        let tokenizer = TextTokenizer::train(
            ["a red circle", "a blue square left of a red circle"]
                .iter()
                .cycle()
                .take(20),
            &edgevlm_shared::TokenizerConfig {
                vocab_size: 60,
                min_frequency: 1,
                max_len: 8,
                lowercase: true,
            },
        )
        .unwrap();
        let batcher = ImageTextBatcher {
            items: vec![
                (a.clone(), "a red circle".into()),
                (a.clone(), "a blue square left of a red circle".into()),
                (dir.path().join("gone.png"), "x".into()),
            ],
            preprocess: PreprocessConfig::symmetric(4),
            tokenizer,
        };
        let b = batcher.batch(&[0, 1]).unwrap();
        assert_eq!(b.images.len(), 2 * 3 * 4 * 4);
        let single = preprocess_file(&a, &PreprocessConfig::symmetric(4)).unwrap();
        assert_eq!(&b.images[..48], single.data.as_slice());
        assert_eq!((b.tokens.batch, b.tokens.seq_len), (2, 8));
        assert_eq!(b.tokens.mask[..8], [1, 1, 1, 1, 1, 0, 0, 0]);
        let err = batcher.batch(&[2]).unwrap_err().to_string();
        assert!(err.contains("gone.png"), "{err}");
    }
}

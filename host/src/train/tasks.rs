//! Training sets built from loaded datasets: images decoded once into an
//! [`ImageStore`], texts tokenized once, batches assembled by index.

pub use crate::data::store::store_for;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use burn::tensor::{Device, Tensor, TensorData};
use edgevlm_shared::{PreprocessConfig, TextTokenizer};

use crate::data::batcher::Batcher;
use crate::data::store::ImageStore;
use crate::data::{CaptionRecord, VqaRecord};
use crate::error::Result;
use crate::model::count::stated_count;

/// One image–text pair.
#[derive(Debug, Clone)]
pub struct PairItem {
    pub image: usize,
    pub ids: Vec<u32>,
    /// Equal for identical texts, so identical texts are never each other's negatives.
    pub text_key: usize,
}

/// Image–text pairs (captions) over a shared image store.
pub struct PairSet {
    pub store: Arc<ImageStore>,
    pub items: Vec<PairItem>,
    pub tokenizer: TextTokenizer,
    /// Per stored image, the tokenized questions asked about it (empty without a VQA
    /// set beside the captions); pretraining's MLM reads some of them.
    pub questions: Vec<Vec<Vec<u32>>>,
}

/// An image with several of its questions and their answers' class indices: one
/// image encoding serves them all, which makes VQA training several times cheaper.
#[derive(Debug, Clone)]
pub struct QuestionGroup {
    pub image: usize,
    pub questions: Vec<AskedQuestion>,
}

#[derive(Debug, Clone)]
pub struct AskedQuestion {
    pub ids: Vec<u32>,
    /// The answer's class.
    pub class: i64,
    /// Where the object the answer is about lies ([`VqaRecord::focus`]).
    pub focus: Option<[f32; 2]>,
    /// The count the question and its answer state ([`stated_count`]).
    pub count: Option<usize>,
}

pub struct QuestionSet {
    pub store: Arc<ImageStore>,
    pub items: Vec<QuestionGroup>,
    pub tokenizer: TextTokenizer,
}

/// A batch on the CPU, ready to become tensors.
///
/// Holds `image_index.len()` images and `batch` text rows; row `r` is about image
/// `row_image[r]` of the batch.
#[derive(Debug, Clone)]
pub struct TextImageBatch {
    pub images: Vec<f32>,
    pub image_size: usize,
    /// Store index of each image in the batch.
    pub image_index: Vec<usize>,
    pub ids: Vec<u32>,
    pub mask: Vec<u32>,
    /// Text rows.
    pub batch: usize,
    pub len: usize,
    pub row_image: Vec<usize>,
    /// Text keys (pairs) or answer classes (questions), per row.
    pub labels: Vec<i64>,
    /// Per image of the batch, the questions asked about it (pairs with questions only).
    pub image_questions: Vec<Vec<Vec<u32>>>,
    /// Per row, where the object its answer is about lies (questions only; empty
    /// for pairs).
    pub focus: Vec<Option<[f32; 2]>>,
    /// Per row, the count its question and answer state (questions only; empty
    /// for pairs).
    pub counts: Vec<Option<usize>>,
}

impl TextImageBatch {
    pub fn images(&self, device: &Device) -> Tensor<4> {
        let s = self.image_size;
        Tensor::from_data(
            TensorData::new(self.images.clone(), [self.image_index.len(), 3, s, s]),
            device,
        )
    }

    /// Selects each row's image from per-image tensors `[images, ...]` → `[rows, ...]`.
    pub fn per_row(&self, per_image: Tensor<3>) -> Tensor<3> {
        if self.row_image.len() == self.image_index.len()
            && self.row_image.iter().enumerate().all(|(i, &r)| i == r)
        {
            return per_image;
        }
        let device = per_image.device();
        let idx: Vec<i64> = self.row_image.iter().map(|&r| r as i64).collect();
        per_image.select(
            0,
            Tensor::<1, burn::tensor::Int>::from_data(TensorData::new(idx, [self.batch]), &device),
        )
    }
}

/// `rows`: (position of the row's image in `images`, token ids, label).
fn assemble(
    store: &ImageStore,
    tokenizer: &TextTokenizer,
    images: Vec<usize>,
    rows: Vec<(usize, &[u32], i64)>,
) -> TextImageBatch {
    let ids: Vec<Vec<u32>> = rows.iter().map(|r| r.1.to_vec()).collect();
    let padded = tokenizer.pad(&ids, None);
    TextImageBatch {
        images: store.batch(&images),
        image_size: store.config().image_size as usize,
        image_index: images,
        ids: padded.ids,
        mask: padded.mask,
        batch: padded.batch,
        len: padded.seq_len,
        row_image: rows.iter().map(|r| r.0).collect(),
        labels: rows.iter().map(|r| r.2).collect(),
        image_questions: Vec::new(),
        focus: Vec::new(),
        counts: Vec::new(),
    }
}

impl Batcher for PairSet {
    type Batch = TextImageBatch;

    fn batch(&self, indices: &[usize]) -> crate::data::Result<TextImageBatch> {
        let images = indices.iter().map(|&i| self.items[i].image).collect();
        let rows = indices
            .iter()
            .enumerate()
            .map(|(pos, &i)| (pos, self.items[i].ids.as_slice(), self.items[i].text_key as i64))
            .collect();
        let mut batch = assemble(&self.store, &self.tokenizer, images, rows);
        if !self.questions.is_empty() {
            batch.image_questions = batch
                .image_index
                .iter()
                .map(|&image| self.questions[image].clone())
                .collect();
        }
        Ok(batch)
    }
}

impl Batcher for QuestionSet {
    type Batch = TextImageBatch;

    fn batch(&self, indices: &[usize]) -> crate::data::Result<TextImageBatch> {
        let images = indices.iter().map(|&i| self.items[i].image).collect();
        let asked = || {
            indices
                .iter()
                .enumerate()
                .flat_map(|(pos, &i)| self.items[i].questions.iter().map(move |q| (pos, q)))
        };
        let rows = asked().map(|(pos, q)| (pos, q.ids.as_slice(), q.class)).collect();
        let mut batch = assemble(&self.store, &self.tokenizer, images, rows);
        batch.focus = asked().map(|(_, q)| q.focus).collect();
        batch.counts = asked().map(|(_, q)| q.count).collect();
        Ok(batch)
    }
}

/// Every (image, caption) pair of a caption dataset.
pub fn pair_set(
    records: &[CaptionRecord],
    tokenizer: &TextTokenizer,
    preprocess: &PreprocessConfig,
) -> Result<PairSet> {
    let paths: Vec<PathBuf> = records.iter().map(|r| r.image.clone()).collect();
    let (store, index) = store_for(&paths, preprocess)?;
    let mut keys: HashMap<String, usize> = HashMap::new();
    let mut items = Vec::new();
    for r in records {
        for caption in &r.captions {
            let next = keys.len();
            let text_key = *keys.entry(caption.to_lowercase()).or_insert(next);
            items.push(PairItem {
                image: index[&r.image],
                ids: tokenizer.encode(caption)?,
                text_key,
            });
        }
    }
    Ok(PairSet {
        store,
        items,
        tokenizer: tokenizer.clone(),
        questions: Vec::new(),
    })
}

impl PairSet {
    /// Attaches the questions of a VQA set about the same images (matched by path);
    /// returns how many found their image. Answers are not read: this is text for
    /// task-adaptive pretraining, not supervision.
    pub fn with_questions(mut self, records: &[VqaRecord]) -> Result<(Self, usize)> {
        let index: HashMap<&PathBuf, usize> =
            self.store.paths.iter().enumerate().map(|(i, p)| (p, i)).collect();
        let mut questions = vec![Vec::new(); self.store.len()];
        let mut matched = 0;
        for r in records {
            if let Some(&image) = index.get(&r.image) {
                questions[image].push(self.tokenizer.encode(&r.question)?);
                matched += 1;
            }
        }
        self.questions = questions;
        Ok((self, matched))
    }
}

/// Answer vocabulary of a training split: by frequency, then alphabetically.
pub fn answer_vocabulary(records: &[VqaRecord]) -> Vec<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for r in records {
        *counts.entry(r.answer.as_str()).or_insert(0) += 1;
    }
    let mut answers: Vec<(&str, usize)> = counts.into_iter().collect();
    answers.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    answers.into_iter().map(|(a, _)| a.to_string()).collect()
}

/// Questions whose answer is in `answers`, grouped by image in groups of up to
/// `per_group` (others cannot be learned as a class; they are counted and dropped).
/// Grouping is seeded, so a resumed run sees the same groups.
/// Answer → class index, in `answers`' order.
pub fn answer_classes(answers: &[String]) -> HashMap<&str, i64> {
    answers
        .iter()
        .enumerate()
        .map(|(i, a)| (a.as_str(), i as i64))
        .collect()
}

pub fn question_set(
    records: &[VqaRecord],
    answers: &[String],
    tokenizer: &TextTokenizer,
    preprocess: &PreprocessConfig,
    per_group: usize,
    seed: u64,
) -> Result<(QuestionSet, usize)> {
    let class = answer_classes(answers);
    let kept: Vec<&VqaRecord> = records
        .iter()
        .filter(|r| class.contains_key(r.answer.as_str()))
        .collect();
    let paths: Vec<PathBuf> = kept.iter().map(|r| r.image.clone()).collect();
    let (store, index) = store_for(&paths, preprocess)?;
    let mut by_image: Vec<Vec<AskedQuestion>> = vec![Vec::new(); store.len()];
    for r in &kept {
        by_image[index[&r.image]].push(AskedQuestion {
            ids: tokenizer.encode(&r.question)?,
            class: class[r.answer.as_str()],
            focus: r.focus,
            count: stated_count(&r.question, &r.answer),
        });
    }
    let mut items = Vec::new();
    for (image, mut questions) in by_image.into_iter().enumerate() {
        edgevlm_shared::rng::SplitMix64::fork(seed, image as u64).shuffle(&mut questions);
        for chunk in questions.chunks(per_group.max(1)) {
            items.push(QuestionGroup {
                image,
                questions: chunk.to_vec(),
            });
        }
    }
    Ok((
        QuestionSet {
            store,
            items,
            tokenizer: tokenizer.clone(),
        },
        records.len() - kept.len(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::write_png;

    fn question(image: &std::path::Path, text: &str) -> VqaRecord {
        VqaRecord {
            image: image.to_path_buf(),
            question: text.into(),
            answer: "red".into(),
            answers: vec!["red".into()],
            question_type: None,
            family: None,
            focus: None,
        }
    }

    #[test]
    fn questions_travel_with_the_batches_of_their_image() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, elsewhere) = (
            dir.path().join("a.png"),
            dir.path().join("b.png"),
            dir.path().join("c.png"),
        );
        write_png(&a, 4, 4);
        write_png(&b, 4, 4);
        let tokenizer = TextTokenizer::train(
            [
                "a red circle",
                "what colour is the circle ?",
                "how many squares ?",
            ]
            .iter()
            .cycle()
            .take(30),
            &edgevlm_shared::TokenizerConfig {
                vocab_size: 60,
                min_frequency: 1,
                max_len: 12,
                lowercase: true,
            },
        )
        .unwrap();
        let captions = vec![
            CaptionRecord {
                image: a.clone(),
                captions: vec!["a red circle".into(), "a red circle".into()],
            },
            CaptionRecord {
                image: b.clone(),
                captions: vec!["a red circle".into()],
            },
        ];
        let preprocess = PreprocessConfig::symmetric(4);
        let set = pair_set(&captions, &tokenizer, &preprocess).unwrap();
        let records = [
            question(&b, "how many squares ?"),
            question(&a, "what colour is the circle ?"),
            question(&elsewhere, "how many squares ?"),
            question(&b, "what colour is the circle ?"),
        ];
        let (set, matched) = set.with_questions(&records).unwrap();
        assert_eq!(
            matched, 3,
            "the question about an image without captions is left out"
        );

        let batch = set.batch(&[2, 0]).unwrap();
        assert_eq!(batch.image_questions.len(), 2, "one list per image of the batch");
        let encode = |t: &str| tokenizer.encode(t).unwrap();
        assert_eq!(
            batch.image_questions[0],
            vec![
                encode("how many squares ?"),
                encode("what colour is the circle ?")
            ],
            "b's questions, in order"
        );
        assert_eq!(
            batch.image_questions[1],
            vec![encode("what colour is the circle ?")]
        );
    }
}

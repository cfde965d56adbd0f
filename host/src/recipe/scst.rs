//! Self-critical sequence training (Rennie et al. 2017) of the caption decoder after
//! cross-entropy: captions are sampled from the model itself and each is pushed up or
//! down by how much its CIDEr-D beats the other samples of the same image (the
//! "mean of the other samples" baseline of Luo 2020, which needs no greedy pass).
//! Teacher forcing trains on the references' words; this trains on what the model
//! actually says, against the metric the captions are judged by.

use burn::module::Module;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use edgevlm_shared::rng::SplitMix64;
use edgevlm_shared::TextTokenizer;

use super::caption::CaptionSet;
use crate::eval::metrics::CiderReward;
use crate::model::EdgeVlm;
use crate::train::trainer::Losses;

/// What the self-critical step needs besides the model.
pub struct Critic<'a> {
    pub set: &'a CaptionSet<'a>,
    /// CIDEr-D against each training image's references, document frequencies from
    /// the training captions.
    pub reward: &'a CiderReward,
    pub tokenizer: &'a TextTokenizer,
    /// Captions sampled per image.
    pub samples: usize,
    /// Longest caption, [CLS] and [SEP] included.
    pub max_len: usize,
}

/// A uniform draw in [0, 1).
fn uniform(rng: &mut SplitMix64) -> f32 {
    (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32
}

/// Draws an index from a probability row.
fn draw(probs: &[f32], rng: &mut SplitMix64) -> u32 {
    let mut left = uniform(rng) * probs.iter().sum::<f32>();
    for (i, &p) in probs.iter().enumerate() {
        left -= p;
        if left <= 0.0 {
            return i as u32;
        }
    }
    probs.len().saturating_sub(1) as u32
}

/// `samples` captions per image of `image` (`[images, n, d]`), drawn token by token
/// from the model's own distribution. Each is `[CLS] words… [SEP]` (no [SEP] when cut
/// at `max_len`); row `r` belongs to image `r / samples`.
pub fn sample(model: &EdgeVlm, image: Tensor<3>, critic: &Critic, rng: &mut SplitMix64) -> Vec<Vec<u32>> {
    let special = critic.tokenizer.special_ids();
    let device = image.device();
    let images = image.dims()[0];
    let rows = images * critic.samples;
    let owner: Vec<i64> = (0..rows).map(|r| (r / critic.samples) as i64).collect();
    let owner = Tensor::<1, Int>::from_data(TensorData::new(owner, [rows]), &device);
    let mut cache = model.decoder.cache(image);
    let mut seqs = vec![vec![special.cls]; rows];
    let mut done = vec![false; rows];
    while seqs[0].len() < critic.max_len && done.iter().any(|d| !d) {
        let last: Vec<i64> = seqs.iter().map(|s| s[s.len() - 1] as i64).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(last, [rows, 1]), &device);
        let logits = model.decoder.extend(ids, owner.clone(), &mut cache);
        let vocab = logits.dims()[1];
        let probs = softmax(logits, 1)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        // Finished rows take a pad each step so that all rows keep one length.
        for (r, row) in probs.chunks(vocab).enumerate() {
            let next = if done[r] { special.pad } else { draw(row, rng) };
            seqs[r].push(next);
            done[r] |= next == special.sep;
        }
    }
    seqs
}

/// Each sample's reward minus the mean reward of the other samples of its image
/// (rewards come in groups of `samples` per image).
pub fn advantages(rewards: &[f64], samples: usize) -> Vec<f32> {
    let others = (samples as f64 - 1.0).max(1.0);
    rewards
        .chunks(samples.max(1))
        .flat_map(|group| {
            let sum: f64 = group.iter().sum();
            group.iter().map(move |&r| (r - (sum - r) / others) as f32)
        })
        .collect()
}

/// The self-critical loss of one batch of training images.
pub fn step(
    model: &EdgeVlm,
    critic: &Critic,
    batch: &[usize],
    rng: &mut SplitMix64,
    device: &Device,
) -> Losses {
    let images = critic.set.images;
    let features = |device: &Device| images.token_tensor(batch, device);
    let inner = device.clone().inner();
    let drawn = {
        let valid = model.valid();
        sample(&valid, valid.image_tokens(features(&inner)), critic, rng)
    };
    let special = critic.tokenizer.special_ids();
    let words = |seq: &[u32]| -> Vec<u32> {
        seq.iter()
            .skip(1)
            .take_while(|&&t| t != special.sep && t != special.pad)
            .copied()
            .collect()
    };
    let rewards: Vec<f64> = drawn
        .iter()
        .enumerate()
        .map(|(r, seq)| {
            let text = critic.tokenizer.decode(&words(seq)).unwrap_or_default();
            critic.reward.score(batch[r / critic.samples], &text)
        })
        .collect();
    let advantages = advantages(&rewards, critic.samples);

    // Teacher-forced log-probabilities of the drawn captions, each token weighted by
    // its caption's advantage.
    let rows = drawn.len();
    let len = drawn.iter().map(Vec::len).max().unwrap_or(2).max(2);
    let (mut inputs, mut targets, mut weights) = (Vec::new(), Vec::new(), Vec::new());
    let mut predicted = 0usize;
    for (seq, &advantage) in drawn.iter().zip(&advantages) {
        // The caption's words and its [SEP], when it has one.
        let used = (words(seq).len() + 2).min(seq.len());
        for p in 0..len - 1 {
            inputs.push(seq.get(p).copied().unwrap_or(special.pad) as i64);
            targets.push(seq.get(p + 1).copied().unwrap_or(special.pad) as i64);
            let counted = p + 1 < used;
            predicted += usize::from(counted);
            weights.push(if counted { advantage } else { 0.0 });
        }
    }
    let owner: Vec<i64> = (0..rows).map(|r| (r / critic.samples) as i64).collect();
    let image = model.image_tokens(features(device));
    let inputs = Tensor::<2, Int>::from_data(TensorData::new(inputs, [rows, len - 1]), device);
    let owner = Tensor::<1, Int>::from_data(TensorData::new(owner, [rows]), device);
    let logits = model.decoder.forward_shared(inputs, image, owner);
    let vocab = logits.dims()[2];
    let n = rows * (len - 1);
    let targets = Tensor::<2, Int>::from_data(TensorData::new(targets, [n, 1]), device);
    let weights = Tensor::<2>::from_data(TensorData::new(weights, [n, 1]), device);
    let picked = log_softmax(logits.reshape([n, vocab]), 1).gather(1, targets);
    let loss = (picked * weights).sum().neg().div_scalar(predicted.max(1) as f32);
    let mean_reward = rewards.iter().sum::<f64>() / rewards.len().max(1) as f64;
    Losses {
        total: loss.clone(),
        parts: vec![
            ("scst_loss", loss),
            (
                "sample_cider",
                Tensor::from_data(TensorData::new(vec![mean_reward as f32], [1]), device),
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sample_is_judged_against_the_other_samples_of_its_image() {
        let a = advantages(&[1.0, 2.0, 3.0, 5.0, 5.0, 5.0], 3);
        assert_eq!(a, vec![-1.5, 0.0, 1.5, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn draws_follow_the_probabilities() {
        let mut rng = SplitMix64::new(7);
        assert!((0..100).all(|_| draw(&[0.0, 1.0, 0.0], &mut rng) == 1));
        let ones = (0..4000).filter(|_| draw(&[0.75, 0.25], &mut rng) == 1).count();
        assert!((900..1100).contains(&ones), "{ones}");
    }
}

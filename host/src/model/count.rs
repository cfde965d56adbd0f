//! A counting read-out for the fused VQA head.
//!
//! Attention weights sum to one over the image tokens, so what the fused [CLS] reads
//! of two dogs and of three can be the same average (Zhang et al. 2018, "Learning to
//! Count Objects in Natural Images for VQA"). This read-out keeps a sum instead: each
//! image token gets a gate in [0, 1] for what the question names, and the gates' sum,
//! a soft count, reaches the head's hidden layer through count bins that interpolate
//! between neighbouring whole counts (so the count stays differentiable).

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::{Device, Tensor, TensorData};

#[derive(Config, Debug)]
pub struct CountReadoutConfig {
    /// Width of the image tokens.
    pub d_image: usize,
    /// Width of the question's token states.
    pub d_text: usize,
    /// Width of the head's hidden layer the count is added to.
    pub d_hidden: usize,
    #[config(default = 64)]
    pub d_key: usize,
    /// The largest count told apart; more reads as this many.
    #[config(default = 12)]
    pub max_count: usize,
    /// Starting bias of the gates: closed enough (sigmoid(-3) ≈ 0.05) that a photo's
    /// first counts land inside the bins, where there is gradient.
    #[config(default = -3.0)]
    pub gate_bias: f64,
}

#[derive(Module, Debug)]
pub struct CountReadout {
    pub image_key: Linear,
    pub question_key: Linear,
    pub gate_bias: Param<Tensor<1>>,
    /// Count bins `[max_count + 1]` → the head's hidden width.
    pub bins: Linear,
}

impl CountReadoutConfig {
    pub fn init(&self, device: &Device) -> CountReadout {
        CountReadout {
            image_key: LinearConfig::new(self.d_image, self.d_key).init(device),
            question_key: LinearConfig::new(self.d_text, self.d_key).init(device),
            gate_bias: Initializer::Constant {
                value: self.gate_bias,
            }
            .init([1], device),
            bins: LinearConfig::new(self.max_count + 1, self.d_hidden).init(device),
        }
    }
}

impl CountReadout {
    pub fn max_count(&self) -> usize {
        self.bins.weight.dims()[0] - 1
    }

    pub fn d_key(&self) -> usize {
        self.image_key.weight.dims()[1]
    }

    /// How much each image token is of what the question names.
    ///
    /// # Shapes
    /// - image: `[batch, n, d_image]`, question: `[batch, d_text]` → `[batch, n]`
    pub fn gates(&self, image: Tensor<3>, question: Tensor<2>) -> Tensor<2> {
        let [batch, n, _] = image.dims();
        let d_key = self.d_key();
        let keys = self.image_key.forward(image);
        let query = self.question_key.forward(question).reshape([batch, d_key, 1]);
        let scores = keys.matmul(query).reshape([batch, n]) / (d_key as f64).sqrt();
        sigmoid(scores + self.gate_bias.val().reshape([1, 1]))
    }

    /// The soft count: the gates' sum `[batch, 1]`.
    pub fn count(&self, image: Tensor<3>, question: Tensor<2>) -> Tensor<2> {
        self.gates(image, question).sum_dim(1)
    }

    /// What the count adds to the head's hidden layer: `[batch, d_hidden]`.
    pub fn forward(&self, image: Tensor<3>, question: Tensor<2>) -> Tensor<2> {
        let device = image.device();
        let count = self.count(image, question).clamp_max(self.max_count() as f32);
        self.bins.forward(count_bins(count, self.max_count(), &device))
    }
}

/// The number an answer gives, as digits ("3") or a word ("three"); `None` for any
/// other answer ("no" included: it answers yes/no questions far more often).
pub fn answer_count(answer: &str) -> Option<usize> {
    const WORDS: [&str; 21] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
        "twenty",
    ];
    let answer = answer.trim();
    if answer == "none" {
        return Some(0);
    }
    if let Some(n) = WORDS.iter().position(|&w| w == answer) {
        return Some(n);
    }
    match answer.parse::<usize>() {
        Ok(n) if answer.len() <= 3 && answer.bytes().all(|b| b.is_ascii_digit()) => Some(n),
        _ => None,
    }
}

/// The count a question and its answer state together: the answer's number
/// ([`answer_count`]), or N where "are there N …?" is answered "yes".
pub fn stated_count(question: &str, answer: &str) -> Option<usize> {
    if let Some(n) = answer_count(answer) {
        return Some(n);
    }
    let mut words = question.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("are"), Some("there"), Some(n)) if answer.trim() == "yes" => answer_count(n),
        _ => None,
    }
}

/// Each count `[batch, 1]` spread over the whole counts 0..=max `[batch, max + 1]`:
/// `relu(1 - |count - k|)`, so 2.3 is 0.7 of "2" and 0.3 of "3".
pub fn count_bins(count: Tensor<2>, max: usize, device: &Device) -> Tensor<2> {
    let batch = count.dims()[0];
    let whole: Vec<f32> = (0..=max).map(|k| k as f32).collect();
    let whole = Tensor::<2>::from_data(TensorData::new(whole, [1, max + 1]), device);
    let distance = (count.expand([batch, max + 1]) - whole).abs();
    relu(distance.neg().add_scalar(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn answers_that_give_a_number_are_read_as_that_count() {
        for (answer, count) in [
            ("three", Some(3)),
            ("12", Some(12)),
            ("none", Some(0)),
            ("twenty", Some(20)),
        ] {
            assert_eq!(answer_count(answer), count, "{answer}");
        }
        for answer in ["no", "yes", "dog", "-1", "1e3", "+2", "", "twentyone"] {
            assert_eq!(answer_count(answer), None, "{answer}");
        }
    }

    #[test]
    fn a_yes_to_are_there_n_states_n() {
        assert_eq!(stated_count("are there three dogs?", "yes"), Some(3));
        assert_eq!(stated_count("are there 4 people in the photo?", "yes"), Some(4));
        assert_eq!(stated_count("are there three dogs?", "no"), None);
        assert_eq!(stated_count("are there dogs?", "yes"), None);
        assert_eq!(stated_count("how many dogs are there?", "two"), Some(2));
        assert_eq!(stated_count("is the dog brown?", "yes"), None);
    }

    #[test]
    fn a_count_between_two_whole_ones_is_shared_between_their_bins() {
        let device = Device::flex();
        let count = Tensor::<2>::from_data(TensorData::new(vec![2.25f32, 0.0, 4.0], [3, 1]), &device);
        let bins = values(count_bins(count, 4, &device));
        assert_eq!(bins[..5], [0.0, 0.0, 0.75, 0.25, 0.0]);
        assert_eq!(bins[5..10], [1.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(bins[10..], [0.0, 0.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn the_count_is_the_sum_of_the_tokens_gates() {
        let device = Device::flex();
        device.seed(3);
        let readout = CountReadoutConfig::new(4, 4, 8).init(&device);
        let question = Tensor::<2>::random([1, 4], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let (a, b) = (
            Tensor::<3>::ones([1, 1, 4], &device),
            Tensor::<3>::zeros([1, 1, 4], &device),
        );
        // `k` tokens like `a` among six.
        let image = |k: usize| {
            let parts: Vec<Tensor<3>> = (0..6)
                .map(|i| if i < k { a.clone() } else { b.clone() })
                .collect();
            Tensor::cat(parts, 1)
        };
        let gates = values(readout.gates(image(1), question.clone()));
        let (gate_a, gate_b) = (gates[0], gates[1]);
        assert!(gates[1..].iter().all(|&g| g == gate_b));
        let count = |k| values(readout.count(image(k), question.clone()))[0];
        for k in 0..=6 {
            let expected = k as f32 * gate_a + (6 - k) as f32 * gate_b;
            assert!(
                (count(k) - expected).abs() < 1e-5,
                "{k} tokens like a: {} vs {expected}",
                count(k)
            );
        }
        // The gates start closed: six plain tokens count for less than one thing.
        assert!(count(0) < 1.0, "{}", count(0));
    }
}

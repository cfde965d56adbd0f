//! Training hyper-parameters, saved as `train.json` beside every run.

use burn::config::Config;

#[derive(Config, Debug)]
pub struct TrainConfig {
    #[config(default = 64)]
    pub batch_size: usize,
    #[config(default = 5)]
    pub epochs: usize,
    /// Stop after this many optimizer steps even if epochs remain.
    pub max_steps: Option<usize>,
    /// Pause after this step (a checkpoint is written); `--resume` continues the same
    /// schedule. Unlike `max_steps` it does not change the schedule's length.
    pub stop_after: Option<usize>,
    #[config(default = 1e-3)]
    pub lr: f64,
    /// Fraction of the steps spent warming up linearly.
    #[config(default = 0.05)]
    pub warmup: f64,
    /// Final learning rate as a fraction of `lr`.
    #[config(default = 0.05)]
    pub min_lr_ratio: f64,
    #[config(default = 0.01)]
    pub weight_decay: f64,
    /// Per-parameter gradient-norm clip (burn's `GradientClipping::Norm`); 0 disables.
    #[config(default = 1.0)]
    pub grad_clip: f32,
    #[config(default = 0)]
    pub seed: u64,
    /// Steps between checkpoints (and held-out evaluations).
    #[config(default = 100)]
    pub checkpoint_every: usize,
    #[config(default = 1.0)]
    pub itc_weight: f32,
    #[config(default = 1.0)]
    pub itm_weight: f32,
    /// Share of ITM negatives drawn uniformly from the batch instead of by ITC
    /// similarity. Hard negatives alone are near-duplicates of the positive (one word
    /// or one count apart) before the encoders can tell them apart, and ITM then
    /// learns only its 1:2 label prior; random ones give it a signal it can pick up
    /// early. 0 is ALBEF's all-hard sampling.
    #[config(default = 0.5)]
    pub itm_random_negatives: f64,
    #[config(default = 1.0)]
    pub mlm_weight: f32,
    #[config(default = 1.0)]
    pub mim_weight: f32,
    /// Share of MLM rows that read one of their image's questions instead of the
    /// caption, when a VQA set about the same images sits beside the captions
    /// (task-adaptive pretraining: the text encoder meets the questions' words, such
    /// as "closest" or "how many", before fine-tuning for VQA). 0 reads captions only.
    #[config(default = 0.5)]
    pub question_mlm: f64,
    /// MLM through the spatial head (models with a spatial MLM head).
    #[config(default = 1.0)]
    pub spatial_mlm_weight: f32,
    /// Spatial MLM: captions made from each caption, each hiding another token.
    #[config(default = 8)]
    pub spatial_mlm_variants: usize,
    /// Fraction of image patches hidden for masked image-feature regression.
    #[config(default = 0.3)]
    pub mim_ratio: f64,
    /// VQA: questions per image in a batch (the image is encoded once for all of them);
    /// a batch then holds `batch_size` images.
    #[config(default = 8)]
    pub questions_per_image: usize,
    /// VQA with a spatial head: weight of the loss that teaches its focus (the
    /// cell it reads the answer from) to land on the object the answer is about,
    /// for questions that say where it is (`focus` in the JSONL). 0 turns it off.
    /// 0.3 measured best after the synthetic recipe's 3,000 steps; 1 after a short
    /// run of 1,000 (docs/results-reasoning.md).
    #[config(default = 0.3)]
    pub focus_weight: f32,
    /// VQA with a counting read-out: weight of the loss that teaches its soft count
    /// the count each question states (a "how many" answer's number, or N where
    /// "are there N …?" is answered yes; Huber). 0 leaves the count to learn from
    /// the answers' cross-entropy alone.
    #[config(default = 1.0)]
    pub count_weight: f32,
    /// Parts kept frozen: any of `vision`, `text`, `fusion`, `decoder`, `grid`.
    #[config(default = "Vec::new()")]
    pub freeze: Vec<String>,
    /// Parts trained at `slow_lr_ratio` times the learning rate (same names as
    /// `freeze`): pretrained parts keep what they know while fresh heads learn fast.
    #[config(default = "Vec::new()")]
    pub slow: Vec<String>,
    #[config(default = 0.1)]
    pub slow_lr_ratio: f64,
}

impl TrainConfig {
    /// Reads a `train.json`, taking the defaults for settings it does not name (a
    /// run written before they existed keeps training as it did).
    pub fn read(path: &std::path::Path) -> Result<Self, String> {
        use serde_json::Value;
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        let given: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let Value::Object(given) = given else {
            return Err("expected a JSON object of training settings".into());
        };
        let Value::Object(defaults) = serde_json::to_value(TrainConfig::new()).map_err(|e| e.to_string())?
        else {
            return Err("the defaults are not a JSON object".into());
        };
        let with = |settings: &serde_json::Map<String, Value>| {
            let mut all = defaults.clone();
            all.extend(settings.clone());
            serde_json::from_value::<TrainConfig>(Value::Object(all))
        };
        with(&given).map_err(|e| {
            // serde says what it expected, not where: find the setting that fails alone.
            let culprit = given.iter().find(|(name, value)| {
                with(&serde_json::Map::from_iter([((*name).clone(), (*value).clone())])).is_err()
            });
            match culprit {
                Some((name, _)) => format!("`{name}`: {e}"),
                None => e.to_string(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_written_before_a_setting_existed_reads_with_its_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.json");
        std::fs::write(&path, r#"{"batch_size": 16, "freeze": ["vision"]}"#).unwrap();
        let cfg = TrainConfig::read(&path).unwrap();
        assert_eq!(cfg.batch_size, 16);
        assert_eq!(cfg.freeze, ["vision"]);
        assert_eq!(cfg.focus_weight, TrainConfig::new().focus_weight);
        std::fs::write(&path, r#"{"batch_size": "many"}"#).unwrap();
        assert!(TrainConfig::read(&path).unwrap_err().contains("batch_size"));
        std::fs::write(&path, "[1]").unwrap();
        assert!(TrainConfig::read(&path).is_err());
    }
}

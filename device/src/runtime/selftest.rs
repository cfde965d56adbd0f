//! The bundle's golden self-test: its image must give the recorded caption, answer
//! and embedding. The update agent runs it before switching to a new bundle.

use edgevlm_shared::preprocess::decode_image;
use edgevlm_shared::search::DecodeOptions;

use super::{Result, Runtime, RuntimeError};

#[derive(Debug, Clone, PartialEq)]
pub struct SelfTestReport {
    pub caption: String,
    pub answer: Option<String>,
    /// Largest difference of the embedding's head from the recorded values.
    pub embedding_error: f32,
}

impl Runtime {
    /// Runs the self-test; an error says which output differs and how.
    pub fn selftest(&self) -> Result<SelfTestReport> {
        let test = self
            .manifest
            .selftest
            .as_ref()
            .ok_or_else(|| RuntimeError::SelfTest("the bundle carries no self-test".into()))?;
        let bytes = self
            .selftest_image
            .as_ref()
            .ok_or_else(|| RuntimeError::SelfTest(format!("missing image `{}`", test.image)))?;
        let image = decode_image(bytes, std::path::Path::new(&test.image))?;
        let encoded = self.encode_image(&image)?;
        let embedding_error = test
            .embedding_head
            .iter()
            .zip(&encoded.embedding)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        if embedding_error > test.tolerance || encoded.embedding.len() < test.embedding_head.len() {
            return Err(RuntimeError::SelfTest(format!(
                "image embedding differs by {embedding_error} (tolerance {})",
                test.tolerance
            )));
        }
        let caption = self.caption(&encoded, DecodeOptions::default())?;
        if caption != test.caption {
            return Err(RuntimeError::SelfTest(format!(
                "caption {caption:?}, expected {:?}",
                test.caption
            )));
        }
        let answer = match &test.vqa {
            Some((question, expected)) => {
                let got = self.answer(&encoded, question)?.answer;
                if &got != expected {
                    return Err(RuntimeError::SelfTest(format!(
                        "{question:?} answered {got:?}, expected {expected:?}"
                    )));
                }
                Some(got)
            }
            None => None,
        };
        Ok(SelfTestReport {
            caption,
            answer,
            embedding_error,
        })
    }
}

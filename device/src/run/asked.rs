//! Questions asked over MQTT: each is answered on the first frame the camera
//! gives after it arrived, whatever the trigger says.

use crate::camera::Camera;
use crate::events::{Answered, ASKED};
use crate::runtime::Runtime;

/// Questions waiting for a frame.
#[derive(Default)]
pub struct Asked {
    waiting: Vec<String>,
}

impl Asked {
    /// Adds newly asked questions; beyond [`ASKED`] waiting, the newest are dropped.
    pub fn extend(&mut self, questions: Vec<String>) {
        for q in questions {
            if self.waiting.len() < ASKED {
                self.waiting.push(q);
            } else {
                eprintln!("run: {ASKED} questions wait for a frame already; dropped {q:?}");
            }
        }
    }

    /// Answers the waiting questions on the camera's next frame; nothing while
    /// the camera has none yet (they keep waiting). A frame that cannot be had
    /// or read answers each with the error, so no question waits forever.
    pub fn answer(&mut self, device: &str, camera: &mut dyn Camera, runtime: &Runtime) -> Vec<Answered> {
        if self.waiting.is_empty() {
            return Vec::new();
        }
        let frame = match camera.capture() {
            Ok(Some(frame)) => Ok(frame),
            Ok(None) => return Vec::new(),
            Err(e) => Err(e.to_string()),
        };
        let time_ms = super::unix_ms();
        let encoded = frame
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|f| runtime.encode_image(&f.image).map_err(|e| e.to_string()));
        let source = frame.as_ref().ok().map(|f| f.source.clone());
        self.waiting
            .drain(..)
            .map(|question| {
                let answer = encoded
                    .as_ref()
                    .map_err(Clone::clone)
                    .and_then(|enc| runtime.answer(enc, &question).map_err(|e| e.to_string()));
                let (answer, probability, error) = match answer {
                    Ok(a) => (Some(a.answer), Some(a.probability), None),
                    Err(e) => (None, None, Some(e)),
                };
                Answered {
                    device: device.to_string(),
                    question,
                    answer,
                    probability,
                    time_ms,
                    source: source.clone(),
                    error,
                }
            })
            .collect()
    }
}

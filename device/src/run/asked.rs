//! Questions asked over MQTT: each is answered on the first frame the camera
//! gives after it arrived, whatever the trigger says. With a conversation window
//! (`conversation_s`, for bundles fine-tuned on dialogs), questions that follow
//! within it are answered about that same frame with the earlier rounds as their
//! history, until the window passes or the loop captures a new frame.

use std::time::{Duration, Instant};

use edgevlm_shared::dialog::Conversation;

use crate::camera::Camera;
use crate::events::{Answered, ASKED};
use crate::runtime::{EncodedImage, Runtime};

/// The frame a conversation is about, and what was said about it.
struct Talk {
    encoded: EncodedImage,
    source: Option<String>,
    time_ms: u128,
    last: Instant,
    history: Conversation,
}

/// Questions waiting for a frame.
#[derive(Default)]
pub struct Asked {
    waiting: Vec<String>,
    /// How long after its last answer a conversation takes follow-ups; none: each
    /// question stands alone.
    window: Option<Duration>,
    talk: Option<Talk>,
}

impl Asked {
    pub fn new(window: Option<Duration>) -> Self {
        Asked {
            window,
            ..Default::default()
        }
    }

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

    /// The loop took a new frame: the conversation about the old one ends.
    pub fn new_capture(&mut self) {
        self.talk = None;
    }

    /// Answers the waiting questions: about the conversation's frame while its
    /// window lasts, else on the camera's next frame; nothing while the camera has
    /// none yet (they keep waiting). A frame that cannot be had or read answers
    /// each with the error, so no question waits forever.
    pub fn answer(&mut self, device: &str, camera: &mut dyn Camera, runtime: &Runtime) -> Vec<Answered> {
        if self.waiting.is_empty() {
            return Vec::new();
        }
        let fresh = |t: &Talk| self.window.is_some_and(|w| t.last.elapsed() <= w);
        if !self.talk.as_ref().is_some_and(fresh) {
            self.talk = None;
            let frame = match camera.capture() {
                Ok(Some(frame)) => frame,
                Ok(None) => return Vec::new(),
                Err(e) => return self.fail(device, e.to_string()),
            };
            let time_ms = super::unix_ms();
            match runtime.encode_image(&frame.image) {
                Ok(encoded) => {
                    self.talk = Some(Talk {
                        encoded,
                        source: Some(frame.source),
                        time_ms,
                        last: Instant::now(),
                        history: Conversation::default(),
                    })
                }
                Err(e) => return self.fail(device, e.to_string()),
            }
        }
        let Some(talk) = self.talk.as_mut() else {
            return Vec::new();
        };
        let conversing = self.window.is_some();
        let mut out = Vec::new();
        for question in self.waiting.drain(..) {
            let text = if conversing {
                talk.history.text_for(&question).map_err(|e| e.to_string())
            } else {
                Ok(question.clone())
            };
            let answer = text.and_then(|t| runtime.answer(&talk.encoded, &t).map_err(|e| e.to_string()));
            if let Ok(a) = &answer {
                if conversing {
                    talk.history.record(&question, &a.answer);
                }
            }
            let (answer, probability, error) = match answer {
                Ok(a) => (Some(a.answer), Some(a.probability), None),
                Err(e) => (None, None, Some(e)),
            };
            out.push(Answered {
                device: device.to_string(),
                question,
                answer,
                probability,
                time_ms: talk.time_ms,
                source: talk.source.clone(),
                error,
            });
        }
        talk.last = Instant::now();
        if !conversing {
            self.talk = None;
        }
        out
    }

    fn fail(&mut self, device: &str, error: String) -> Vec<Answered> {
        let time_ms = super::unix_ms();
        self.waiting
            .drain(..)
            .map(|question| Answered {
                device: device.to_string(),
                question,
                answer: None,
                probability: None,
                time_ms,
                source: None,
                error: Some(error.clone()),
            })
            .collect()
    }
}

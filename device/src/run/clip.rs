//! `clip_frames = N`: the loop keeps the image tokens of the last N frames it
//! captured, so that when a trigger fires the event also tells what happened
//! over them (a clip caption), not only what the last frame shows.

use std::collections::VecDeque;

use edgevlm_shared::frames::sample_frames;
use edgevlm_shared::search::DecodeOptions;
use tract_onnx::prelude::Tensor;

use crate::camera::{Camera, CameraError, Frame};
use crate::runtime::Runtime;

/// The most frames a ring may hold (each a few kB to a few hundred kB of tokens).
pub const MAX_RING: usize = 64;

/// The newest frames' image tokens, oldest first.
pub struct ClipRing {
    capacity: usize,
    tokens: VecDeque<Tensor>,
}

impl ClipRing {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(2, MAX_RING);
        Self {
            capacity,
            tokens: VecDeque::with_capacity(capacity),
        }
    }

    pub fn push(&mut self, tokens: Tensor) {
        if self.tokens.len() == self.capacity {
            self.tokens.pop_front();
        }
        self.tokens.push_back(tokens);
    }

    /// The caption of the ring's frames, read as the bundle's frame count spread
    /// over them; `None` until two frames are in.
    pub fn caption(&self, runtime: &Runtime, opts: DecodeOptions) -> Option<Result<String, String>> {
        let frames = runtime.clip_frames()?;
        if self.tokens.len() < 2 {
            return None;
        }
        let all: Vec<&Tensor> = self.tokens.iter().collect();
        let picked = sample_frames(&all, frames);
        Some(
            runtime
                .clip_memory(&picked)
                .and_then(|memory| runtime.caption_clip(&memory, opts))
                .map_err(|e| e.to_string()),
        )
    }
}

/// A camera whose every frame also goes into a clip ring (encoded by the runtime).
pub struct Ringed<'r> {
    pub camera: Box<dyn Camera>,
    pub ring: Option<(ClipRing, &'r Runtime)>,
}

impl Camera for Ringed<'_> {
    fn capture(&mut self) -> Result<Option<Frame>, CameraError> {
        let frame = self.camera.capture()?;
        if let (Some(frame), Some((ring, runtime))) = (&frame, self.ring.as_mut()) {
            // A frame the encoder refuses is left out of the clip; its event says why.
            match runtime.encode_image(&frame.image) {
                Ok(encoded) => ring.push(encoded.tokens),
                Err(e) => eprintln!("run: clip ring: {e}"),
            }
        }
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_frames_in_order() {
        let mut ring = ClipRing::new(3);
        for i in 0..5 {
            ring.push(Tensor::from(i as f32));
        }
        let kept: Vec<f32> = ring
            .tokens
            .iter()
            .map(|t| {
                t.to_plain_array_view::<f32>()
                    .unwrap()
                    .iter()
                    .copied()
                    .sum::<f32>()
            })
            .collect();
        assert_eq!(kept, [2.0, 3.0, 4.0]);
        assert_eq!(ClipRing::new(1000).capacity, MAX_RING);
    }
}

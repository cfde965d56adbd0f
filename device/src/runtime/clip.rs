//! Clips on the board: the frames' image tokens, stacked in order, through the
//! temporal graph into one memory, which the clip decoders caption exactly as the
//! image decoders caption an image.

use edgevlm_shared::bundle::io;
use edgevlm_shared::search::{self, DecodeOptions};
use tract_onnx::prelude::*;

use super::decode::CachedDecoder;
use super::{output, run, shape_error, Plan, Result, Runtime, RuntimeError};

/// The temporal graph and the decoders over its memory.
pub(super) struct ClipPlans {
    pub temporal: Plan,
    pub decoder: Plan,
    pub step: Plan,
    /// Frames the temporal graph reads (its input's first axis).
    pub frames: usize,
}

/// Frames the temporal graph of `plan` reads: the first axis of its input, which
/// the exporter fixes.
pub(super) fn frames_of(plan: &Plan, origin: &str) -> Result<usize> {
    let model = plan.model();
    let frames = model
        .input_fact(0)
        .ok()
        .and_then(|fact| fact.shape.as_concrete().and_then(|s| s.first().copied()));
    match frames {
        Some(frames) if frames >= 2 => Ok(frames),
        _ => Err(RuntimeError::Graph {
            origin: origin.into(),
            graph: io::TEMPORAL.into(),
            reason: "the input `image_tokens` needs a fixed frame count (at least 2) on its first axis"
                .into(),
        }),
    }
}

impl Runtime {
    /// Frames a clip is read as, when the bundle captions clips.
    pub fn clip_frames(&self) -> Option<usize> {
        self.clip.as_ref().map(|c| c.frames)
    }

    fn clip_plans(&self) -> Result<&ClipPlans> {
        self.clip.as_ref().ok_or_else(|| RuntimeError::Run {
            graph: io::TEMPORAL.into(),
            reason: "this bundle captions single images, not clips (no temporal graph)".into(),
        })
    }

    /// The memory `[1, frames * n, d]` of a clip given as its frames' image tokens
    /// (each `[1, n, d]`, in order; exactly [`Runtime::clip_frames`] of them).
    pub fn clip_memory(&self, frames: &[&Tensor]) -> Result<Tensor> {
        let plans = self.clip_plans()?;
        let graph = io::TEMPORAL;
        if frames.len() != plans.frames {
            return Err(shape_error(
                graph,
                format!(
                    "a clip of {} frames; this bundle reads {}",
                    frames.len(),
                    plans.frames
                ),
            ));
        }
        let shape = frames[0].shape().to_vec();
        let mut values = Vec::with_capacity(frames.len() * frames[0].len());
        for tokens in frames {
            if tokens.shape() != shape.as_slice() {
                return Err(shape_error(
                    graph,
                    format!("frames of shapes {shape:?} and {:?}", tokens.shape()),
                ));
            }
            let view = tokens
                .to_plain_array_view::<f32>()
                .map_err(|e| shape_error(graph, e))?;
            values.extend(view.iter().copied());
        }
        let mut stacked = shape;
        stacked[0] = frames.len();
        let input = Tensor::from_shape(&stacked, &values).map_err(|e| shape_error(graph, e))?;
        let out = run(&plans.temporal, graph, tvec!(input.into()))?;
        Ok(output(&out, 0, graph)?.clone().into_tensor())
    }

    /// The caption of a clip from its memory ([`Runtime::clip_memory`]).
    pub fn caption_clip(&self, memory: &Tensor, opts: DecodeOptions) -> Result<String> {
        let plans = self.clip_plans()?;
        let special = self.decoder_tokenizer.special_ids();
        let max_len = opts.max_len.min(self.manifest.decoder.max_len);
        let mut model = CachedDecoder::over(
            self,
            memory,
            &plans.decoder,
            &plans.step,
            io::CLIP_DECODER,
            io::CLIP_STEP,
        );
        let ids = if opts.beam_size <= 1 {
            search::greedy(&mut model, 1, special.cls, special.sep, max_len)?
                .pop()
                .unwrap_or_default()
        } else {
            search::beam(&mut model, special.cls, special.sep, max_len, opts)?
        };
        Ok(self.decoder_tokenizer.decode(&ids)?)
    }
}

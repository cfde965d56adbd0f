//! The caption decoder with a KV cache: the first call runs the prefix graph and
//! keeps every layer's keys and values; each later call feeds only the newest
//! token to the step graph, after reordering the cache rows to follow the beams.

use edgevlm_shared::bundle::io;
use edgevlm_shared::search::{log_softmax, NextToken};
use tract_onnx::prelude::*;

use super::{run, shape_error, to_vec, EncodedImage, Result, Runtime};

pub struct CachedDecoder<'a> {
    runtime: &'a Runtime,
    image: &'a EncodedImage,
    /// Per layer (keys, values), `[rows, heads, len, d_head]`.
    cache: Vec<(Tensor, Tensor)>,
}

/// Rows `rows` of `t` along axis 0, in that order.
fn take_rows(t: &Tensor, rows: &[usize], graph: &str) -> Result<Tensor> {
    let view = t
        .to_plain_array_view::<f32>()
        .map_err(|e| shape_error(graph, e))?;
    Ok(view.select(tract_ndarray::Axis(0), rows).into_tensor())
}

impl<'a> CachedDecoder<'a> {
    pub fn new(runtime: &'a Runtime, image: &'a EncodedImage) -> Self {
        Self {
            runtime,
            image,
            cache: Vec::new(),
        }
    }

    fn image_rows(&self, rows: usize, graph: &str) -> Result<Tensor> {
        take_rows(&self.image.tokens, &vec![0; rows], graph)
    }

    /// Log-probabilities of the last position of each row of `logits` `[rows, len, vocab]`.
    fn last_log_probs(&mut self, out: TVec<TValue>, rows: usize, graph: &str) -> Result<Vec<Vec<f32>>> {
        let logits = to_vec(&out[0], graph)?;
        let vocab = self.runtime.manifest.decoder.vocab;
        let len = logits.len() / (rows * vocab);
        self.cache = out[1..]
            .chunks(2)
            .map(|kv| (kv[0].clone().into_tensor(), kv[1].clone().into_tensor()))
            .collect();
        Ok((0..rows)
            .map(|r| log_softmax(&logits[(r * len + len - 1) * vocab..(r * len + len) * vocab]))
            .collect())
    }
}

impl NextToken for CachedDecoder<'_> {
    type Error = super::RuntimeError;

    fn next_log_probs(&mut self, prefixes: &[Vec<u32>], parents: Option<&[usize]>) -> Result<Vec<Vec<f32>>> {
        let rows = prefixes.len();
        match parents {
            None => {
                let graph = io::CAPTION_DECODER;
                let len = prefixes[0].len();
                let ids: Vec<i64> = prefixes.iter().flatten().map(|&t| t as i64).collect();
                let ids = Tensor::from_shape(&[rows, len], &ids).map_err(|e| shape_error(graph, e))?;
                let image = self.image_rows(rows, graph)?;
                let out = run(&self.runtime.decoder, graph, tvec!(image.into(), ids.into()))?;
                self.last_log_probs(out, rows, graph)
            }
            Some(parents) => {
                let graph = io::CAPTION_STEP;
                let identity = parents.len() == self.cache.first().map_or(0, |c| c.0.shape()[0])
                    && parents.iter().enumerate().all(|(i, &p)| i == p);
                let mut inputs: TVec<TValue> = tvec!();
                inputs.push(self.image_rows(rows, graph)?.into());
                let last: Vec<i64> = prefixes.iter().map(|p| *p.last().unwrap_or(&0) as i64).collect();
                inputs.push(
                    Tensor::from_shape(&[rows, 1], &last)
                        .map_err(|e| shape_error(graph, e))?
                        .into(),
                );
                let position = prefixes[0].len() as i64 - 1;
                inputs.push(
                    Tensor::from_shape(&[1], &[position])
                        .map_err(|e| shape_error(graph, e))?
                        .into(),
                );
                for (k, v) in std::mem::take(&mut self.cache) {
                    let (k, v) = if identity {
                        (k, v)
                    } else {
                        (take_rows(&k, parents, graph)?, take_rows(&v, parents, graph)?)
                    };
                    inputs.push(k.into());
                    inputs.push(v.into());
                }
                let out = run(&self.runtime.decoder_step, graph, inputs)?;
                self.last_log_probs(out, rows, graph)
            }
        }
    }
}

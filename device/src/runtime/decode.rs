//! The caption decoder with a KV cache: the first call runs the prefix graph and
//! keeps every layer's keys and values, and its keys and values of the image;
//! each later call feeds only the newest token to the step graph, after
//! reordering the cache rows to follow the beams. Bundles exported before the
//! prefix graph gave the image's keys and values have a step graph that reads
//! the image tokens and projects them on every call; they decode as before.

use edgevlm_shared::bundle::io;
use edgevlm_shared::search::{log_softmax, NextToken};
use tract_onnx::prelude::*;

use super::{output, run, shape_error, to_vec, EncodedImage, Plan, Result, Runtime};

pub struct CachedDecoder<'a> {
    runtime: &'a Runtime,
    /// The memory the decoder reads: an image's tokens or a clip's.
    memory: &'a Tensor,
    prefix: (&'a Plan, &'static str),
    step: (&'a Plan, &'static str),
    /// Per layer (keys, values), `[rows, heads, len, d_head]`.
    cache: Vec<(Tensor, Tensor)>,
    /// Per layer, keys then values of the memory `[1, heads, n, d_head]`, from the
    /// prefix graph; empty when the step graph reads the image tokens itself.
    memory_kv: Vec<TValue>,
    /// The step graph's first input is the image tokens (older bundles).
    step_reads_tokens: bool,
}

/// Whether a step graph reads the image tokens (and projects them on every call)
/// rather than the image's keys and values from the prefix graph.
fn reads_tokens(step: &Plan) -> bool {
    let model = step.model();
    model
        .input_outlets()
        .ok()
        .and_then(|inputs| inputs.first())
        .is_some_and(|o| model.node(o.node).name == io::IMAGE_TOKENS)
}

/// Rows `rows` of `t` along axis 0, in that order.
fn take_rows(t: &Tensor, rows: &[usize], graph: &str) -> Result<Tensor> {
    let view = t
        .to_plain_array_view::<f32>()
        .map_err(|e| shape_error(graph, e))?;
    Ok(view.select(tract_ndarray::Axis(0), rows).into_tensor())
}

/// The logits of the last position of each row of `[rows, len, vocab]`, after
/// checking that the graph gave that shape (`len >= 1`).
fn last_positions<'l>(logits: &'l [f32], rows: usize, vocab: usize, graph: &str) -> Result<Vec<&'l [f32]>> {
    let per_row = rows.checked_mul(vocab).filter(|&n| n > 0);
    let len = per_row.map_or(0, |n| logits.len() / n);
    if len == 0 || per_row.map(|n| n * len) != Some(logits.len()) {
        return Err(shape_error(
            graph,
            format!(
                "logits: expected {rows} rows x len x {vocab} (vocab) values with len >= 1, got {}",
                logits.len()
            ),
        ));
    }
    Ok((0..rows)
        .map(|r| &logits[(r * len + len - 1) * vocab..(r * len + len) * vocab])
        .collect())
}

impl<'a> CachedDecoder<'a> {
    /// The image decoders over an image's tokens.
    pub fn new(runtime: &'a Runtime, image: &'a EncodedImage) -> Self {
        Self::over(
            runtime,
            &image.tokens,
            &runtime.decoder,
            &runtime.decoder_step,
            io::CAPTION_DECODER,
            io::CAPTION_STEP,
        )
    }

    /// The decoder graphs `prefix` and `step` (named for errors) over `memory`.
    pub fn over(
        runtime: &'a Runtime,
        memory: &'a Tensor,
        prefix: &'a Plan,
        step: &'a Plan,
        prefix_name: &'static str,
        step_name: &'static str,
    ) -> Self {
        Self {
            runtime,
            memory,
            prefix: (prefix, prefix_name),
            step: (step, step_name),
            cache: Vec::new(),
            memory_kv: Vec::new(),
            step_reads_tokens: reads_tokens(step),
        }
    }

    /// The memory `[1, n, d]`: the graphs broadcast it over the rows.
    fn image_rows(&self, _rows: usize, _graph: &str) -> Result<Tensor> {
        Ok(self.memory.clone())
    }

    /// Log-probabilities of the last position of each row of `logits` `[rows, len, vocab]`;
    /// keeps the cache, and from the `prefix` graph the image's keys and values.
    fn last_log_probs(
        &mut self,
        out: TVec<TValue>,
        rows: usize,
        graph: &str,
        prefix: bool,
    ) -> Result<Vec<Vec<f32>>> {
        let logits = to_vec(output(&out, 0, graph)?, graph)?;
        let layers = self.runtime.manifest.decoder.layers;
        let gives_memory = prefix && !self.step_reads_tokens;
        let expected = 1 + 2 * layers + if gives_memory { 2 * layers } else { 0 };
        if out.len() != expected {
            return Err(shape_error(
                graph,
                format!(
                    "expected logits, a key and value per layer{} ({expected} outputs for {layers} layers), got {}",
                    if gives_memory { " and the image's key and value per layer" } else { "" },
                    out.len()
                ),
            ));
        }
        let last = last_positions(&logits, rows, self.runtime.manifest.decoder.vocab, graph)?;
        // Moved out of the outputs, not cloned: a value held once becomes a tensor
        // without a copy of the cache.
        let mut values = out.into_iter().skip(1);
        self.cache.clear();
        for _ in 0..layers {
            if let (Some(k), Some(v)) = (values.next(), values.next()) {
                self.cache.push((k.into_tensor(), v.into_tensor()));
            }
        }
        if gives_memory {
            self.memory_kv = values.collect();
        }
        Ok(last.into_iter().map(log_softmax).collect())
    }
}

impl NextToken for CachedDecoder<'_> {
    type Error = super::RuntimeError;

    fn next_log_probs(&mut self, prefixes: &[Vec<u32>], parents: Option<&[usize]>) -> Result<Vec<Vec<f32>>> {
        let rows = prefixes.len();
        match parents {
            None => {
                let (plan, graph) = self.prefix;
                let len = prefixes[0].len();
                let ids: Vec<i64> = prefixes.iter().flatten().map(|&t| t as i64).collect();
                let ids = Tensor::from_shape(&[rows, len], &ids).map_err(|e| shape_error(graph, e))?;
                let image = self.image_rows(rows, graph)?;
                let out = run(plan, graph, tvec!(image.into(), ids.into()))?;
                self.last_log_probs(out, rows, graph, true)
            }
            Some(parents) => {
                let (plan, graph) = self.step;
                let identity = parents.len() == self.cache.first().map_or(0, |c| c.0.shape()[0])
                    && parents.iter().enumerate().all(|(i, &p)| i == p);
                let mut inputs: TVec<TValue> = tvec!();
                if self.step_reads_tokens {
                    inputs.push(self.image_rows(rows, graph)?.into());
                }
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
                // Shared, not copied: the values stay the prefix graph's.
                inputs.extend(self.memory_kv.iter().cloned());
                let out = run(plan, graph, inputs)?;
                self.last_log_probs(out, rows, graph, false)
            }
        }
    }
}

impl Runtime {
    /// Log-probabilities of `ids[1..]` read with teacher forcing over the image
    /// (`ids` starts with `[CLS]`; at most the decoder's `max_len` are read): how
    /// sure the decoder is of each token of a given caption.
    pub fn token_log_probs(&self, image: &EncodedImage, ids: &[u32]) -> Result<Vec<f32>> {
        let graph = io::CAPTION_DECODER;
        let ids = &ids[..ids.len().min(self.manifest.decoder.max_len)];
        if ids.len() < 2 {
            return Ok(Vec::new());
        }
        let input: Vec<i64> = ids.iter().map(|&t| t as i64).collect();
        let input = Tensor::from_shape(&[1, ids.len()], &input).map_err(|e| shape_error(graph, e))?;
        let out = run(
            &self.decoder,
            graph,
            tvec!(image.tokens.clone().into(), input.into()),
        )?;
        let logits = to_vec(output(&out, 0, graph)?, graph)?;
        let vocab = self.manifest.decoder.vocab;
        if vocab == 0 || logits.len() != ids.len() * vocab {
            return Err(shape_error(
                graph,
                format!(
                    "logits: expected {} x {vocab} values, got {}",
                    ids.len(),
                    logits.len()
                ),
            ));
        }
        let rows: Vec<&[f32]> = logits.chunks(vocab).collect();
        Ok(edgevlm_shared::explain::teacher_forced(&rows, ids))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logits_of_the_wrong_size_are_an_error_not_a_panic() {
        let logits: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let last = last_positions(&logits, 2, 3, "g").unwrap();
        assert_eq!(last, vec![&[3.0, 4.0, 5.0][..], &[9.0, 10.0, 11.0][..]]);
        for (values, rows, vocab) in [(0, 1, 3), (12, 2, 0), (12, 0, 3), (11, 2, 3), (2, 1, 3)] {
            let err = last_positions(&logits[..values], rows, vocab, "g").unwrap_err();
            assert!(err.to_string().contains("logits: expected"), "{err}");
        }
    }
}

//! How an int8 layer computes on the device, chosen by measurement: for every
//! matrix shape of the model, tract runs one M=1 product both ways — int8 weights
//! dequantized once at load (f32 compute), and dynamic int8 (the activation
//! quantized per call, `MatMulInteger`) — and the faster way is the choice.
//! `edgevlm quantize` reports the table. The bundle's graphs carry the f32-compute
//! form; a layer measured faster in int8 is reported as such.

use std::collections::BTreeMap;
use std::time::Instant;

use edgevlm_shared::rng::SplitMix64;
use prost::Message;
use serde::Serialize;
use tract_onnx::prelude::*;

use super::onnx::{Attr, Dim, GraphBuilder};
use super::quantize::quantize_per_channel;
use super::WeightFormat;
use crate::error::{Error, Result};
use crate::model::params::named_parameters;
use crate::model::saved::SavedModel;

#[derive(Debug, Clone, Serialize)]
pub struct LayerTiming {
    /// `[in, out]` of the weight matrix.
    pub shape: [usize; 2],
    /// Layers of the model with this shape.
    pub layers: usize,
    pub f32_ms: f64,
    pub int8_ms: f64,
    pub choice: &'static str,
}

fn random(n: usize, rng: &mut SplitMix64) -> Vec<f32> {
    (0..n).map(|_| rng.unit() as f32 * 2.0 - 1.0).collect()
}

/// `x [1, k] · W [k, n]`, W stored as int8 and dequantized by the graph.
fn dequantized(k: usize, n: usize, w: &[f32]) -> Vec<u8> {
    let mut g = GraphBuilder::new("probe_f32", WeightFormat::Int8);
    let x = g.input_f32("x", &[Dim::Fixed(1), Dim::Fixed(k)]);
    let w = g.weight("w", w, &[k, n], 1);
    let y = g.matmul(&x, &w);
    g.output(&y, "y", &[Dim::Fixed(1), Dim::Fixed(n)]);
    g.finish().encode_to_vec()
}

/// The same product with the activation quantized per call: DynamicQuantizeLinear,
/// MatMulInteger on int8 weights, then both scales.
fn dynamic_int8(k: usize, n: usize, w: &[f32]) -> Vec<u8> {
    let q = quantize_per_channel(w, &[k, n], 1);
    let mut g = GraphBuilder::new("probe_int8", WeightFormat::F32);
    let x = g.input_f32("x", &[Dim::Fixed(1), Dim::Fixed(k)]);
    let xq = g.node_multi("DynamicQuantizeLinear", &[&x], 3);
    let wq = g.constant_i8("w", &q.values, &[k, n]);
    let acc = g.node("MatMulInteger", &[&xq[0], &wq, &xq[2]], vec![]);
    // ONNX TensorProto.DataType FLOAT.
    let acc = g.node("Cast", &[&acc], vec![("to", Attr::Int(1))]);
    let y = g.mul(&acc, &xq[1]);
    let scales = g.constant("w_scale", &q.scales, &[n]);
    let y = g.mul(&y, &scales);
    g.output(&y, "y", &[Dim::Fixed(1), Dim::Fixed(n)]);
    g.finish().encode_to_vec()
}

/// Median milliseconds of one run of `graph` on `x`.
fn time(graph: &[u8], x: &Tensor, runs: usize) -> Result<f64> {
    let fail = |e: TractError| Error::Invalid(format!("timing probe: {e:#}"));
    let plan = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(graph))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(fail)?;
    for _ in 0..runs / 10 + 1 {
        plan.run(tvec!(x.clone().into())).map_err(fail)?;
    }
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            plan.run(tvec!(x.clone().into()))
                .map(|_| t.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<TractResult<_>>()
        .map_err(fail)?;
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Times every weight-matrix shape of the model both ways (one thread).
pub fn measure(saved: &SavedModel, runs: usize) -> Result<Vec<LayerTiming>> {
    let mut shapes: BTreeMap<[usize; 2], usize> = BTreeMap::new();
    for p in named_parameters(&saved.model) {
        // Embedding tables are looked up, not multiplied.
        if p.shape.len() == 2 && !p.path.contains("embedding") {
            *shapes.entry([p.shape[0], p.shape[1]]).or_default() += 1;
        }
    }
    let mut rng = SplitMix64::new(7);
    shapes
        .into_iter()
        .map(|([k, n], layers)| {
            let w = random(k * n, &mut rng);
            let x = Tensor::from_shape(&[1, k], &random(k, &mut rng))
                .map_err(|e| Error::Invalid(format!("timing probe: {e}")))?;
            let f32_ms = time(&dequantized(k, n, &w), &x, runs)?;
            let int8_ms = time(&dynamic_int8(k, n, &w), &x, runs)?;
            Ok(LayerTiming {
                shape: [k, n],
                layers,
                f32_ms,
                int8_ms,
                choice: if f32_ms <= int8_ms {
                    "f32 (dequantized at load)"
                } else {
                    "int8"
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both probe graphs compute the product of the quantized weights.
    #[test]
    fn both_probes_compute_the_quantized_product() {
        let (k, n) = (16, 8);
        let mut rng = SplitMix64::new(3);
        let w = random(k * n, &mut rng);
        let xs = random(k, &mut rng);
        let q = quantize_per_channel(&w, &[k, n], 1);
        let expected: Vec<f32> = (0..n)
            .map(|j| {
                (0..k)
                    .map(|i| xs[i] * q.values[i * n + j] as f32 * q.scales[j])
                    .sum()
            })
            .collect();
        let x = Tensor::from_shape(&[1, k], &xs).unwrap();
        for (graph, tolerance) in [(dequantized(k, n, &w), 1e-5), (dynamic_int8(k, n, &w), 0.05)] {
            let plan = tract_onnx::onnx()
                .model_for_read(&mut std::io::Cursor::new(graph))
                .unwrap()
                .into_optimized()
                .unwrap()
                .into_runnable()
                .unwrap();
            let out = plan.run(tvec!(x.clone().into())).unwrap();
            let got: Vec<f32> = out[0]
                .to_plain_array_view::<f32>()
                .unwrap()
                .iter()
                .copied()
                .collect();
            for (a, b) in got.iter().zip(&expected) {
                assert!((a - b).abs() < tolerance, "{a} vs {b}");
            }
        }
    }
}

//! Weight-only int8 quantization: symmetric, one scale per output channel.
//!
//! Only weights are quantized. At batch 1 (one image, one decode step) tract runs
//! f32 matrix products faster than int8 ones (see `../shared/notes`), and it folds
//! `DequantizeLinear` of weights up to 4 MiB into f32 constants at load: the bundle
//! is about 4x smaller while the device computes in f32. Activations stay f32, so
//! there is nothing to calibrate.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightFormat {
    F32,
    Int8,
}

pub struct Quantized {
    pub values: Vec<i8>,
    /// One per slice along the channel axis; value = q * scale.
    pub scales: Vec<f32>,
}

/// Quantizes `values` (row-major, shape `dims`) with one symmetric scale per index
/// along `axis`: `scale = max|w| / 127`, `q = round(w / scale)`.
pub fn quantize_per_channel(values: &[f32], dims: &[usize], axis: usize) -> Quantized {
    let channels = dims[axis];
    let inner: usize = dims[axis + 1..].iter().product();
    let channel_of = |i: usize| (i / inner) % channels;
    let mut max_abs = vec![0f32; channels];
    for (i, v) in values.iter().enumerate() {
        let c = channel_of(i);
        max_abs[c] = max_abs[c].max(v.abs());
    }
    // An all-zero channel keeps scale 1 so that dequantization stays finite.
    let scales: Vec<f32> = max_abs
        .iter()
        .map(|&m| if m > 0.0 { m / 127.0 } else { 1.0 })
        .collect();
    let values = values
        .iter()
        .enumerate()
        .map(|(i, v)| (v / scales[channel_of(i)]).round().clamp(-127.0, 127.0) as i8)
        .collect();
    Quantized { values, scales }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_channel_scales_follow_the_axis() {
        // [2, 3]: channels along axis 1 are the columns.
        let w = [1.0, -0.5, 0.0, -2.0, 0.25, 0.0];
        let q = quantize_per_channel(&w, &[2, 3], 1);
        assert_eq!(q.scales, vec![2.0 / 127.0, 0.5 / 127.0, 1.0]);
        assert_eq!(q.values, vec![64, -127, 0, -127, 64, 0]);
        // Along axis 0 the rows: row 0 max 1.0, row 1 max 2.0.
        let q = quantize_per_channel(&w, &[2, 3], 0);
        assert_eq!(q.scales, vec![1.0 / 127.0, 2.0 / 127.0]);
        assert_eq!(q.values, vec![127, -64, 0, -127, 16, 0]);
        // Round trip error is at most half a step per channel.
        for (i, v) in w.iter().enumerate() {
            let back = q.values[i] as f32 * q.scales[i / 3];
            assert!((back - v).abs() <= q.scales[i / 3] / 2.0 + 1e-7);
        }
    }
}

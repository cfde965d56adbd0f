//! A linear layer's weights packed into panels of `COLS` outputs as int8, where
//! the graph's values are an int8 bundle's dequantized ones.

use super::super::tile::COLS;

/// The weights as int8 values, in panels of `COLS` outputs each `[inputs][COLS]`
/// (the last padded with zeros), and one scale per output.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Panels {
    pub values: Vec<i8>,
    pub scales: Vec<f32>,
}

impl Panels {
    /// Packs `weight(input, output)` when every output's values are `q · scale`
    /// exactly for one scale (an int8 bundle's symmetric `scale = max|w| / 127`,
    /// found again to the bit); `None` for other weights.
    pub(super) fn int8(
        inputs: usize,
        outputs: usize,
        weight: impl Fn(usize, usize) -> f32,
    ) -> Option<Panels> {
        let panel_count = outputs.div_ceil(COLS);
        let mut scales = vec![0f32; panel_count * COLS];
        let mut values = vec![0i8; panel_count * inputs * COLS];
        for (o, scale) in scales.iter_mut().enumerate().take(outputs) {
            *scale = int8_scale(inputs, |i| weight(i, o))?;
            for i in 0..inputs {
                values[(o / COLS) * inputs * COLS + i * COLS + o % COLS] =
                    (weight(i, o) / *scale).round() as i8;
            }
        }
        Some(Panels { values, scales })
    }
}

/// The scale `s` with every one of `column`'s `len` values equal to `q · s` in
/// f32 for an integer `q` in `-127..=127`, where there is one.
pub(super) fn int8_scale(len: usize, column: impl Fn(usize) -> f32) -> Option<f32> {
    let max = (0..len).map(|i| column(i).abs()).fold(0f32, f32::max);
    if max == 0.0 || !max.is_finite() {
        // An all-zero column: any scale, here 1 (as the exporter writes it).
        return (max == 0.0).then_some(1.0);
    }
    // `max` is `fl(127 · s)`: `s` is within an ulp or two of `max / 127`.
    let guess = max / 127.0;
    let exact = |s: f32| {
        (0..len).all(|i| {
            let q = (column(i) / s).round();
            q.abs() <= 127.0 && q * s == column(i)
        })
    };
    let bits = guess.to_bits();
    [0i32, 1, -1, 2, -2]
        .into_iter()
        .map(|step| f32::from_bits(bits.wrapping_add_signed(step)))
        .find(|&s| exact(s))
}

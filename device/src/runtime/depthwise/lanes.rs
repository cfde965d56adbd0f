//! Small planes (EfficientNet's 7×7 stages), 32 channels at a time.
//!
//! `square`'s padded copy of a plane and its rows of vector blocks pay back on
//! large planes; on a 7×7 one a 5×5 kernel computes 80 outputs for 49 and copies
//! more than it computes. Here 32 channels' planes are interleaved (`[pixel][32]`),
//! so that four AVX vectors (eight NEON ones) hold one pixel of 32 channels: each
//! output's sums stay in registers, independent of each other, over its in-bounds
//! taps only. Each output is still its bias, then its in-bounds taps row by row,
//! a multiply then an add each: the same value as the other loops give.

use super::rows::Geometry;
use crate::runtime::swap::Clamp;

/// Channels interleaved: four AVX registers of eight, eight NEON ones of four.
const LANES: usize = 32;

type Lanes = [f32; LANES];

/// Output widths below which the planes go through `lanes`: measured with
/// `bench --profile`'s race, 7×7 outputs take half `square`'s time or less and
/// 14×14 ones up to twice as much.
const SMALL_WIDTH: usize = 8;

/// The interleaved planes a run reuses across groups of channels.
#[derive(Default)]
pub(super) struct Interleaved {
    input: Vec<Lanes>,
    output: Vec<Lanes>,
    taps: Vec<Lanes>,
}

impl Geometry {
    /// Whether `lanes` runs this convolution's planes.
    pub(super) fn small_planes(&self) -> bool {
        self.out_w < SMALL_WIDTH
    }

    /// Output planes `first..` (of the batch's `n × channels`; `output` holds them
    /// whole), `LANES` at a time; `input` holds the same planes.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn lanes(
        &self,
        input: &[f32],
        first: usize,
        kernel: &[f32],
        bias: &[f32],
        clamp: Clamp,
        output: &mut [f32],
        scratch: &mut Interleaved,
    ) {
        let taps = self.kernel_h * self.kernel_w;
        let (in_plane, out_plane) = (self.in_h * self.in_w, self.out_h * self.out_w);
        let planes = output.len() / out_plane;
        scratch.input.resize(in_plane, [0.0; LANES]);
        scratch.output.resize(out_plane, [0.0; LANES]);
        scratch.taps.resize(taps, [0.0; LANES]);
        for group in (0..planes).step_by(LANES) {
            let lanes = LANES.min(planes - group);
            let mut start = [0f32; LANES];
            for lane in 0..LANES {
                let plane = group + lane;
                // Lanes past the last plane compute zeros that are never written.
                let (values, c) = match lane < lanes {
                    true => (
                        &input[plane * in_plane..][..in_plane],
                        (first + plane) % self.channels,
                    ),
                    false => (&[][..], usize::MAX),
                };
                for (p, pixel) in scratch.input.iter_mut().enumerate() {
                    pixel[lane] = values.get(p).copied().unwrap_or(0.0);
                }
                for (t, tap) in scratch.taps.iter_mut().enumerate() {
                    tap[lane] = if lane < lanes { kernel[c * taps + t] } else { 0.0 };
                }
                // One bias per channel, or one for all.
                start[lane] = if lane < lanes { bias[c % bias.len()] } else { 0.0 };
            }
            scratch.output.fill(start);
            self.add_taps(scratch);
            for lane in 0..lanes {
                let plane = &mut output[(group + lane) * out_plane..][..out_plane];
                for (o, pixel) in plane.iter_mut().zip(&scratch.output) {
                    *o = match clamp {
                        Some((lo, hi)) => pixel[lane].max(lo).min(hi),
                        None => pixel[lane],
                    };
                }
            }
        }
    }

    /// Each output: its bias, then its in-bounds taps row by row, the sum of
    /// each lane in registers.
    #[inline(always)]
    fn add_taps(&self, scratch: &mut Interleaved) {
        let Interleaved { input, output, taps } = scratch;
        for oy in 0..self.out_h {
            let rows = valid_taps(oy, self.pad_top, self.stride_h, self.in_h, self.kernel_h);
            for ox in 0..self.out_w {
                let cols = valid_taps(ox, self.pad_left, self.stride_w, self.in_w, self.kernel_w);
                let at = oy * self.out_w + ox;
                let mut sum = output[at];
                for ky in rows.clone() {
                    let iy = oy * self.stride_h + ky - self.pad_top;
                    let ix = ox * self.stride_w + cols.start - self.pad_left;
                    let reads = &input[iy * self.in_w + ix..][..cols.len()];
                    let weights = &taps[ky * self.kernel_w + cols.start..][..cols.len()];
                    for (x, weight) in reads.iter().zip(weights) {
                        for lane in 0..LANES {
                            sum[lane] += weight[lane] * x[lane];
                        }
                    }
                }
                output[at] = sum;
            }
        }
    }
}

/// The taps `k < kernel` of output `o` that read `o * stride + k - pad` inside
/// `0..in_len`.
fn valid_taps(o: usize, pad: usize, stride: usize, in_len: usize, kernel: usize) -> std::ops::Range<usize> {
    let at = o * stride;
    let lo = pad.saturating_sub(at).min(kernel);
    let hi = (in_len + pad).saturating_sub(at).min(kernel).max(lo);
    lo..hi
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_taps_an_output_reads_in_bounds_are_those_inside_the_input() {
        for (o, pad, stride, in_len, kernel) in [
            (0, 2, 1, 7, 5),
            (6, 2, 1, 7, 5),
            (3, 2, 1, 7, 5),
            (0, 1, 2, 14, 3),
            (6, 1, 2, 14, 3),
            (1, 3, 1, 2, 7),
        ] {
            let expected: Vec<usize> = (0..kernel)
                .filter(|&k| (0..in_len as isize).contains(&((o * stride + k) as isize - pad as isize)))
                .collect();
            let got: Vec<usize> = super::valid_taps(o, pad, stride, in_len, kernel).collect();
            assert_eq!(
                got, expected,
                "output {o} pad {pad} stride {stride} of {in_len}, kernel {kernel}"
            );
        }
    }
}

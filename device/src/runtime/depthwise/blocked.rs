//! The loops with channels in blocks of eight (`crate::runtime::blocked`): one
//! vector is one pixel of eight channels. Each block's plane is copied once with
//! its padding written out as zeros, and each output row then runs in runs of up
//! to eight outputs whose sums stay in registers: each its bias, then every tap
//! row by row, a multiply then an add per vector (never fused), a padding tap
//! adding an exact zero as in the NCHW loops: the same values, no columns
//! computed to be dropped, no plane a few vectors wide.

use super::rows::Geometry;
use crate::runtime::blocked::BLOCK;
use crate::runtime::swap::Clamp;

type Lanes = [f32; BLOCK];

/// A depthwise convolution's weights and biases as the blocked loops read them:
/// for each block of eight channels, each tap's eight weights, then its eight biases.
#[derive(Debug, Clone, PartialEq)]
pub struct LaneWeights {
    /// `[blocks][taps][8]`.
    pub taps: Vec<f32>,
    /// `[blocks][8]`.
    pub bias: Vec<f32>,
}

impl LaneWeights {
    /// From `kernel` `[channels][taps]` and one bias per channel (or one for all).
    pub fn pack(kernel: &[f32], bias: &[f32], channels: usize, taps: usize) -> Self {
        let mut lanes = Self {
            taps: vec![0f32; channels * taps],
            bias: vec![0f32; channels],
        };
        for c in 0..channels {
            let (block, lane) = (c / BLOCK, c % BLOCK);
            for t in 0..taps {
                lanes.taps[(block * taps + t) * BLOCK + lane] = kernel[c * taps + t];
            }
            lanes.bias[c] = bias[c % bias.len()];
        }
        lanes
    }
}

impl Geometry {
    /// Blocks `first..` of channels, in order, with `kernel` and `bias` as
    /// `LaneWeights` packs them.
    #[inline(always)]
    pub(super) fn blocks(
        &self,
        input: &[f32],
        first: usize,
        kernel: &[f32],
        bias: &[f32],
        clamp: Clamp,
        output: &mut [f32],
    ) {
        let taps = self.kernel_h * self.kernel_w;
        let in_plane = self.in_h * self.in_w * BLOCK;
        let out_plane = self.out_h * self.out_w * BLOCK;
        let padded = Padded::new(self);
        let direct = self.in_h * self.in_w > DIRECT_MIN_PIXELS;
        let mut plane = if direct {
            Vec::new()
        } else {
            vec![0f32; padded.len()]
        };
        let (weights, biases) = (kernel.as_chunks::<BLOCK>().0, bias.as_chunks::<BLOCK>().0);
        for (b, (x, y)) in input
            .chunks_exact(in_plane)
            .zip(output.chunks_exact_mut(out_plane))
            .enumerate()
        {
            let weights = &weights[(first + b) * taps..][..taps];
            let lanes_bias = biases[first + b];
            if direct {
                self.plane_direct(x, weights, lanes_bias, clamp, y);
            } else {
                padded.fill(self, x, &mut plane);
                self.plane(&padded, &plane, weights, lanes_bias, clamp, y);
            }
        }
    }

    /// One block's outputs from its padded input: each output row in runs of up
    /// to `RUN` pixels, their sums in registers.
    #[inline(always)]
    fn plane(
        &self,
        padded: &Padded,
        plane: &[f32],
        weights: &[Lanes],
        bias: Lanes,
        clamp: Clamp,
        y: &mut [f32],
    ) {
        let (kh, kw) = (self.kernel_h, self.kernel_w);
        assert!(
            plane.len() == padded.len()
                && y.len() == self.out_h * self.out_w * BLOCK
                && weights.len() == kh * kw
        );
        for oy in 0..self.out_h {
            for first in (0..self.out_w).step_by(RUN) {
                let len = RUN.min(self.out_w - first);
                let taps = Taps {
                    x: plane[(oy * self.stride_h * padded.w + first * self.stride_w) * BLOCK..].as_ptr(),
                    row_step: padded.w * BLOCK,
                    output_step: self.stride_w * BLOCK,
                    w: weights.as_ptr() as *const f32,
                    w_row: kw * BLOCK,
                    rows: kh,
                    cols: kw,
                };
                let out = &mut y[(oy * self.out_w + first) * BLOCK..][..len * BLOCK];
                // SAFETY: output `(oy, first + u)`'s taps read padded rows `oy ·
                // stride_h + ky` and columns `(first + u) · stride_w + kx`, inside
                // the padded plane (`Padded::new` sized it for every output); the
                // weights are `kh · kw` pixels of lanes.
                unsafe { taps.run(len, &bias, clamp, out) };
            }
        }
    }
}

impl Geometry {
    /// One block's outputs straight from its input, for planes larger than a
    /// copy is worth: each row's outputs whose taps all lie inside the input in
    /// runs of up to `RUN`, the few at its ends one at a time over their taps
    /// inside it (skipping a padding tap instead of adding its exact zero: the
    /// same value, but for the sign of a zero); rows at the top and bottom over
    /// their kernel rows inside the input.
    #[inline(always)]
    fn plane_direct(&self, x: &[f32], weights: &[Lanes], bias: Lanes, clamp: Clamp, y: &mut [f32]) {
        let (kh, kw, sw) = (self.kernel_h, self.kernel_w, self.stride_w);
        assert!(
            x.len() == self.in_h * self.in_w * BLOCK
                && y.len() == self.out_h * self.out_w * BLOCK
                && weights.len() == kh * kw
        );
        let interior_lo = self.pad_left.div_ceil(sw).min(self.out_w);
        let interior_hi = if self.in_w + self.pad_left >= kw {
            ((self.in_w + self.pad_left - kw) / sw + 1).min(self.out_w)
        } else {
            0
        }
        .max(interior_lo);
        for oy in 0..self.out_h {
            let top = oy * self.stride_h;
            let ky_lo = self.pad_top.saturating_sub(top);
            let ky_hi = (self.in_h + self.pad_top).saturating_sub(top).min(kh).max(ky_lo);
            let rows = ky_hi - ky_lo;
            // The input row of kernel row `ky_lo` (any row when there is none).
            let iy = (top + ky_lo).saturating_sub(self.pad_top).min(self.in_h - 1);
            let row = &x[iy * self.in_w * BLOCK..];
            let taps = |first_col: usize, kx_lo: usize, cols: usize| Taps {
                x: row[first_col * BLOCK..].as_ptr(),
                row_step: self.in_w * BLOCK,
                output_step: sw * BLOCK,
                w: weights[ky_lo * kw + kx_lo.min(kw - 1)..].as_ptr() as *const f32,
                w_row: kw * BLOCK,
                rows,
                cols,
            };
            let out_row = &mut y[oy * self.out_w * BLOCK..][..self.out_w * BLOCK];
            for ox in (0..interior_lo).chain(interior_hi..self.out_w) {
                let left = ox * sw;
                let kx_lo = self.pad_left.saturating_sub(left);
                let kx_hi = (self.in_w + self.pad_left)
                    .saturating_sub(left)
                    .min(kw)
                    .max(kx_lo);
                let first_col = (left + kx_lo).saturating_sub(self.pad_left).min(self.in_w - 1);
                let out = &mut out_row[ox * BLOCK..][..BLOCK];
                // SAFETY: the output's taps inside the input: rows `iy..iy + rows`,
                // columns `first_col..first_col + kx_hi - kx_lo`, and their weights.
                unsafe { taps(first_col, kx_lo, kx_hi - kx_lo).run(1, &bias, clamp, out) };
            }
            for first in (interior_lo..interior_hi).step_by(RUN) {
                let len = RUN.min(interior_hi - first);
                let out = &mut out_row[first * BLOCK..][..len * BLOCK];
                // SAFETY: outputs `first..first + len` lie in the interior: all their
                // columns `(first + u) · sw + kx - pad_left` are inside the row, and
                // their rows `iy..iy + rows` inside the input.
                unsafe { taps(first * sw - self.pad_left, 0, kw).run(len, &bias, clamp, out) };
            }
        }
    }
}

/// A block's input plane with its padding written out as zeros (every tap then
/// adds its product, an exact zero in the padding, as the NCHW loops do), wide
/// and high enough for every output's taps.
struct Padded {
    w: usize,
    h: usize,
}

impl Padded {
    fn new(g: &Geometry) -> Self {
        Self {
            w: ((g.out_w - 1) * g.stride_w + g.kernel_w).max(g.pad_left + g.in_w),
            h: ((g.out_h - 1) * g.stride_h + g.kernel_h).max(g.pad_top + g.in_h),
        }
    }

    fn len(&self) -> usize {
        self.w * self.h * BLOCK
    }

    /// The block `x` copied inside the padding (which stays zero from the start).
    #[inline(always)]
    fn fill(&self, g: &Geometry, x: &[f32], plane: &mut [f32]) {
        let row = g.in_w * BLOCK;
        for (iy, from) in x.chunks_exact(row).enumerate() {
            let at = ((iy + g.pad_top) * self.w + g.pad_left) * BLOCK;
            plane[at..][..row].copy_from_slice(from);
        }
    }
}

/// The taps of a run of outputs of one row: input pixel `(row, col)` of output
/// `u` at `x + row · row_step + col · 8 + u · output_step`, its weight at `w +
/// row · w_row + col · 8`.
struct Taps {
    x: *const f32,
    row_step: usize,
    output_step: usize,
    w: *const f32,
    w_row: usize,
    rows: usize,
    cols: usize,
}

impl Taps {
    /// Safety: every read above is in bounds for `u < len`, `len <= RUN`.
    #[inline(always)]
    unsafe fn run(&self, len: usize, bias: &Lanes, clamp: Clamp, out: &mut [f32]) {
        // SAFETY: the caller's promise.
        unsafe {
            match len {
                8 => self.sums::<8>(bias, clamp, out),
                7 => self.sums::<7>(bias, clamp, out),
                6 => self.sums::<6>(bias, clamp, out),
                5 => self.sums::<5>(bias, clamp, out),
                4 => self.sums::<4>(bias, clamp, out),
                3 => self.sums::<3>(bias, clamp, out),
                2 => self.sums::<2>(bias, clamp, out),
                _ => self.sums::<1>(bias, clamp, out),
            }
        }
    }

    /// `U` outputs, each its bias, then every tap row by row, a multiply then
    /// an add (never fused), clamped max then min as the graph's Clip.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx")]
    #[inline]
    unsafe fn sums<const U: usize>(&self, bias: &Lanes, clamp: Clamp, out: &mut [f32]) {
        use std::arch::x86_64::*;
        assert!(out.len() >= U * BLOCK);
        // SAFETY: AVX is enabled here; the caller promises the reads, `out` holds the writes.
        unsafe {
            let mut sums = [_mm256_loadu_ps(bias.as_ptr()); U];
            for row in 0..self.rows {
                let mut x = self.x.add(row * self.row_step);
                let mut w = self.w.add(row * self.w_row);
                for _ in 0..self.cols {
                    let weight = _mm256_loadu_ps(w);
                    for (u, sum) in sums.iter_mut().enumerate() {
                        let v = _mm256_loadu_ps(x.add(u * self.output_step));
                        *sum = _mm256_add_ps(*sum, _mm256_mul_ps(weight, v));
                    }
                    w = w.add(BLOCK);
                    x = x.add(BLOCK);
                }
            }
            for (u, mut sum) in sums.into_iter().enumerate() {
                if let Some((lo, hi)) = clamp {
                    sum = _mm256_min_ps(_mm256_max_ps(sum, _mm256_set1_ps(lo)), _mm256_set1_ps(hi));
                }
                _mm256_storeu_ps(out.as_mut_ptr().add(u * BLOCK), sum);
            }
        }
    }

    #[cfg(target_arch = "aarch64")]
    #[inline(always)]
    unsafe fn sums<const U: usize>(&self, bias: &Lanes, clamp: Clamp, out: &mut [f32]) {
        use std::arch::aarch64::*;
        assert!(out.len() >= U * BLOCK);
        // SAFETY: NEON is part of aarch64; the caller promises the reads, `out`
        // holds the writes.
        unsafe {
            let start = [vld1q_f32(bias.as_ptr()), vld1q_f32(bias.as_ptr().add(4))];
            let mut sums = [start; U];
            for row in 0..self.rows {
                let mut x = self.x.add(row * self.row_step);
                let mut w = self.w.add(row * self.w_row);
                for _ in 0..self.cols {
                    let weight = [vld1q_f32(w), vld1q_f32(w.add(4))];
                    for (u, sum) in sums.iter_mut().enumerate() {
                        let v = x.add(u * self.output_step);
                        sum[0] = vaddq_f32(sum[0], vmulq_f32(weight[0], vld1q_f32(v)));
                        sum[1] = vaddq_f32(sum[1], vmulq_f32(weight[1], vld1q_f32(v.add(4))));
                    }
                    w = w.add(BLOCK);
                    x = x.add(BLOCK);
                }
            }
            for (u, sum) in sums.into_iter().enumerate() {
                for (half, mut v) in sum.into_iter().enumerate() {
                    if let Some((lo, hi)) = clamp {
                        v = vminq_f32(vmaxq_f32(v, vdupq_n_f32(lo)), vdupq_n_f32(hi));
                    }
                    vst1q_f32(out.as_mut_ptr().add(u * BLOCK + half * 4), v);
                }
            }
        }
    }

    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    #[inline(always)]
    unsafe fn sums<const U: usize>(&self, bias: &Lanes, clamp: Clamp, out: &mut [f32]) {
        let mut sums = [*bias; U];
        for row in 0..self.rows {
            for col in 0..self.cols {
                // SAFETY: the caller's promise.
                let (w, x) = unsafe {
                    (
                        &*(self.w.add(row * self.w_row + col * BLOCK) as *const Lanes),
                        self.x.add(row * self.row_step + col * BLOCK),
                    )
                };
                for (u, sum) in sums.iter_mut().enumerate() {
                    // SAFETY: the caller's promise.
                    let v = unsafe { &*(x.add(u * self.output_step) as *const Lanes) };
                    for lane in 0..BLOCK {
                        sum[lane] += w[lane] * v[lane];
                    }
                }
            }
        }
        for (u, sum) in sums.iter().enumerate() {
            store(&mut out[u * BLOCK..][..BLOCK], sum, clamp);
        }
    }
}

/// Input planes larger than this many pixels (56×56 and up) are read in place:
/// copying a plane that size costs more than the few outputs at its edges that
/// the copy would spare a loop of their own.
const DIRECT_MIN_PIXELS: usize = 32 * 32;

/// Outputs of a row computed together: eight sums of eight lanes, in registers
/// (eight AVX ones, sixteen NEON ones).
const RUN: usize = 8;

/// One pixel's eight outputs, clamped max then min as the graph's Clip.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
#[inline(always)]
fn store(out: &mut [f32], sum: &Lanes, clamp: Clamp) {
    for (o, &s) in out.iter_mut().zip(sum) {
        *o = match clamp {
            Some((lo, hi)) => s.max(lo).min(hi),
            None => s,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::blocked::to_blocked;

    /// The blocked loops give the NCHW loops' outputs, blocked.
    fn same_as_nchw(
        channels: usize,
        (in_h, in_w): (usize, usize),
        k: usize,
        stride: usize,
        pads: (usize, usize),
    ) {
        let out = |len: usize, pad: usize| (len + 2 * pad - k) / stride + 1;
        let g = Geometry {
            batch: 1,
            channels,
            in_h,
            in_w,
            out_h: out(in_h, pads.0),
            out_w: out(in_w, pads.1),
            kernel_h: k,
            kernel_w: k,
            stride_h: stride,
            stride_w: stride,
            pad_top: pads.0,
            pad_left: pads.1,
        };
        let x: Vec<f32> = (0..channels * in_h * in_w)
            .map(|i| (i as f32 * 0.37).sin() * 3.0)
            .collect();
        let kernel: Vec<f32> = (0..channels * k * k).map(|i| (i as f32 * 0.71).cos()).collect();
        for (bias, clamp) in [
            (
                (0..channels).map(|c| c as f32 * 0.1 - 0.4).collect::<Vec<_>>(),
                Some((0.0, 6.0)),
            ),
            (vec![0.25], None),
        ] {
            let n = channels * g.out_h * g.out_w;
            let (mut nchw, mut blocked) = (vec![0f32; n], vec![0f32; n]);
            g.run(false, &x, &kernel, &bias, clamp, &mut nchw).unwrap();
            let lanes = LaneWeights::pack(&kernel, &bias, channels, k * k);
            g.run(
                true,
                &to_blocked(&x, channels),
                &lanes.taps,
                &lanes.bias,
                clamp,
                &mut blocked,
            )
            .unwrap();
            let expected = to_blocked(&nchw, channels);
            assert!(expected.iter().any(|&v| v != 0.0 && v != 6.0));
            for (i, (e, b)) in expected.iter().zip(&blocked).enumerate() {
                assert_eq!(e, b, "{channels} {in_h}x{in_w} k{k} s{stride} {pads:?} at {i}");
            }
        }
    }

    #[test]
    fn blocked_outputs_are_the_nchw_ones() {
        // EfficientNet's: 3×3 and 5×5, strides 1 and 2, planes from 112 to 7.
        same_as_nchw(16, (20, 20), 3, 1, (1, 1));
        same_as_nchw(24, (28, 28), 3, 2, (1, 1));
        same_as_nchw(8, (14, 14), 5, 1, (2, 2));
        same_as_nchw(16, (14, 14), 5, 2, (2, 2));
        same_as_nchw(32, (7, 7), 5, 1, (2, 2));
        same_as_nchw(8, (7, 7), 3, 1, (1, 1));
        // Rows that fill no run of eight; padding on one side only (SAME_UPPER
        // of a stride-2 kernel over an even size); no padding; a plane smaller
        // than the kernel's reach.
        same_as_nchw(8, (9, 13), 3, 1, (1, 1));
        same_as_nchw(16, (16, 16), 3, 2, (0, 0));
        same_as_nchw(8, (11, 10), 5, 2, (1, 2));
        same_as_nchw(8, (3, 3), 5, 1, (2, 2));
        // Planes read in place (over 32×32 pixels): edges one output at a time.
        same_as_nchw(8, (40, 40), 3, 1, (1, 1));
        same_as_nchw(16, (36, 34), 5, 2, (2, 2));
        same_as_nchw(8, (33, 40), 3, 2, (0, 1));
        same_as_nchw(8, (150, 9), 5, 1, (2, 2));
    }
}

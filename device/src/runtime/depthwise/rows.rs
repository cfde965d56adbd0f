//! The loops, one channel plane at a time (small planes: `super::lanes`).
//!
//! A 3×3 or 5×5 kernel (strided by one or two) reads a copy of the plane with
//! its padding written out as zeros, laid out so that the whole plane's outputs
//! are one branch-free run of vector blocks. Other kernels add each in-bounds
//! tap along each output row.
//!
//! Either way each output is its bias plus its taps row by row, a multiply then
//! an add each (tract's order on x86_64). A padding tap adds an exact zero, which
//! changes no value: outputs equal the sum of the in-bounds taps alone, to the bit
//! but for the sign of a zero.

use tract_linalg::multithread::par_chunks_mut;
use tract_onnx::prelude::TractResult;

use super::lanes::Interleaved;
use super::vector;
use crate::runtime::blocked::BLOCK;
use crate::runtime::swap::Clamp;

/// Outputs per vector block: AVX's eight lanes, NEON's two registers of four.
const LANES: usize = 8;

/// Where one depthwise convolution reads and writes.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Geometry {
    pub batch: usize,
    pub channels: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
}

/// The scratch a run reuses across channel planes.
#[derive(Default)]
struct Scratch {
    /// The padded plane, split by stride.
    plane: Vec<f32>,
    /// The outputs, rows `sub_w` wide.
    outputs: Vec<f32>,
}

impl Geometry {
    /// Every plane of `input` into `output`, each output clamped to `clamp`'s
    /// bounds where the graph's Clip (a ReLU6) was folded in; with the channels in
    /// blocks of eight where `blocked` (`super::blocked`: `kernel` and `bias` then
    /// as `LaneWeights` packs them). The planes (or blocks) are shared out among
    /// tract's threads when it has several (`--threads`); each plane's arithmetic
    /// is the same either way.
    pub fn run(
        &self,
        blocked: bool,
        input: &[f32],
        kernel: &[f32],
        bias: &[f32],
        clamp: Clamp,
        output: &mut [f32],
    ) -> TractResult<()> {
        let lanes = if blocked { BLOCK } else { 1 };
        let (in_plane, out_plane) = (self.in_h * self.in_w * lanes, self.out_h * self.out_w * lanes);
        if output.is_empty() || in_plane == 0 {
            return Ok(());
        }
        let work = input.len() + output.len();
        par_chunks_mut(output, out_plane, work, |first, output| {
            let planes = output.len() / out_plane;
            let input = &input[first * in_plane..][..planes * in_plane];
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx") {
                // SAFETY: the core was just checked to have AVX.
                unsafe { self.all_avx(blocked, input, first, kernel, bias, clamp, output) };
                return Ok(());
            }
            self.all(blocked, input, first, kernel, bias, clamp, output);
            Ok(())
        })
    }

    /// The same loops compiled for AVX, where the core has it.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx")]
    #[allow(clippy::too_many_arguments)]
    fn all_avx(
        &self,
        blocked: bool,
        input: &[f32],
        first: usize,
        kernel: &[f32],
        bias: &[f32],
        clamp: Clamp,
        output: &mut [f32],
    ) {
        self.all(blocked, input, first, kernel, bias, clamp, output)
    }

    /// Planes `first..` (of the batch's `n × channels`), or blocks `first..` of
    /// channels where `blocked`, in order.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn all(
        &self,
        blocked: bool,
        input: &[f32],
        first: usize,
        kernel: &[f32],
        bias: &[f32],
        clamp: Clamp,
        output: &mut [f32],
    ) {
        if blocked {
            return self.blocks(input, first, kernel, bias, clamp, output);
        }
        if self.small_planes() {
            let mut interleaved = Interleaved::default();
            self.lanes(input, first, kernel, bias, clamp, output, &mut interleaved);
            return;
        }
        let taps = self.kernel_h * self.kernel_w;
        let in_plane = self.in_h * self.in_w;
        let out_plane = self.out_h * self.out_w;
        let mut scratch = Scratch::default();
        let planes = input
            .chunks_exact(in_plane)
            .zip(output.chunks_exact_mut(out_plane));
        for (plane, (input, output)) in planes.enumerate() {
            let c = (first + plane) % self.channels;
            let taps = &kernel[c * taps..][..taps];
            // One bias per channel, or one for all.
            let bias = bias[c % bias.len()];
            match (self.kernel_h, self.kernel_w, self.stride_h, self.stride_w) {
                (3, 3, 1 | 2, 1 | 2) => self.square::<3>(input, taps, bias, clamp, output, &mut scratch),
                (5, 5, 1 | 2, 1 | 2) => self.square::<5>(input, taps, bias, clamp, output, &mut scratch),
                _ => {
                    for (oy, row) in output.chunks_exact_mut(self.out_w).enumerate() {
                        self.row_by_taps(oy, input, taps, bias, row);
                        if let Some((lo, hi)) = clamp {
                            row.iter_mut().for_each(|x| *x = x.max(lo).min(hi));
                        }
                    }
                }
            }
        }
    }

    /// A K×K kernel's plane, strided by one or two each way.
    ///
    /// The padded plane is split by stride into sub-planes (row parity × column
    /// parity; one when not strided) so that tap `(ky, kx)` of every output reads
    /// sub-plane `(ky % sh, kx % sw)` at `(oy + ky / sh, ox + kx / sw)`. With every
    /// sub-plane `sub_w` wide, output `(oy, ox)` is flat index `oy * sub_w + ox`
    /// and each tap's reads are that index plus a constant: the whole plane is one
    /// run of vector blocks, the columns past `out_w` computed and dropped.
    #[inline(always)]
    fn square<const K: usize>(
        &self,
        input: &[f32],
        taps: &[f32],
        bias: f32,
        clamp: Clamp,
        output: &mut [f32],
        scratch: &mut Scratch,
    ) {
        let mut weights = [[0f32; K]; K];
        for (ky, row) in weights.iter_mut().enumerate() {
            row.copy_from_slice(&taps[ky * K..][..K]);
        }
        let (sh, sw) = (self.stride_h, self.stride_w);
        let sub_w = self.out_w + (K - 1) / sw;
        // One row more than the outputs read, for the dropped columns' reads.
        let sub_h = self.out_h + (K - 1) / sh + 1;
        let sub_len = sub_h * sub_w;
        let n = self.out_h * sub_w;
        // Whole vector blocks: the last one's reads go up to a block past the plane.
        let blocks = n.div_ceil(LANES) * LANES;
        let len = sh * sw * sub_len + (blocks - n);
        // Zeroed once a run: every channel writes the same places, and the padding
        // stays zero.
        if scratch.plane.len() != len {
            scratch.plane.clear();
            scratch.plane.resize(len, 0.0);
        }
        let plane = &mut scratch.plane;
        let cols = self.in_w.min((sub_w * sw).saturating_sub(self.pad_left));
        for (iy, row) in input.chunks_exact(self.in_w).enumerate() {
            let y = iy + self.pad_top;
            if y >= sub_h * sh {
                break;
            }
            let row = &row[..cols];
            // Where padded row `y`, column 0 of sub-plane column parity `rx` starts.
            let start = |rx: usize| ((y % sh) * sw + rx) * sub_len + (y / sh) * sub_w;
            if sw == 1 {
                plane[start(0) + self.pad_left..][..cols].copy_from_slice(row);
            } else {
                // Padded column `x` lands in column half `x % 2`, at `x / 2`.
                let (before, after) = plane.split_at_mut(start(1));
                let (even, odd) = (&mut before[start(0)..][..sub_w], &mut after[..sub_w]);
                let (mut row, mut x) = (row, self.pad_left);
                if x % 2 == 1 {
                    if let Some((&first, rest)) = row.split_first() {
                        odd[x / 2] = first;
                        (row, x) = (rest, x + 1);
                    }
                }
                let at = x / 2;
                let pairs = row.chunks_exact(2);
                if let Some(&last) = pairs.remainder().first() {
                    even[at + row.len() / 2] = last;
                }
                for ((e, o), pair) in even[at..].iter_mut().zip(&mut odd[at..]).zip(pairs) {
                    (*e, *o) = (pair[0], pair[1]);
                }
            }
        }
        let mut offsets = [[0usize; K]; K];
        for (ky, offsets) in offsets.iter_mut().enumerate() {
            for (kx, offset) in offsets.iter_mut().enumerate() {
                *offset = ((ky % sh) * sw + kx % sw) * sub_len + (ky / sh) * sub_w + kx / sw;
            }
        }
        scratch.outputs.resize(blocks, 0.0);
        interior::<K>(
            &weights,
            &scratch.plane,
            &offsets,
            bias,
            clamp,
            &mut scratch.outputs[..blocks],
        );
        for (out_row, row) in output
            .chunks_exact_mut(self.out_w)
            .zip(scratch.outputs.chunks(sub_w))
        {
            out_row.copy_from_slice(&row[..self.out_w]);
        }
    }

    /// Output row `oy` filled with the bias, then each in-bounds tap added along it.
    fn row_by_taps(&self, oy: usize, input: &[f32], taps: &[f32], bias: f32, out_row: &mut [f32]) {
        out_row.fill(bias);
        for ky in 0..self.kernel_h {
            let iy = (oy * self.stride_h + ky) as isize - self.pad_top as isize;
            if iy < 0 || iy as usize >= self.in_h {
                continue;
            }
            let in_row = &input[iy as usize * self.in_w..][..self.in_w];
            for kx in 0..self.kernel_w {
                let (lo, hi) = self.valid_columns(kx);
                if lo == hi {
                    continue;
                }
                let weight = taps[ky * self.kernel_w + kx];
                let first = lo * self.stride_w + kx - self.pad_left;
                let src = in_row[first..].iter().step_by(self.stride_w);
                for (o, &x) in out_row[lo..hi].iter_mut().zip(src) {
                    *o += weight * x;
                }
            }
        }
    }

    /// Output columns `lo..hi` whose input column `ox * stride + kx - pad` lies in `0..in_w`.
    fn valid_columns(&self, kx: usize) -> (usize, usize) {
        let shift = kx as isize - self.pad_left as isize;
        let stride = self.stride_w as isize;
        let lo = if shift >= 0 {
            0
        } else {
            (-shift + stride - 1) / stride
        };
        let last_input = self.in_w as isize - 1 - shift;
        let hi = if last_input < 0 {
            0
        } else {
            last_input / stride + 1
        };
        let hi = (hi as usize).min(self.out_w);
        ((lo as usize).min(hi), hi)
    }
}

/// The kernel over a run of outputs, tap `(ky, kx)` of output `j` reading
/// `plane[offsets[ky][kx] + j]`: vector blocks where the core has them, the rest
/// one output at a time.
#[inline(always)]
fn interior<const K: usize>(
    weights: &[[f32; K]; K],
    plane: &[f32],
    offsets: &[[usize; K]; K],
    bias: f32,
    clamp: Clamp,
    out: &mut [f32],
) {
    let n = out.len();
    let furthest = offsets.iter().flatten().max().copied().unwrap_or(0);
    assert!(furthest + n <= plane.len(), "a tap reads past the padded plane");
    // SAFETY: every tap's run of `n` values was just checked to lie inside `plane`.
    let done = unsafe { vector::blocks::<K>(weights, plane.as_ptr(), offsets, bias, clamp, out) };
    for j in done..n {
        let mut sum = bias;
        for ky in 0..K {
            for kx in 0..K {
                sum += weights[ky][kx] * plane[offsets[ky][kx] + j];
            }
        }
        out[j] = match clamp {
            Some((lo, hi)) => sum.max(lo).min(hi),
            None => sum,
        };
    }
}

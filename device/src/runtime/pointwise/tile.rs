//! The kernel: a tile of `ROWS` output channels by `COLS` pixels, its weights
//! broadcast one at a time from a panel packed at load, its pixels read a run of
//! `COLS` at a time straight from the input's channel rows (one channel's pixels
//! are contiguous in NCHW, so the activations are never packed).
//!
//! Each output is its bias, then one fused multiply-add per input channel, in
//! channel order: the same operations on x86_64 (FMA) and aarch64 (NEON), so both
//! give the same bits.

/// Output channels per tile (one broadcast weight each).
pub const ROWS: usize = 6;
/// Pixels per tile: two AVX vectors, four NEON ones.
pub const COLS: usize = 16;

/// Whether this core runs the kernel (x86_64 needs AVX and FMA; aarch64 always has NEON).
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(target_arch = "aarch64")]
    {
        true
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Where one tile reads and writes.
pub struct Tile {
    /// Input channels: the sum's length.
    pub depth: usize,
    /// `[depth][ROWS]`: this panel's weights.
    pub weights: *const f32,
    /// Pixel 0 of input channel 0; channel `c` starts `c * x_stride` further.
    pub x: *const f32,
    pub x_stride: usize,
    /// One per output channel of the tile.
    pub bias: [f32; ROWS],
    pub clamp: Option<(f32, f32)>,
    /// Pixel 0 of output row 0; row `r` starts `r * out_stride` further.
    pub out: *mut f32,
    pub out_stride: usize,
}

/// One whole tile. Safety: `supported()` is true, and every read (`depth` rows
/// of `COLS` pixels, `depth × ROWS` weights) and write (`ROWS` rows of `COLS`) is
/// in bounds.
#[cfg(target_arch = "x86_64")]
pub unsafe fn run(tile: &Tile) {
    // SAFETY: the caller checked `supported()` and promises the bounds.
    unsafe { run_fma(tile) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,fma")]
unsafe fn run_fma(t: &Tile) {
    use std::arch::x86_64::*;
    // SAFETY: AVX and FMA are enabled here; the caller promises every read and write.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); 2]; ROWS];
        for (acc, &b) in acc.iter_mut().zip(&t.bias) {
            *acc = [_mm256_set1_ps(b); 2];
        }
        let (mut w, mut x) = (t.weights, t.x);
        for _ in 0..t.depth {
            let x0 = _mm256_loadu_ps(x);
            let x1 = _mm256_loadu_ps(x.add(8));
            for (r, acc) in acc.iter_mut().enumerate() {
                let wr = _mm256_broadcast_ss(&*w.add(r));
                acc[0] = _mm256_fmadd_ps(wr, x0, acc[0]);
                acc[1] = _mm256_fmadd_ps(wr, x1, acc[1]);
            }
            w = w.add(ROWS);
            x = x.add(t.x_stride);
        }
        for (r, acc) in acc.into_iter().enumerate() {
            for (half, mut v) in acc.into_iter().enumerate() {
                // Max then min, as the graph's Clip.
                if let Some((lo, hi)) = t.clamp {
                    v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(lo)), _mm256_set1_ps(hi));
                }
                _mm256_storeu_ps(t.out.add(r * t.out_stride + half * 8), v);
            }
        }
    }
}

/// One whole tile. Safety: every read (`depth` rows of `COLS` pixels, `depth ×
/// ROWS` weights) and write (`ROWS` rows of `COLS`) is in bounds.
#[cfg(target_arch = "aarch64")]
pub unsafe fn run(t: &Tile) {
    use std::arch::aarch64::*;
    // SAFETY: NEON is part of aarch64; the caller promises every read and write.
    unsafe {
        let mut acc = [[vdupq_n_f32(0.0); 4]; ROWS];
        for (acc, &b) in acc.iter_mut().zip(&t.bias) {
            *acc = [vdupq_n_f32(b); 4];
        }
        let (mut w, mut x) = (t.weights, t.x);
        for _ in 0..t.depth {
            let xs = [
                vld1q_f32(x),
                vld1q_f32(x.add(4)),
                vld1q_f32(x.add(8)),
                vld1q_f32(x.add(12)),
            ];
            for (r, acc) in acc.iter_mut().enumerate() {
                let wr = *w.add(r);
                for (v, &xv) in acc.iter_mut().zip(&xs) {
                    *v = vfmaq_n_f32(*v, xv, wr);
                }
            }
            w = w.add(ROWS);
            x = x.add(t.x_stride);
        }
        for (r, acc) in acc.into_iter().enumerate() {
            for (q, mut v) in acc.into_iter().enumerate() {
                // Max then min, as the graph's Clip.
                if let Some((lo, hi)) = t.clamp {
                    v = vminq_f32(vmaxq_f32(v, vdupq_n_f32(lo)), vdupq_n_f32(hi));
                }
                vst1q_f32(t.out.add(r * t.out_stride + q * 4), v);
            }
        }
    }
}

/// No kernel on other architectures: `supported()` is false, so no op is swapped in.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub unsafe fn run(_t: &Tile) {}

//! The kernel of the products this runtime swaps in for tract's: a tile of up to
//! `ROWS` output rows by `COLS` output columns, `out[r][c] = bias + Σ_d a[r][d] ·
//! b[d][c]`, `a` broadcast one value at a time, `b` read a row of `COLS` at a time.
//!
//! Neither operand is packed per call: a pointwise convolution broadcasts its
//! weights (packed at load) over the input's channel rows, read in place (one
//! channel's pixels are contiguous in NCHW); a linear layer broadcasts its input
//! rows, read in place, over its weights' columns (packed at load, as int8 where
//! the bundle's weights are: a quarter of the bytes to read at every step).
//!
//! Each output is its bias, then one fused multiply-add per step of the sum, in
//! order, an int8 weight widened to f32 and multiplied by its column's scale
//! first (the value the graph's dequantization gives): the same operations on
//! x86_64 (AVX2, FMA) and aarch64 (NEON), so both give the same bits.

/// Output rows per tile (one broadcast value each).
pub const ROWS: usize = 6;
/// Output columns per tile: two AVX vectors, four NEON ones.
pub const COLS: usize = 16;

/// `rows` split into runs of at most `ROWS`, as even as possible: `(first,
/// count)` each. A tile of few rows has few sums in flight to hide the
/// multiply-adds' latency, so 15 rows run as 5 + 5 + 5 rather than 6 + 6 + 3, 8
/// as 4 + 4 rather than 6 + 2.
pub fn row_runs(rows: usize) -> impl Iterator<Item = (usize, usize)> {
    let runs = rows.div_ceil(ROWS);
    (0..runs).map(move |run| {
        let (first, end) = (run * rows / runs, (run + 1) * rows / runs);
        (first, end - first)
    })
}

/// Whether this core runs the kernel (x86_64 needs AVX2 and FMA; aarch64 always has NEON).
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
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

/// What each output starts from.
#[derive(Clone, Copy)]
pub enum Bias {
    /// One per output row (a convolution's output channels).
    Rows([f32; ROWS]),
    /// One per output column (a linear layer's outputs).
    Cols([f32; COLS]),
}

/// The columns' operand: `b[d][c]` at `d * b_stride + c`.
#[derive(Clone, Copy)]
pub enum Columns {
    F32(*const f32),
    /// Int8 values, each column's multiplied by its scale.
    I8(*const i8, [f32; COLS]),
}

/// Where one tile reads and writes.
pub struct Tile {
    /// The sum's length.
    pub depth: usize,
    /// `a[r][d]` is at `a + r * a_row + d * a_depth`, plus `a_jump` for every
    /// `a_run` steps of the depth before `d` (channels in blocks of eight:
    /// `super::blocked`).
    pub a: *const f32,
    pub a_row: usize,
    pub a_depth: usize,
    pub a_run: usize,
    pub a_jump: usize,
    pub b: Columns,
    pub b_stride: usize,
    pub bias: Bias,
    pub clamp: Option<(f32, f32)>,
    /// `out[r][c]` is at `out + r * out_stride + c` for the first eight columns,
    /// `out_half` further for the last eight (8: the columns are contiguous).
    pub out: *mut f32,
    pub out_stride: usize,
    pub out_half: usize,
}

impl Tile {
    /// Never jumping: `a`'s depth is one run.
    pub const NO_JUMP: usize = usize::MAX;
}

/// `$body` for each step `$d` of `$t`'s depth, `$a` at the step's value of its
/// first row: `a_depth` further each step, `a_jump` more after every `a_run`.
/// A depth in one run is a loop of its own: with the jumps in it the loop
/// compiles to a slower one.
macro_rules! each_step {
    ($t:expr, |$d:ident, $a:ident| $body:block) => {{
        let mut $a = $t.a;
        if $t.a_run >= $t.depth {
            for $d in 0..$t.depth {
                $body
                $a = $a.add($t.a_depth);
            }
        } else {
            let mut start = 0;
            while start < $t.depth {
                let run = $t.a_run.min($t.depth - start);
                for $d in start..start + run {
                    $body
                    $a = $a.add($t.a_depth);
                }
                start += run;
                $a = $a.wrapping_add($t.a_jump);
            }
        }
    }};
}

/// The first `rows` rows of a tile (`1..=ROWS`). Safety: `supported()` is true,
/// and every read (`rows × depth` of `a`, `depth` rows of `COLS` of `b`) and write
/// (`rows` rows of `COLS`) is in bounds.
pub unsafe fn run(rows: usize, tile: &Tile) {
    // SAFETY: the caller's promise, for the rows asked for.
    unsafe {
        match rows {
            1 => run_rows::<1>(tile),
            2 => run_rows::<2>(tile),
            3 => run_rows::<3>(tile),
            4 => run_rows::<4>(tile),
            5 => run_rows::<5>(tile),
            ROWS => run_rows::<ROWS>(tile),
            _ => debug_assert_eq!(rows, 0, "a tile has at most {ROWS} rows"),
        }
    }
}

#[cfg(target_arch = "x86_64")]
unsafe fn run_rows<const R: usize>(t: &Tile) {
    // SAFETY: the caller checked `supported()` and promises the bounds.
    unsafe {
        match t.b {
            Columns::F32(b) => run_fma::<R, false>(t, b, std::ptr::null(), &[0.0; COLS]),
            Columns::I8(b, scale) => run_fma::<R, true>(t, std::ptr::null(), b, &scale),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_fma<const R: usize, const INT8: bool>(
    t: &Tile,
    b32: *const f32,
    b8: *const i8,
    scale: &[f32; COLS],
) {
    use std::arch::x86_64::*;
    // SAFETY: AVX2 and FMA are enabled here; the caller promises every read and write.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        match &t.bias {
            Bias::Rows(rows) => {
                for (acc, &b) in acc.iter_mut().zip(rows) {
                    *acc = [_mm256_set1_ps(b); 2];
                }
            }
            Bias::Cols(cols) => {
                let start = [
                    _mm256_loadu_ps(cols.as_ptr()),
                    _mm256_loadu_ps(cols.as_ptr().add(8)),
                ];
                for acc in acc.iter_mut() {
                    *acc = start;
                }
            }
        }
        let scale = [
            _mm256_loadu_ps(scale.as_ptr()),
            _mm256_loadu_ps(scale.as_ptr().add(8)),
        ];
        let mut rows = [0usize; R];
        for (r, row) in rows.iter_mut().enumerate() {
            *row = r * t.a_row;
        }
        // Each step of the sum: row `d` of `b` times each row's value at `a`.
        each_step!(t, |d, a| {
            let (b0, b1) = if INT8 {
                let q = _mm_loadu_si128(b8.add(d * t.b_stride) as *const __m128i);
                let lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
                let hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128::<8>(q)));
                (_mm256_mul_ps(lo, scale[0]), _mm256_mul_ps(hi, scale[1]))
            } else {
                let b = b32.add(d * t.b_stride);
                (_mm256_loadu_ps(b), _mm256_loadu_ps(b.add(8)))
            };
            for (acc, &row) in acc.iter_mut().zip(&rows) {
                let ar = _mm256_broadcast_ss(&*a.add(row));
                acc[0] = _mm256_fmadd_ps(ar, b0, acc[0]);
                acc[1] = _mm256_fmadd_ps(ar, b1, acc[1]);
            }
        });
        for (r, acc) in acc.into_iter().enumerate() {
            for (half, mut v) in acc.into_iter().enumerate() {
                // Max then min, as the graph's Clip.
                if let Some((lo, hi)) = t.clamp {
                    v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(lo)), _mm256_set1_ps(hi));
                }
                _mm256_storeu_ps(t.out.add(r * t.out_stride + half * t.out_half), v);
            }
        }
    }
}

#[cfg(target_arch = "aarch64")]
unsafe fn run_rows<const R: usize>(t: &Tile) {
    use std::arch::aarch64::*;
    // SAFETY: NEON is part of aarch64; the caller promises every read and write.
    unsafe {
        let mut acc = [[vdupq_n_f32(0.0); 4]; R];
        match &t.bias {
            Bias::Rows(rows) => {
                for (acc, &b) in acc.iter_mut().zip(rows) {
                    *acc = [vdupq_n_f32(b); 4];
                }
            }
            Bias::Cols(cols) => {
                let p = cols.as_ptr();
                let start = [
                    vld1q_f32(p),
                    vld1q_f32(p.add(4)),
                    vld1q_f32(p.add(8)),
                    vld1q_f32(p.add(12)),
                ];
                for acc in acc.iter_mut() {
                    *acc = start;
                }
            }
        }
        let mut rows = [0usize; R];
        for (r, row) in rows.iter_mut().enumerate() {
            *row = r * t.a_row;
        }
        // Each step of the sum: row `d` of `b` times each row's value at `a`.
        each_step!(t, |d, a| {
            let bs = match t.b {
                Columns::F32(b) => {
                    let b = b.add(d * t.b_stride);
                    [
                        vld1q_f32(b),
                        vld1q_f32(b.add(4)),
                        vld1q_f32(b.add(8)),
                        vld1q_f32(b.add(12)),
                    ]
                }
                Columns::I8(b, scale) => {
                    let q = vld1q_s8(b.add(d * t.b_stride));
                    let (lo, hi) = (vmovl_s8(vget_low_s8(q)), vmovl_s8(vget_high_s8(q)));
                    let wide = [
                        vmovl_s16(vget_low_s16(lo)),
                        vmovl_s16(vget_high_s16(lo)),
                        vmovl_s16(vget_low_s16(hi)),
                        vmovl_s16(vget_high_s16(hi)),
                    ];
                    let s = scale.as_ptr();
                    [
                        vmulq_f32(vcvtq_f32_s32(wide[0]), vld1q_f32(s)),
                        vmulq_f32(vcvtq_f32_s32(wide[1]), vld1q_f32(s.add(4))),
                        vmulq_f32(vcvtq_f32_s32(wide[2]), vld1q_f32(s.add(8))),
                        vmulq_f32(vcvtq_f32_s32(wide[3]), vld1q_f32(s.add(12))),
                    ]
                }
            };
            for (acc, &row) in acc.iter_mut().zip(&rows) {
                let ar = *a.add(row);
                for (v, &bv) in acc.iter_mut().zip(&bs) {
                    *v = vfmaq_n_f32(*v, bv, ar);
                }
            }
        });
        for (r, acc) in acc.into_iter().enumerate() {
            for (q, mut v) in acc.into_iter().enumerate() {
                // Max then min, as the graph's Clip.
                if let Some((lo, hi)) = t.clamp {
                    v = vminq_f32(vmaxq_f32(v, vdupq_n_f32(lo)), vdupq_n_f32(hi));
                }
                vst1q_f32(
                    t.out.add(r * t.out_stride + (q / 2) * t.out_half + (q % 2) * 4),
                    v,
                );
            }
        }
    }
}

/// No kernel on other architectures: `supported()` is false, so no op is swapped in.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn run_rows<const R: usize>(_t: &Tile) {}

#[cfg(test)]
mod tests {
    #[test]
    fn rows_split_into_even_runs_that_cover_them_once() {
        for (rows, counts) in [
            (15, vec![5, 5, 5]),
            (8, vec![4, 4]),
            (6, vec![6]),
            (13, vec![4, 4, 5]),
            (1, vec![1]),
            (0, vec![]),
        ] {
            let runs: Vec<(usize, usize)> = super::row_runs(rows).collect();
            assert_eq!(
                runs.iter().map(|r| r.1).collect::<Vec<_>>(),
                counts,
                "{rows} rows"
            );
            let mut next = 0;
            for (first, count) in runs {
                assert_eq!(first, next, "{rows} rows");
                next += count;
            }
            assert_eq!(next, rows);
        }
    }
}

//! Four vectors of outputs at a time, so four accumulators are in flight while
//! each waits on its add; then one vector at a time. Multiply, then add: never
//! fused, so each output rounds as tract's scalar loop does.
//!
//! `blocks` computes the first outputs of `out` in whole vectors and returns how
//! many; tap `(ky, kx)` of output `j` reads `base + offsets[ky][kx] + j`. Safety:
//! the caller promises all those reads, for every `j < out.len()`, are in bounds.

#[cfg(target_arch = "x86_64")]
pub unsafe fn blocks<const K: usize>(
    weights: &[[f32; K]; K],
    base: *const f32,
    offsets: &[[usize; K]; K],
    bias: f32,
    clamp: Option<(f32, f32)>,
    out: &mut [f32],
) -> usize {
    if std::is_x86_feature_detected!("avx") {
        // SAFETY: AVX was just checked for; the caller's promise covers the reads.
        unsafe { blocks_avx::<K>(weights, base, offsets, bias, clamp, out) }
    } else {
        0
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn blocks_avx<const K: usize>(
    weights: &[[f32; K]; K],
    base: *const f32,
    offsets: &[[usize; K]; K],
    bias: f32,
    clamp: Option<(f32, f32)>,
    out: &mut [f32],
) -> usize {
    const W: usize = 8;
    let n = out.len();
    let out = out.as_mut_ptr();
    let mut j = 0;
    // SAFETY: AVX is enabled here; the caller's promise covers the reads, and
    // `j + U * W <= n` the writes.
    unsafe {
        while j + 4 * W <= n {
            block_avx::<K, 4>(weights, base, offsets, bias, clamp, out, j);
            j += 4 * W;
        }
        while j + W <= n {
            block_avx::<K, 1>(weights, base, offsets, bias, clamp, out, j);
            j += W;
        }
    }
    j
}

/// `U` vectors of outputs from output `j` on.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[inline]
unsafe fn block_avx<const K: usize, const U: usize>(
    weights: &[[f32; K]; K],
    base: *const f32,
    offsets: &[[usize; K]; K],
    bias: f32,
    clamp: Option<(f32, f32)>,
    out: *mut f32,
    j: usize,
) {
    use std::arch::x86_64::*;
    const W: usize = 8;
    let mut acc = [_mm256_set1_ps(bias); U];
    for ky in 0..K {
        for kx in 0..K {
            let w = _mm256_set1_ps(weights[ky][kx]);
            let p = unsafe { base.add(offsets[ky][kx] + j) };
            for (u, acc) in acc.iter_mut().enumerate() {
                let x = unsafe { _mm256_loadu_ps(p.add(u * W)) };
                *acc = _mm256_add_ps(*acc, _mm256_mul_ps(w, x));
            }
        }
    }
    for (u, mut acc) in acc.into_iter().enumerate() {
        // Max then min, as the graph's Clip: a NaN comes out as the bound, as there.
        if let Some((lo, hi)) = clamp {
            acc = _mm256_min_ps(_mm256_max_ps(acc, _mm256_set1_ps(lo)), _mm256_set1_ps(hi));
        }
        unsafe { _mm256_storeu_ps(out.add(j + u * W), acc) };
    }
}

#[cfg(target_arch = "aarch64")]
pub unsafe fn blocks<const K: usize>(
    weights: &[[f32; K]; K],
    base: *const f32,
    offsets: &[[usize; K]; K],
    bias: f32,
    clamp: Option<(f32, f32)>,
    out: &mut [f32],
) -> usize {
    const W: usize = 4;
    let n = out.len();
    let out = out.as_mut_ptr();
    let mut j = 0;
    // SAFETY: NEON is part of aarch64; the caller's promise covers the reads, and
    // `j + U * W <= n` the writes.
    unsafe {
        while j + 4 * W <= n {
            block_neon::<K, 4>(weights, base, offsets, bias, clamp, out, j);
            j += 4 * W;
        }
        while j + W <= n {
            block_neon::<K, 1>(weights, base, offsets, bias, clamp, out, j);
            j += W;
        }
    }
    j
}

/// `U` vectors of outputs from output `j` on.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
unsafe fn block_neon<const K: usize, const U: usize>(
    weights: &[[f32; K]; K],
    base: *const f32,
    offsets: &[[usize; K]; K],
    bias: f32,
    clamp: Option<(f32, f32)>,
    out: *mut f32,
    j: usize,
) {
    use std::arch::aarch64::*;
    const W: usize = 4;
    // SAFETY: NEON is part of aarch64; the caller's promise covers the reads and writes.
    unsafe {
        let mut acc = [vdupq_n_f32(bias); U];
        for ky in 0..K {
            for kx in 0..K {
                let w = vdupq_n_f32(weights[ky][kx]);
                let p = base.add(offsets[ky][kx] + j);
                for (u, acc) in acc.iter_mut().enumerate() {
                    *acc = vaddq_f32(*acc, vmulq_f32(w, vld1q_f32(p.add(u * W))));
                }
            }
        }
        for (u, mut acc) in acc.into_iter().enumerate() {
            // Max then min, as the graph's Clip: a NaN comes out as the bound, as there.
            if let Some((lo, hi)) = clamp {
                acc = vminq_f32(vmaxq_f32(acc, vdupq_n_f32(lo)), vdupq_n_f32(hi));
            }
            vst1q_f32(out.add(j + u * W), acc);
        }
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub unsafe fn blocks<const K: usize>(
    _weights: &[[f32; K]; K],
    _base: *const f32,
    _offsets: &[[usize; K]; K],
    _bias: f32,
    _clamp: Option<(f32, f32)>,
    _out: &mut [f32],
) -> usize {
    0
}

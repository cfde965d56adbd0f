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
    use std::arch::x86_64::*;
    const W: usize = 8;
    // Max then min, as the graph's Clip: a NaN comes out as the bound, as there.
    let (lo, hi) = clamp.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
    let (lo, hi, clamping) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi), clamp.is_some());
    let clamped = |v: __m256| {
        if clamping {
            _mm256_min_ps(_mm256_max_ps(v, lo), hi)
        } else {
            v
        }
    };
    let n = out.len();
    let out = out.as_mut_ptr();
    let mut j = 0;
    unsafe {
        while j + 4 * W <= n {
            let mut acc = [_mm256_set1_ps(bias); 4];
            for ky in 0..K {
                for kx in 0..K {
                    let w = _mm256_set1_ps(weights[ky][kx]);
                    let p = base.add(offsets[ky][kx] + j);
                    for (u, acc) in acc.iter_mut().enumerate() {
                        let x = _mm256_loadu_ps(p.add(u * W));
                        *acc = _mm256_add_ps(*acc, _mm256_mul_ps(w, x));
                    }
                }
            }
            for (u, acc) in acc.iter().enumerate() {
                _mm256_storeu_ps(out.add(j + u * W), clamped(*acc));
            }
            j += 4 * W;
        }
        while j + W <= n {
            let mut acc = _mm256_set1_ps(bias);
            for ky in 0..K {
                for kx in 0..K {
                    let x = _mm256_loadu_ps(base.add(offsets[ky][kx] + j));
                    acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(weights[ky][kx]), x));
                }
            }
            _mm256_storeu_ps(out.add(j), clamped(acc));
            j += W;
        }
    }
    j
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
    use std::arch::aarch64::*;
    const W: usize = 4;
    let (lo, hi) = clamp.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
    let clamping = clamp.is_some();
    // SAFETY: NEON is part of aarch64.
    let (lo, hi) = unsafe { (vdupq_n_f32(lo), vdupq_n_f32(hi)) };
    let clamped = |v: float32x4_t| {
        if clamping {
            unsafe { vminq_f32(vmaxq_f32(v, lo), hi) }
        } else {
            v
        }
    };
    let n = out.len();
    let out = out.as_mut_ptr();
    let mut j = 0;
    // SAFETY: NEON is part of aarch64; the caller's promise covers the reads.
    unsafe {
        while j + 4 * W <= n {
            let mut acc = [vdupq_n_f32(bias); 4];
            for ky in 0..K {
                for kx in 0..K {
                    let w = vdupq_n_f32(weights[ky][kx]);
                    let p = base.add(offsets[ky][kx] + j);
                    for (u, acc) in acc.iter_mut().enumerate() {
                        let x = vld1q_f32(p.add(u * W));
                        *acc = vaddq_f32(*acc, vmulq_f32(w, x));
                    }
                }
            }
            for (u, acc) in acc.iter().enumerate() {
                vst1q_f32(out.add(j + u * W), clamped(*acc));
            }
            j += 4 * W;
        }
        while j + W <= n {
            let mut acc = vdupq_n_f32(bias);
            for ky in 0..K {
                for kx in 0..K {
                    let x = vld1q_f32(base.add(offsets[ky][kx] + j));
                    acc = vaddq_f32(acc, vmulq_f32(vdupq_n_f32(weights[ky][kx]), x));
                }
            }
            vst1q_f32(out.add(j), clamped(acc));
            j += W;
        }
    }
    j
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

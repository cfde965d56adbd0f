//! This core's peak f32 multiply-add rate, measured by a kernel that does nothing
//! else: independent fused multiply-adds on as many vector registers as the core
//! keeps busy. A stage's GFLOP/s against it says how close to the limit it runs.

use std::hint::black_box;
use std::time::Instant;

/// Accumulators: enough independent chains to cover the FMA latency on both
/// ports (4–5 cycles x 2 on x86, 4 x 2 on the Cortex-A72).
const CHAINS: usize = 12;

/// Single-thread peak, GFLOP/s (a multiply-add counts two), best of five runs,
/// with the widest FMA this build and core have: AVX2 on x86_64 when the core has
/// it, NEON on aarch64, else scalar `mul_add`.
pub fn peak_gflops() -> (f64, &'static str) {
    let (kernel, name) = kernel();
    let iterations = 2_000_000u64;
    kernel(iterations / 10);
    let best = (0..5)
        .map(|_| {
            let start = Instant::now();
            black_box(kernel(black_box(iterations)));
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    let flops = iterations as f64 * CHAINS as f64 * lanes(name) as f64 * 2.0;
    (flops / best / 1e9, name)
}

fn lanes(kernel: &str) -> usize {
    match kernel {
        "avx2+fma" => 8,
        "neon" => 4,
        _ => 1,
    }
}

fn kernel() -> (fn(u64) -> f32, &'static str) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        return (x86::fma_avx2, "avx2+fma");
    }
    #[cfg(target_arch = "aarch64")]
    return (arm::fma_neon, "neon");
    #[allow(unreachable_code)]
    (fma_scalar, "scalar")
}

fn fma_scalar(iterations: u64) -> f32 {
    let mut acc = [0f32; CHAINS];
    for _ in 0..iterations {
        for (i, a) in acc.iter_mut().enumerate() {
            *a = a.mul_add(0.999_999, i as f32 * 1e-7);
        }
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::CHAINS;
    use std::arch::x86_64::*;

    pub fn fma_avx2(iterations: u64) -> f32 {
        // SAFETY: chosen only after `is_x86_feature_detected!` found AVX2 and FMA.
        unsafe { run(iterations) }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn run(iterations: u64) -> f32 {
        let scale = _mm256_set1_ps(0.999_999);
        let shift = _mm256_set1_ps(1e-7);
        let mut acc = [_mm256_setzero_ps(); CHAINS];
        for _ in 0..iterations {
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(*a, scale, shift);
            }
        }
        let mut lanes = [0f32; 8];
        let sum = acc.iter().fold(_mm256_setzero_ps(), |s, a| _mm256_add_ps(s, *a));
        _mm256_storeu_ps(lanes.as_mut_ptr(), sum);
        lanes.iter().sum()
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::CHAINS;
    use std::arch::aarch64::*;

    pub fn fma_neon(iterations: u64) -> f32 {
        // SAFETY: NEON is part of every aarch64 core.
        unsafe {
            let scale = vdupq_n_f32(0.999_999);
            let shift = vdupq_n_f32(1e-7);
            let mut acc = [vdupq_n_f32(0.0); CHAINS];
            for _ in 0..iterations {
                for a in acc.iter_mut() {
                    *a = vfmaq_f32(shift, *a, scale);
                }
            }
            acc.iter().map(|a| vaddvq_f32(*a)).sum()
        }
    }
}

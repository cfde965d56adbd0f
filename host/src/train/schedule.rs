//! Learning-rate schedule: linear warm-up, then cosine decay to a floor.
//! A pure function of the step, so a resumed run needs no scheduler state.

/// `base_lr` at `step` of `total` steps.
pub fn learning_rate(step: usize, total: usize, warmup: usize, base_lr: f64, min_ratio: f64) -> f64 {
    if warmup > 0 && step < warmup {
        return base_lr * (step + 1) as f64 / warmup as f64;
    }
    let decay_steps = total.saturating_sub(warmup).max(1);
    let progress = ((step - warmup.min(step)) as f64 / decay_steps as f64).min(1.0);
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    base_lr * (min_ratio + (1.0 - min_ratio) * cosine)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays() {
        let lr = |s| learning_rate(s, 110, 10, 1.0, 0.1);
        assert!((lr(0) - 0.1).abs() < 1e-12);
        assert!((lr(9) - 1.0).abs() < 1e-12);
        assert!((lr(10) - 1.0).abs() < 1e-12);
        assert!((lr(60) - 0.55).abs() < 1e-12, "halfway: floor + half the range");
        assert!((lr(110) - 0.1).abs() < 1e-12);
        assert!(lr(30) > lr(50) && lr(50) > lr(90));
    }
}

//! Motion by frame differencing: the mean absolute difference of two consecutive
//! grey, downscaled frames above a threshold fires, then a cool-down of some frames
//! keeps one movement from firing many times.

use image::imageops::FilterType;
use image::{GrayImage, RgbImage};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MotionConfig {
    /// Mean absolute grey-level difference (0-255) that counts as motion.
    pub threshold: f32,
    /// Frames ignored after a detection.
    pub cooldown_frames: u32,
    /// Side of the grey thumbnail compared (noise and cost both shrink with it).
    pub thumbnail: u32,
}

impl Default for MotionConfig {
    fn default() -> Self {
        Self {
            threshold: 8.0,
            cooldown_frames: 10,
            thumbnail: 32,
        }
    }
}

pub struct Motion {
    cfg: MotionConfig,
    previous: Option<GrayImage>,
    cooldown: u32,
    /// The last frame's difference score (for logs and tuning).
    pub last_score: f32,
}

impl Motion {
    pub fn new(cfg: MotionConfig) -> Self {
        Self {
            cfg,
            previous: None,
            cooldown: 0,
            last_score: 0.0,
        }
    }

    /// Feeds the next frame; true when it shows motion against the previous one.
    pub fn feed(&mut self, frame: &RgbImage) -> bool {
        let side = self.cfg.thumbnail.max(1);
        let grey =
            image::imageops::grayscale(&image::imageops::resize(frame, side, side, FilterType::Triangle));
        let score = match &self.previous {
            Some(prev) => {
                let sum: u64 = prev
                    .as_raw()
                    .iter()
                    .zip(grey.as_raw())
                    .map(|(&a, &b)| (a as i16 - b as i16).unsigned_abs() as u64)
                    .sum();
                sum as f32 / grey.as_raw().len() as f32
            }
            None => 0.0,
        };
        self.previous = Some(grey);
        self.last_score = score;
        if self.cooldown > 0 {
            self.cooldown -= 1;
            return false;
        }
        if score > self.cfg.threshold {
            self.cooldown = self.cfg.cooldown_frames;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn frame(square_at: Option<u32>) -> RgbImage {
        let mut img = RgbImage::from_pixel(64, 64, Rgb([200, 200, 200]));
        if let Some(x) = square_at {
            for y in 20..44 {
                for dx in 0..24 {
                    img.put_pixel(x + dx, y, Rgb([20, 20, 20]));
                }
            }
        }
        img
    }

    #[test]
    fn a_moving_object_fires_once_per_cooldown_and_a_still_scene_never() {
        let mut m = Motion::new(MotionConfig {
            threshold: 5.0,
            cooldown_frames: 2,
            thumbnail: 32,
        });
        let still: Vec<bool> = (0..5).map(|_| m.feed(&frame(Some(10)))).collect();
        assert_eq!(still, vec![false; 5]);
        // The square jumps: fires, then two frames of cool-down even though it keeps moving.
        let moving: Vec<bool> = [30, 5, 30, 5].iter().map(|&x| m.feed(&frame(Some(x)))).collect();
        assert_eq!(moving, vec![true, false, false, true]);
        assert!(m.last_score > 5.0);
    }
}

//! Loss curves as a PNG next to the checkpoints: one line per loss, each scaled to
//! its own range (so small and large losses share the chart), steps on the x axis.

use std::path::Path;

use image::{Rgb, RgbImage};

const COLOURS: [[u8; 3]; 6] = [
    [20, 20, 20],
    [220, 40, 40],
    [30, 110, 220],
    [30, 160, 60],
    [240, 150, 0],
    [140, 60, 180],
];

/// Draws `series` (name, points (step, value)) into a `width x height` PNG at `path`.
pub fn loss_curves(
    path: &Path,
    series: &[(String, Vec<(f64, f64)>)],
    width: u32,
    height: u32,
) -> image::ImageResult<()> {
    let mut img = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let margin = 20.0;
    let (w, h) = (width as f64 - 2.0 * margin, height as f64 - 2.0 * margin);
    let max_step = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.0))
        .fold(1.0, f64::max);
    for x in margin as u32..(width - margin as u32) {
        img.put_pixel(x, height - margin as u32, Rgb([160, 160, 160]));
    }
    for y in margin as u32..(height - margin as u32) {
        img.put_pixel(margin as u32, y, Rgb([160, 160, 160]));
    }
    for (k, (_, points)) in series.iter().enumerate() {
        let finite: Vec<&(f64, f64)> = points.iter().filter(|p| p.1.is_finite()).collect();
        let (lo, hi) = finite
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
        let span = (hi - lo).max(1e-12);
        let colour = Rgb(COLOURS[k % COLOURS.len()]);
        let to_px = |p: &(f64, f64)| {
            (
                margin + p.0 / max_step * w,
                margin + (1.0 - (p.1 - lo) / span) * h,
            )
        };
        for pair in finite.windows(2) {
            let (a, b) = (to_px(pair[0]), to_px(pair[1]));
            let steps = ((b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil() as usize).max(1);
            for s in 0..=steps {
                let t = s as f64 / steps as f64;
                let (x, y) = (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1));
                if x >= 0.0 && y >= 0.0 && (x as u32) < width && (y as u32) < height {
                    img.put_pixel(x as u32, y as u32, colour);
                }
            }
        }
    }
    img.save(path)
}

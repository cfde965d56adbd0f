//! Where the model looked, by occlusion (Zeiler and Fergus 2014): a window slides
//! over the image as the model sees it (resized and centre-cropped), each position
//! hidden under the image's median colour, and the drop in what is explained (an
//! answer's probability, an image-text similarity) is spread back over the pixels
//! the window hid. It needs nothing from inside the model, so the trainer (burn)
//! and the board (tract) make the same map from the same scores. A spatial VQA
//! head says itself where it read its answer ([`focus`]): its map needs no
//! occlusion.

mod focus;

pub use focus::focus_map;

use image::{Rgb, RgbImage};

use crate::error::Error;
use crate::TextTokenizer;

/// The sliding window: side and step in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Occlusion {
    pub window: u32,
    pub stride: u32,
}

impl Occlusion {
    /// A window a fifth of the side, moved a third of itself: 18 × 18 positions on
    /// a 64-pixel scene, 19 × 19 on a 224-pixel photo.
    pub fn for_side(side: u32) -> Self {
        let window = (side / 5).max(2);
        Occlusion {
            window,
            stride: (window / 3).max(1),
        }
    }

    /// The windows' top-left corners on a `side`-pixel square. Windows overhang the
    /// edges, so a pixel by the border is hidden by as many windows as one in the
    /// middle: with windows flush to the edge, a border pixel's mean came from one
    /// or two windows and the map's peak was pulled towards the border.
    pub fn positions(&self, side: u32) -> Vec<(i32, i32)> {
        let (window, stride) = (self.window.max(1) as i32, self.stride.max(1) as i32);
        let first = -((window - 1) / stride * stride);
        let steps: Vec<i32> = (first..side as i32).step_by(stride as usize).collect();
        steps
            .iter()
            .flat_map(|&y| steps.iter().map(move |&x| (x, y)))
            .collect()
    }

    /// The pixels of a `side`-pixel square the window at `at` covers, per axis.
    fn span(&self, start: i32, side: u32) -> std::ops::Range<u32> {
        let end = (start + self.window as i32).clamp(0, side as i32) as u32;
        start.clamp(0, side as i32) as u32..end
    }

    /// The image with the window at `at` filled with `fill`.
    pub fn hide(&self, image: &RgbImage, at: (i32, i32), fill: [u8; 3]) -> RgbImage {
        let mut out = image.clone();
        for y in self.span(at.1, image.height()) {
            for x in self.span(at.0, image.width()) {
                out.put_pixel(x, y, Rgb(fill));
            }
        }
        out
    }

    /// Per pixel, the mean drop of the windows that hid it (`drops[i]` for
    /// `positions[i]`), row-major over `side × side`.
    pub fn map(&self, side: u32, positions: &[(i32, i32)], drops: &[f32]) -> Vec<f32> {
        let n = (side * side) as usize;
        let (mut sum, mut count) = (vec![0.0f32; n], vec![0u32; n]);
        for (&(x0, y0), &drop) in positions.iter().zip(drops) {
            for y in self.span(y0, side) {
                for x in self.span(x0, side) {
                    let i = (y * side + x) as usize;
                    sum[i] += drop;
                    count[i] += 1;
                }
            }
        }
        sum.iter()
            .zip(&count)
            .map(|(s, &c)| if c == 0 { 0.0 } else { s / c as f32 })
            .collect()
    }
}

/// Scores the image and each of its occluded copies (`score` takes a batch of at
/// most `chunk` images, so memory stays bounded) and returns the image's own score
/// and the map of drops from it. `image` is what the model sees (already resized
/// and cropped) and square.
pub fn occlusion_map<E>(
    image: &RgbImage,
    occlusion: Occlusion,
    chunk: usize,
    mut score: impl FnMut(&[RgbImage]) -> Result<Vec<f32>, E>,
) -> Result<(f32, Vec<f32>), E> {
    let side = image.width();
    let own = score(std::slice::from_ref(image))?
        .first()
        .copied()
        .unwrap_or(0.0);
    let fill = median_colour(image);
    let positions = occlusion.positions(side);
    let mut drops = Vec::with_capacity(positions.len());
    for batch in positions.chunks(chunk.max(1)) {
        let hidden: Vec<RgbImage> = batch.iter().map(|&at| occlusion.hide(image, at, fill)).collect();
        drops.extend(score(&hidden)?.into_iter().map(|s| own - s));
    }
    Ok((own, occlusion.map(side, &positions, &drops)))
}

/// An answer is scored by how far its log-probability stands above the runner-up's
/// (the logit margin): a confident answer's probability is 1.0 in f32 whatever is
/// hidden, the margin still moves.
pub fn answer_evidence(probabilities: &[f32], class: usize) -> f32 {
    let ln = |p: f32| p.max(1e-30).ln();
    let own = probabilities.get(class).copied().unwrap_or(0.0);
    let runner_up = probabilities
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != class)
        .fold(0.0f32, |m, (_, &p)| m.max(p));
    ln(own) - ln(runner_up)
}

/// A word of a caption as the decoder reads it: the caption's ids (`[CLS]`, its
/// tokens, no `[SEP]`) fed with teacher forcing, and the positions in them of the
/// tokens that spell the word's first occurrence (each predicted from the one before).
#[derive(Debug, Clone, PartialEq)]
pub struct CaptionWord {
    pub ids: Vec<u32>,
    pub positions: std::ops::Range<usize>,
}

impl CaptionWord {
    /// Finds `word` (case-insensitive, a whole word) in `caption`.
    pub fn find(tokenizer: &TextTokenizer, caption: &str, word: &str) -> Result<Self, Error> {
        let pieces = |text: &str| -> Result<Vec<u32>, Error> {
            let ids = tokenizer.encode(text)?;
            Ok(ids
                .get(1..ids.len().saturating_sub(1))
                .unwrap_or_default()
                .to_vec())
        };
        let target = word.trim().to_lowercase();
        let mut ids = vec![tokenizer.special_ids().cls];
        let mut positions = None;
        for w in caption.split_whitespace() {
            let start = ids.len();
            let spelled = pieces(w)?;
            let bare = w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase();
            if positions.is_none() && bare == target {
                // The word's own pieces, without punctuation glued to either side.
                let own = pieces(&bare)?;
                positions = (0..spelled.len())
                    .find(|&at| !own.is_empty() && spelled[at..].starts_with(&own))
                    .map(|at| start + at..start + at + own.len());
            }
            ids.extend(spelled);
        }
        let positions = positions.ok_or_else(|| Error::Config {
            field: "word".into(),
            reason: format!("{word:?} is not a word of the caption {caption:?}"),
        })?;
        if positions.end > tokenizer.max_len().saturating_sub(1) {
            return Err(Error::Config {
                field: "word".into(),
                reason: format!(
                    "{word:?} lies beyond the decoder's {} tokens",
                    tokenizer.max_len()
                ),
            });
        }
        Ok(Self { ids, positions })
    }

    /// The word's log-probability from the caption's teacher-forced token
    /// log-probabilities (`token_log_probs[i]`: of `ids[i + 1]` after `ids[..=i]`).
    pub fn log_probability(&self, token_log_probs: &[f32]) -> f32 {
        self.positions
            .clone()
            .map(|p| token_log_probs.get(p - 1).copied().unwrap_or(f32::MIN))
            .sum()
    }
}

/// Log-probabilities of `ids[1..]` under teacher forcing, from next-token logits at
/// every position (`logits[i]` over the vocabulary, predicting `ids[i + 1]`).
pub fn teacher_forced(logits: &[&[f32]], ids: &[u32]) -> Vec<f32> {
    logits
        .iter()
        .zip(ids.iter().skip(1))
        .map(|(row, &next)| {
            crate::search::log_softmax(row)
                .get(next as usize)
                .copied()
                .unwrap_or(f32::MIN)
        })
        .collect()
}

/// The per-channel median colour: the background of a synthetic scene, a neutral
/// tone of a photo.
pub fn median_colour(image: &RgbImage) -> [u8; 3] {
    let mut out = [0u8; 3];
    for (c, value) in out.iter_mut().enumerate() {
        let mut channel: Vec<u8> = image.pixels().map(|p| p.0[c]).collect();
        if channel.is_empty() {
            return [128; 3];
        }
        let mid = channel.len() / 2;
        *value = *channel.select_nth_unstable(mid).1;
    }
    out
}

/// The map's highest pixel (x, y); the first of equals.
pub fn peak(map: &[f32], side: u32) -> (u32, u32) {
    let best = map
        .iter()
        .enumerate()
        .fold((0, f32::MIN), |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc })
        .0 as u32;
    (best % side.max(1), best / side.max(1))
}

/// Blue (no drop) through green and yellow to red (the largest drop).
fn heat(t: f32) -> [u8; 3] {
    let t = t.clamp(0.0, 1.0);
    let ramp = |a: f32| (a.clamp(0.0, 1.0) * 255.0).round() as u8;
    [
        ramp(2.0 * t - 0.5),
        ramp(1.5 - (2.0 * t - 1.0).abs() * 1.5),
        ramp(1.0 - 2.0 * t),
    ]
}

/// The image under the map (negative drops count as none; the heat shows more
/// strongly where the drop is larger), scaled up to at least 256 pixels a side,
/// with a colour bar underneath: blue is no drop, red the map's largest; the peak
/// is marked with a white cross.
pub fn overlay(image: &RgbImage, map: &[f32]) -> RgbImage {
    let side = image.width();
    let top = map.iter().cloned().fold(0.0f32, f32::max).max(1e-9);
    let scale = 256u32.div_ceil(side.max(1)).max(1);
    let (w, bar) = (side * scale, 12 * scale.min(2));
    let mut out = RgbImage::from_pixel(w, w + bar + 4, Rgb([255, 255, 255]));
    for y in 0..w {
        for x in 0..w {
            let (sx, sy) = (x / scale, y / scale);
            let p = image.get_pixel(sx.min(side - 1), sy.min(image.height() - 1)).0;
            let t = map[(sy * side + sx) as usize].max(0.0) / top;
            let h = heat(t);
            // The heat shows through where the drop is, the photo elsewhere.
            let alpha = 0.15 + 0.55 * t;
            let mix = |a: u8, b: u8| (f32::from(a) * (1.0 - alpha) + f32::from(b) * alpha).round() as u8;
            out.put_pixel(x, y, Rgb([mix(p[0], h[0]), mix(p[1], h[1]), mix(p[2], h[2])]));
        }
    }
    let (px, py) = peak(map, side);
    let (cx, cy) = (px * scale + scale / 2, py * scale + scale / 2);
    for d in 0..(4 * scale) {
        for (x, y) in [
            (cx + d, cy),
            (cx.wrapping_sub(d), cy),
            (cx, cy + d),
            (cx, cy.wrapping_sub(d)),
        ] {
            if x < w && y < w {
                out.put_pixel(x, y, Rgb([255, 255, 255]));
            }
        }
    }
    for x in 0..w {
        let colour = heat(x as f32 / (w - 1).max(1) as f32);
        for y in (w + 4)..(w + 4 + bar) {
            out.put_pixel(x, y, Rgb(colour));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_every_pixel_and_the_map_peaks_where_the_drop_is() {
        let occlusion = Occlusion::for_side(64);
        assert_eq!(
            occlusion,
            Occlusion {
                window: 12,
                stride: 4
            }
        );
        let positions = occlusion.positions(64);
        assert_eq!(positions.len(), 18 * 18);
        assert!(positions.contains(&(-8, -8)) && positions.contains(&(60, 60)));
        // Every pixel, border or middle, is hidden by the same number of windows.
        for x in [0u32, 1, 31, 62, 63] {
            let covering = positions
                .iter()
                .filter(|&&(x0, y0)| y0 == 0 && occlusion.span(x0, 64).contains(&x))
                .count();
            assert_eq!(covering, 3, "pixel {x}");
        }
        // A drop only where a window covers the point (40, 20).
        let drops: Vec<f32> = positions
            .iter()
            .map(|&(x, y)| {
                if (x..x + 12).contains(&40) && (y..y + 12).contains(&20) {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let map = occlusion.map(64, &positions, &drops);
        let (px, py) = peak(&map, 64);
        assert!(
            (px as i32 - 40).abs() <= 4 && (py as i32 - 20).abs() <= 4,
            "{px},{py}"
        );
        assert!(map.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn a_caption_word_is_found_whole_and_scored_from_its_own_tokens() {
        let corpus = ["a red square left of a blue circle."; 20];
        let cfg = crate::config::TokenizerConfig {
            vocab_size: 120,
            min_frequency: 1,
            max_len: 16,
            lowercase: true,
        };
        let tokenizer = TextTokenizer::train(corpus.iter(), &cfg).unwrap();
        let caption = "a red square left of a blue circle.";
        let word = CaptionWord::find(&tokenizer, caption, "Circle").unwrap();
        let encoded = tokenizer.encode(caption).unwrap();
        // The caption's ids without [SEP]; the word's pieces exclude the full stop.
        assert_eq!(word.ids, encoded[..encoded.len() - 1]);
        let circle = tokenizer.encode("circle").unwrap();
        assert_eq!(word.positions.len(), circle.len() - 2);
        assert_eq!(word.ids[word.positions.clone()], circle[1..circle.len() - 1]);
        // Only the word's tokens count, each read from the position before it.
        let mut log_probs = vec![-9.0; word.ids.len() - 1];
        for p in word.positions.clone() {
            log_probs[p - 1] = -0.5;
        }
        let expected = -0.5 * word.positions.len() as f32;
        assert!((word.log_probability(&log_probs) - expected).abs() < 1e-6);
        // Punctuation before the word is not part of it either.
        let quoted = CaptionWord::find(&tokenizer, "a \"red square", "red").unwrap();
        let red = tokenizer.encode("red").unwrap();
        assert_eq!(quoted.ids[quoted.positions.clone()], red[1..red.len() - 1]);
        // "re" is inside "red", not a word of the caption.
        let missing = CaptionWord::find(&tokenizer, caption, "re").unwrap_err();
        assert!(
            missing.to_string().contains("not a word of the caption"),
            "{missing}"
        );
    }

    #[test]
    fn teacher_forcing_reads_each_next_token() {
        let logits = [[0.0f32, 2.0, 0.0], [3.0, 0.0, 0.0]];
        let rows: Vec<&[f32]> = logits.iter().map(|r| &r[..]).collect();
        let read = teacher_forced(&rows, &[0, 1, 0]);
        assert_eq!(read.len(), 2);
        let expected = crate::search::log_softmax(&logits[0])[1];
        assert!((read[0] - expected).abs() < 1e-6 && read[1] > read[0]);
    }

    #[test]
    fn a_saturated_answer_still_has_a_margin() {
        let p = [1.0, 1e-9, 1e-11];
        assert!((answer_evidence(&p, 0) - 20.7).abs() < 0.1);
        assert!(answer_evidence(&[0.5, 0.3, 0.2], 1) < 0.0);
    }

    #[test]
    fn hiding_fills_the_window_with_the_median_and_the_overlay_has_a_colour_bar() {
        let image = RgbImage::from_fn(32, 32, |x, _| {
            if x < 4 {
                Rgb([200, 0, 0])
            } else {
                Rgb([255, 255, 255])
            }
        });
        let fill = median_colour(&image);
        assert_eq!(fill, [255, 255, 255]);
        let occlusion = Occlusion::for_side(32);
        let hidden = occlusion.hide(&image, (-4, 0), fill);
        assert_eq!(hidden.get_pixel(1, 1).0, [255, 255, 255]);
        assert_eq!(hidden.get_pixel(1, 31).0, [200, 0, 0]);
        assert_eq!(
            hidden.get_pixel(2, 1).0,
            [200, 0, 0],
            "the overhanging window ends at x = 2"
        );
        let map = vec![0.5; 32 * 32];
        let png = overlay(&image, &map);
        assert_eq!(png.width(), 256);
        assert!(png.height() > 256);
        assert_eq!(png.get_pixel(0, png.height() - 2).0, heat(0.0));
        assert_eq!(png.get_pixel(255, png.height() - 2).0, heat(1.0));
    }
}

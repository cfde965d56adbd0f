//! Recall@K for image–text retrieval, the protocol of Karpathy & Fei-Fei (2015) used on COCO and
//! Flickr: image → text hits when any caption of the image ranks in the top K; text → image hits
//! when the caption's own image ranks in the top K.
//!
//! Ranking is by similarity, descending. Ties are broken by index, lower first, which is what a
//! stable descending sort gives; the rank of an item is the number of items with a higher score
//! plus the number of equal-scored items with a lower index. (Ties are rare with real embeddings,
//! but a constant model must not score 100%.) Recalls are percentages.

use super::error::{MetricsError, Result};

/// Recall at 1, 5 and 10, in percent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecallAtK {
    pub r1: f64,
    pub r5: f64,
    pub r10: f64,
}

/// Both retrieval directions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetrievalRecall {
    pub image_to_text: RecallAtK,
    pub text_to_image: RecallAtK,
}

/// R@1/5/10 in both directions. `similarities[image][text]` scores every image against every
/// caption; `text_to_image[text]` is the image the caption belongs to.
pub fn retrieval_recall(similarities: &[Vec<f32>], text_to_image: &[usize]) -> Result<RetrievalRecall> {
    Ok(RetrievalRecall {
        image_to_text: recall_at_k(&image_to_text_ranks(similarities, text_to_image)?),
        text_to_image: recall_at_k(&text_to_image_ranks(similarities, text_to_image)?),
    })
}

/// For each image, the 0-based rank of its best-ranked caption among all captions.
pub fn image_to_text_ranks(similarities: &[Vec<f32>], text_to_image: &[usize]) -> Result<Vec<usize>> {
    validate(similarities, text_to_image)?;
    let mut best_ranks = vec![usize::MAX; similarities.len()];
    for (text, &image) in text_to_image.iter().enumerate() {
        let rank = rank_of(&similarities[image], text);
        best_ranks[image] = best_ranks[image].min(rank);
    }
    Ok(best_ranks)
}

/// For each caption, the 0-based rank of its own image among all images.
pub fn text_to_image_ranks(similarities: &[Vec<f32>], text_to_image: &[usize]) -> Result<Vec<usize>> {
    validate(similarities, text_to_image)?;
    let ranks = text_to_image
        .iter()
        .enumerate()
        .map(|(text, &image)| {
            let column: Vec<f32> = similarities.iter().map(|row| row[text]).collect();
            rank_of(&column, image)
        })
        .collect();
    Ok(ranks)
}

/// Position of `scores[target]` in a stable descending sort of `scores`.
fn rank_of(scores: &[f32], target: usize) -> usize {
    let score = scores[target];
    let higher = scores.iter().filter(|&&other| other > score).count();
    let tied_before = scores[..target].iter().filter(|&&other| other == score).count();
    higher + tied_before
}

fn recall_at_k(ranks: &[usize]) -> RecallAtK {
    let recall =
        |k: usize| 100.0 * ranks.iter().filter(|&&rank| rank < k).count() as f64 / ranks.len() as f64;
    RecallAtK {
        r1: recall(1),
        r5: recall(5),
        r10: recall(10),
    }
}

fn validate(similarities: &[Vec<f32>], text_to_image: &[usize]) -> Result<()> {
    if similarities.is_empty() {
        return Err(MetricsError::Empty { what: "images" });
    }
    if text_to_image.is_empty() {
        return Err(MetricsError::Empty { what: "captions" });
    }
    for (row, scores) in similarities.iter().enumerate() {
        if scores.len() != text_to_image.len() {
            return Err(MetricsError::RowLength {
                what: "similarity row",
                row,
                len: scores.len(),
                expected: text_to_image.len(),
            });
        }
        if let Some(column) = scores.iter().position(|score| score.is_nan()) {
            return Err(MetricsError::NotANumber {
                what: "similarity",
                row,
                column,
            });
        }
    }
    let mut has_caption = vec![false; similarities.len()];
    for (text, &image) in text_to_image.iter().enumerate() {
        let Some(flag) = has_caption.get_mut(image) else {
            return Err(MetricsError::IndexOutOfRange {
                what: "caption",
                index: text,
                target: "image",
                value: image,
                len: similarities.len(),
            });
        };
        *flag = true;
    }
    if let Some(index) = has_caption.iter().position(|&has| !has) {
        return Err(MetricsError::EmptyItem {
            what: "image",
            index,
            missing: "captions",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 12 images with one caption each, built so that image i's caption ranks i-th for the image
    /// (captions of earlier images score 1.0 above its own 0.5) and 11 - i-th for the caption
    /// (later images score 1.0 in its column).
    fn staircase() -> (Vec<Vec<f32>>, Vec<usize>) {
        let n = 12;
        let similarities = (0..n)
            .map(|image| {
                (0..n)
                    .map(|text| match text.cmp(&image) {
                        std::cmp::Ordering::Less => 1.0,
                        std::cmp::Ordering::Equal => 0.5,
                        std::cmp::Ordering::Greater => 0.0,
                    })
                    .collect()
            })
            .collect();
        (similarities, (0..n).collect())
    }

    #[test]
    fn staircase_ranks_and_recalls() {
        let (similarities, text_to_image) = staircase();
        assert_eq!(
            image_to_text_ranks(&similarities, &text_to_image),
            Ok((0..12).collect())
        );
        assert_eq!(
            text_to_image_ranks(&similarities, &text_to_image),
            Ok((0..12).rev().collect())
        );
        // Ranks 0..=11 in both directions: 1, 5 and 10 of the 12 fall under K = 1, 5, 10.
        let expected = RecallAtK {
            r1: 100.0 / 12.0,
            r5: 500.0 / 12.0,
            r10: 1000.0 / 12.0,
        };
        assert_eq!(
            retrieval_recall(&similarities, &text_to_image),
            Ok(RetrievalRecall {
                image_to_text: expected,
                text_to_image: expected
            })
        );
    }

    #[test]
    fn an_image_hits_through_its_best_caption() {
        // Image 0 owns captions 0 and 2; caption 2 is its top match, caption 0 its last.
        let similarities = vec![vec![0.1, 0.5, 0.9], vec![0.2, 0.8, 0.3]];
        let text_to_image = [0, 1, 0];
        assert_eq!(image_to_text_ranks(&similarities, &text_to_image), Ok(vec![0, 0]));
        // Columns: caption 0 prefers image 1 (0.2 > 0.1), caption 1 image 1, caption 2 image 0.
        assert_eq!(
            text_to_image_ranks(&similarities, &text_to_image),
            Ok(vec![1, 0, 0])
        );
    }

    #[test]
    fn ties_go_to_the_lower_index() {
        // A constant model: every item ranks behind all lower-indexed ones.
        let similarities = vec![vec![0.0_f32; 6]; 3];
        let text_to_image = [0, 0, 1, 1, 2, 2];
        assert_eq!(
            image_to_text_ranks(&similarities, &text_to_image),
            Ok(vec![0, 2, 4])
        );
        assert_eq!(
            text_to_image_ranks(&similarities, &text_to_image),
            Ok(vec![0, 0, 1, 1, 2, 2])
        );
        // -0.0 and 0.0 are equal scores, so still a tie.
        let signed_zeros = vec![vec![-0.0_f32, 0.0], vec![0.0, 0.0]];
        assert_eq!(image_to_text_ranks(&signed_zeros, &[1, 0]), Ok(vec![1, 0]));
    }

    #[test]
    fn rejects_malformed_input() {
        let ok_row = vec![0.0_f32, 1.0];
        assert_eq!(
            retrieval_recall(&[ok_row.clone(), vec![0.0]], &[0, 1]),
            Err(MetricsError::RowLength {
                what: "similarity row",
                row: 1,
                len: 1,
                expected: 2
            })
        );
        assert_eq!(
            retrieval_recall(&[ok_row.clone(), vec![f32::NAN, 0.0]], &[0, 1]),
            Err(MetricsError::NotANumber {
                what: "similarity",
                row: 1,
                column: 0
            })
        );
        assert_eq!(
            retrieval_recall(std::slice::from_ref(&ok_row), &[0, 3]),
            Err(MetricsError::IndexOutOfRange {
                what: "caption",
                index: 1,
                target: "image",
                value: 3,
                len: 1
            })
        );
        assert_eq!(
            retrieval_recall(&[ok_row.clone(), ok_row], &[0, 0]),
            Err(MetricsError::EmptyItem {
                what: "image",
                index: 1,
                missing: "captions"
            })
        );
        assert_eq!(
            retrieval_recall(&[], &[0]),
            Err(MetricsError::Empty { what: "images" })
        );
    }
}

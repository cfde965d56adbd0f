//! Dialogs about a scene in the style of CLEVR-Dialog (Kottur et al. 2019): ten
//! rounds whose follow-up questions refer to an earlier round's object ("what shape
//! is it?", "what colour is the object closest to it?"), answers computed from the
//! scene. Each round records whether it needs the history and how many rounds back
//! its referent was introduced (at most [`MAX_DISTANCE`], so that the history the
//! model reads still holds it).

use serde::{Deserialize, Serialize};

use super::questions::unique_min;
use super::scene::{Object, Scene, Shape};
use crate::rng::SplitMix64;

pub const ROUNDS: usize = 10;
/// The farthest back a referent may have been introduced.
pub const MAX_DISTANCE: usize = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Round {
    pub question: String,
    pub answer: String,
    /// e.g. `intro-extreme`, `it-shape`, `it-closest`, `count`.
    pub family: String,
    /// Rounds back to where "it" was introduced; absent when the round stands alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance: Option<usize>,
}

impl Round {
    pub fn needs_history(&self) -> bool {
        self.distance.is_some()
    }
}

/// What "it" refers to: an object, the round that introduced it, and which of its
/// attributes the dialog already told (asking them again would be answered by the
/// history alone).
struct Focus {
    object: usize,
    round: usize,
    told_shape: bool,
}

/// A dialog of [`ROUNDS`] rounds about `scene`.
pub fn dialog(scene: &Scene, rng: &mut SplitMix64) -> Vec<Round> {
    let mut rounds: Vec<Round> = Vec::with_capacity(ROUNDS);
    let mut focus: Option<Focus> = None;
    while rounds.len() < ROUNDS {
        let k = rounds.len();
        let reachable = focus.as_ref().filter(|f| k - f.round <= MAX_DISTANCE);
        let roll = rng.below(100);
        let next = match reachable {
            Some(f) if roll < 85 => follow_up(scene, f, k, rng),
            _ if roll < 93 && k > 0 => Some((count(scene, rng), None)),
            _ => intro(scene, k, rng),
        };
        if let Some((round, new_focus)) = next {
            if new_focus.is_some() {
                focus = new_focus;
            }
            rounds.push(round);
        }
    }
    rounds
}

fn round(question: String, answer: &str, family: &str, distance: Option<usize>) -> Round {
    Round {
        question,
        answer: answer.to_string(),
        family: family.to_string(),
        distance,
    }
}

type Step = (Round, Option<Focus>);

/// A round that names its object without the history: the object at an extreme
/// (its colour answered) or the object of a colour (its shape answered).
fn intro(scene: &Scene, k: usize, rng: &mut SplitMix64) -> Option<Step> {
    let objects = &scene.objects;
    if rng.below(2) == 0 {
        type Key = fn(&Object) -> f32;
        let extremes: [(&str, Key); 4] = [
            ("leftmost", |o| o.x),
            ("rightmost", |o| -o.x),
            ("topmost", |o| o.y),
            ("bottommost", |o| -o.y),
        ];
        let (word, key) = extremes[rng.below(4) as usize];
        let o = unique_min(objects, key)?;
        let object = objects.iter().position(|x| x == o)?;
        let question = format!("what colour is the {word} object?");
        let focus = Focus {
            object,
            round: k,
            told_shape: false,
        };
        Some((
            round(question, o.colour.name(), "intro-extreme", None),
            Some(focus),
        ))
    } else {
        let object = rng.below(objects.len() as u64) as usize;
        let o = &objects[object];
        let question = format!("what shape is the {} object?", o.colour.name());
        let focus = Focus {
            object,
            round: k,
            told_shape: true,
        };
        Some((round(question, o.shape.name(), "intro-named", None), Some(focus)))
    }
}

/// A round about "it", the focus object; the closest/farthest rounds move the
/// focus to the object they answer.
fn follow_up(scene: &Scene, focus: &Focus, k: usize, rng: &mut SplitMix64) -> Option<Step> {
    let objects = &scene.objects;
    let it = &objects[focus.object];
    let distance = Some(k - focus.round);
    let half = scene.size as f32 / 2.0;
    match rng.below(8) {
        0 if !focus.told_shape => Some((
            round("what shape is it?".into(), it.shape.name(), "it-shape", distance),
            None,
        )),
        1 => Some((
            round(
                "is it small or large?".into(),
                it.size.name(),
                "it-size",
                distance,
            ),
            None,
        )),
        2 => {
            let side = if it.x < half { "left" } else { "right" };
            let q = "is it on the left or on the right?".to_string();
            Some((round(q, side, "it-side", distance), None))
        }
        3 => {
            let level = if it.y < half { "top" } else { "bottom" };
            let q = "is it at the top or at the bottom?".to_string();
            Some((round(q, level, "it-level", distance), None))
        }
        4 => {
            let same = objects.iter().filter(|o| *o != it && o.shape == it.shape).count();
            let q = "how many other objects have the same shape as it?".to_string();
            Some((round(q, &same.to_string(), "it-same-shape", distance), None))
        }
        5..=7 => {
            let closest = rng.below(2) == 0;
            let others: Vec<Object> = objects.iter().filter(|o| *o != it).cloned().collect();
            let sign = if closest { 1.0 } else { -1.0 };
            let pick = unique_min(&others, |o| sign * o.distance(it))?;
            let object = objects.iter().position(|o| o == pick)?;
            let (question, family) = if closest {
                ("what colour is the object closest to it?", "it-closest")
            } else {
                ("what colour is the object farthest from it?", "it-farthest")
            };
            let focus = Focus {
                object,
                round: k,
                told_shape: false,
            };
            Some((
                round(question.into(), pick.colour.name(), family, distance),
                Some(focus),
            ))
        }
        _ => None,
    }
}

/// A round that stands alone and names no object: how many of a shape.
fn count(scene: &Scene, rng: &mut SplitMix64) -> Round {
    let shape = Shape::ALL[rng.below(3) as usize];
    let n = scene.objects.iter().filter(|o| o.shape == shape).count();
    round(
        format!("how many {} are there?", shape.plural()),
        &n.to_string(),
        "count",
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialogs_have_ten_rounds_and_follow_ups_refer_back_within_reach() {
        let mut rng = SplitMix64::new(9);
        let (mut with_history, mut total) = (0, 0);
        for _ in 0..300 {
            let scene = Scene::generate(&mut rng, 64);
            let rounds = dialog(&scene, &mut rng);
            assert_eq!(rounds.len(), ROUNDS);
            assert!(!rounds[0].needs_history(), "{:?}", rounds[0]);
            for (k, r) in rounds.iter().enumerate() {
                total += 1;
                if let Some(d) = r.distance {
                    with_history += 1;
                    assert!((1..=MAX_DISTANCE).contains(&d) && d <= k, "{r:?} at round {k}");
                    // The referent was introduced by a round that named or answered an object.
                    let source = &rounds[k - d].family;
                    assert!(
                        source.starts_with("intro") || source == "it-closest" || source == "it-farthest",
                        "{r:?} refers to {source}"
                    );
                }
            }
        }
        let share = with_history as f64 / total as f64;
        assert!(
            (0.35..0.8).contains(&share),
            "{share} of the rounds need the history"
        );
    }
}

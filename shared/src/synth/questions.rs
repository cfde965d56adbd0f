//! Questions about a scene, Sort-of-CLEVR style, with answers computed from the
//! scene description. Non-relational questions need one object's attributes;
//! relational ones need to compare objects.

use serde::{Deserialize, Serialize};

use super::scene::{Object, Scene, Shape};
use crate::rng::SplitMix64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuestionKind {
    NonRelational,
    Relational,
}

impl QuestionKind {
    pub fn name(self) -> &'static str {
        match self {
            QuestionKind::NonRelational => "non-relational",
            QuestionKind::Relational => "relational",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Question {
    pub question: String,
    pub answer: String,
    pub kind: QuestionKind,
    /// Finer type, e.g. `shape`, `count`, `closest-shape`.
    pub family: String,
    /// Where the one object the answer is about lies, in scene pixels (x, y): the
    /// object a question names or singles out, or the one a relational question
    /// asks about. None for counts, which are about several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub focus: Option<[f32; 2]>,
}

/// Distances closer than this (pixels) make "closest"/"farthest" ambiguous, so such
/// questions are not asked.
const TIE_MARGIN: f32 = 2.0;

/// Up to `per_kind` questions of each kind, chosen with `rng` among all that the
/// scene answers unambiguously.
pub fn questions(scene: &Scene, rng: &mut SplitMix64, per_kind: usize) -> Vec<Question> {
    let (mut non_relational, mut relational) = (all_non_relational(scene), all_relational(scene));
    rng.shuffle(&mut non_relational);
    rng.shuffle(&mut relational);
    non_relational.truncate(per_kind);
    relational.truncate(per_kind);
    non_relational.extend(relational);
    non_relational
}

fn q(kind: QuestionKind, family: &str, question: String, answer: impl Into<String>) -> Question {
    Question {
        question,
        answer: answer.into(),
        kind,
        family: family.into(),
        focus: None,
    }
}

impl Question {
    fn about(mut self, object: &Object) -> Self {
        self.focus = Some([object.x, object.y]);
        self
    }
}

fn all_non_relational(scene: &Scene) -> Vec<Question> {
    use QuestionKind::NonRelational as N;
    let half = scene.size as f32 / 2.0;
    let mut out = Vec::new();
    for o in &scene.objects {
        let c = o.colour.name();
        out.push(
            q(
                N,
                "shape",
                format!("what shape is the {c} object?"),
                o.shape.name(),
            )
            .about(o),
        );
        out.push(
            q(
                N,
                "size",
                format!("is the {c} object small or large?"),
                o.size.name(),
            )
            .about(o),
        );
        let side = if o.x < half { "left" } else { "right" };
        out.push(
            q(
                N,
                "horizontal",
                format!("is the {c} object on the left or on the right?"),
                side,
            )
            .about(o),
        );
        let level = if o.y < half { "top" } else { "bottom" };
        out.push(
            q(
                N,
                "vertical",
                format!("is the {c} object at the top or at the bottom?"),
                level,
            )
            .about(o),
        );
    }
    out.push(q(
        N,
        "count",
        "how many objects are there?".into(),
        scene.objects.len().to_string(),
    ));
    for shape in Shape::ALL {
        let n = scene.objects.iter().filter(|o| o.shape == shape).count();
        out.push(q(
            N,
            "count",
            format!("how many {} are there?", shape.plural()),
            n.to_string(),
        ));
    }
    type Key = fn(&Object) -> f32;
    let extremes: [(&str, Key); 4] = [
        ("leftmost", |o| o.x),
        ("rightmost", |o| -o.x),
        ("topmost", |o| o.y),
        ("bottommost", |o| -o.y),
    ];
    for (word, key) in extremes {
        if let Some(o) = unique_min(&scene.objects, key) {
            out.push(
                q(
                    N,
                    "colour",
                    format!("what colour is the {word} object?"),
                    o.colour.name(),
                )
                .about(o),
            );
        }
    }
    out
}

fn all_relational(scene: &Scene) -> Vec<Question> {
    use QuestionKind::Relational as R;
    let mut out = Vec::new();
    for anchor in &scene.objects {
        let c = anchor.colour.name();
        let others: Vec<&Object> = scene.objects.iter().filter(|o| *o != anchor).collect();
        let owned: Vec<Object> = others.iter().map(|o| (*o).clone()).collect();
        if let Some(near) = unique_min(&owned, |o| o.distance(anchor)) {
            out.push(
                q(
                    R,
                    "closest-shape",
                    format!("what shape is the object closest to the {c} object?"),
                    near.shape.name(),
                )
                .about(near),
            );
            out.push(
                q(
                    R,
                    "closest-colour",
                    format!("what colour is the object closest to the {c} object?"),
                    near.colour.name(),
                )
                .about(near),
            );
        }
        if let Some(far) = unique_min(&owned, |o| -o.distance(anchor)) {
            out.push(
                q(
                    R,
                    "farthest-shape",
                    format!("what shape is the object farthest from the {c} object?"),
                    far.shape.name(),
                )
                .about(far),
            );
            out.push(
                q(
                    R,
                    "farthest-colour",
                    format!("what colour is the object farthest from the {c} object?"),
                    far.colour.name(),
                )
                .about(far),
            );
        }
        let same = others.iter().filter(|o| o.shape == anchor.shape).count();
        out.push(q(
            R,
            "same-shape-count",
            format!("how many other objects have the same shape as the {c} object?"),
            same.to_string(),
        ));
    }
    out
}

/// The object with the smallest key, if it beats the runner-up by the tie margin.
pub(crate) fn unique_min(objects: &[Object], key: impl Fn(&Object) -> f32) -> Option<&Object> {
    let mut ranked: Vec<(f32, &Object)> = objects.iter().map(|o| (key(o), o)).collect();
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0));
    match ranked.as_slice() {
        [only] => Some(only.1),
        [best, second, ..] if second.0 - best.0 >= TIE_MARGIN => Some(best.1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_focus_is_the_object_the_answer_is_about() {
        let mut rng = SplitMix64::new(5);
        let mut focused = 0;
        for _ in 0..300 {
            let scene = Scene::generate(&mut rng, 64);
            let all = all_non_relational(&scene)
                .into_iter()
                .chain(all_relational(&scene));
            for q in all {
                let counts = q.family.ends_with("count");
                let Some([x, y]) = q.focus else {
                    assert!(counts, "{} has no focus", q.question);
                    continue;
                };
                assert!(!counts, "{} is about several objects", q.question);
                let object = scene
                    .objects
                    .iter()
                    .find(|o| o.x == x && o.y == y)
                    .expect("the focus is an object's position");
                // Its attribute is the answer, or the question names it.
                let named = q
                    .question
                    .contains(&format!("the {} object", object.colour.name()));
                let answered = [object.shape.name(), object.colour.name(), object.size.name()]
                    .contains(&q.answer.as_str());
                assert!(named || answered, "{}: {} at ({x}, {y})", q.question, q.answer);
                if q.family.starts_with("closest") || q.family.starts_with("farthest") {
                    assert!(answered && !named, "{}", q.question);
                }
                focused += 1;
            }
        }
        assert!(focused > 3000, "{focused}");
    }
}

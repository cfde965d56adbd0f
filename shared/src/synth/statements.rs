//! Statements about a scene whose truth is computed from the scene description, in
//! the style of NLVR (Suhr et al. 2017): attribute, relational and quantified
//! families, each drawn with as many true as false statements per scene so that a
//! model cannot learn a family's prior.

use serde::{Deserialize, Serialize};

use super::questions::unique_min;
use super::scene::{Colour, Object, Scene, Shape, Size, ORDER_MARGIN};
use crate::rng::SplitMix64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatementKind {
    /// One object's attributes or presence.
    Attribute,
    /// Two objects compared (left of, above, closest, farthest).
    Relational,
    /// Counting and quantifiers (exactly, more than, every … some).
    Quantified,
}

impl StatementKind {
    pub fn name(self) -> &'static str {
        match self {
            StatementKind::Attribute => "attribute",
            StatementKind::Relational => "relational",
            StatementKind::Quantified => "quantified",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    pub statement: String,
    pub truth: bool,
    pub kind: StatementKind,
    /// Finer type, e.g. `exists`, `closest`, `every-left`.
    pub family: String,
}

/// Up to `per_family` true and as many false statements of every family the scene
/// can state both ways.
pub fn statements(scene: &Scene, rng: &mut SplitMix64, per_family: usize) -> Vec<Statement> {
    let mut out = Vec::new();
    for (kind, family, candidates) in families(scene) {
        let (mut truths, mut falsehoods): (Vec<_>, Vec<_>) = candidates.into_iter().partition(|c| c.1);
        let n = per_family.min(truths.len()).min(falsehoods.len());
        rng.shuffle(&mut truths);
        rng.shuffle(&mut falsehoods);
        for (statement, truth) in truths.into_iter().take(n).chain(falsehoods.into_iter().take(n)) {
            out.push(Statement {
                statement,
                truth,
                kind,
                family: family.into(),
            });
        }
    }
    out
}

type Candidates = Vec<(String, bool)>;

fn families(scene: &Scene) -> Vec<(StatementKind, &'static str, Candidates)> {
    use StatementKind::{Attribute, Quantified, Relational};
    vec![
        (Attribute, "exists", exists(scene)),
        (Attribute, "shape", shape(scene)),
        (Attribute, "position", position(scene)),
        (Relational, "left-of", left_of(scene)),
        (Relational, "above", above(scene)),
        (Relational, "closest", nearest(scene, true)),
        (Relational, "farthest", nearest(scene, false)),
        (Quantified, "exactly", exactly(scene)),
        (Quantified, "more", more(scene)),
        (Quantified, "every-left", every_beside(scene)),
        (Quantified, "every-size", every_size(scene)),
    ]
}

fn of_shape(scene: &Scene, shape: Shape) -> impl Iterator<Item = &Object> {
    scene.objects.iter().filter(move |o| o.shape == shape)
}

fn exists(scene: &Scene) -> Candidates {
    let mut out = Vec::new();
    for colour in Colour::ALL {
        for shape in Shape::ALL {
            let truth = scene
                .objects
                .iter()
                .any(|o| o.colour == colour && o.shape == shape);
            out.push((format!("there is a {} {}", colour.name(), shape.name()), truth));
        }
    }
    out
}

fn shape(scene: &Scene) -> Candidates {
    let mut out = Vec::new();
    for o in &scene.objects {
        for shape in Shape::ALL {
            out.push((
                format!("the {} object is a {}", o.colour.name(), shape.name()),
                o.shape == shape,
            ));
        }
    }
    out
}

fn position(scene: &Scene) -> Candidates {
    let half = scene.size as f32 / 2.0;
    let mut out = Vec::new();
    for o in &scene.objects {
        let c = o.colour.name();
        out.push((format!("the {c} object is on the left"), o.x < half));
        out.push((format!("the {c} object is on the right"), o.x > half));
        out.push((format!("the {c} object is at the top"), o.y < half));
        out.push((format!("the {c} object is at the bottom"), o.y > half));
    }
    out
}

fn pairs(scene: &Scene) -> impl Iterator<Item = (&Object, &Object)> {
    scene
        .objects
        .iter()
        .flat_map(move |a| scene.objects.iter().filter(move |b| *b != a).map(move |b| (a, b)))
}

fn left_of(scene: &Scene) -> Candidates {
    let mut out = Vec::new();
    for (a, b) in pairs(scene) {
        let (ca, cb) = (a.colour.name(), b.colour.name());
        out.push((format!("the {ca} object is left of the {cb} object"), a.x < b.x));
        out.push((format!("the {ca} object is right of the {cb} object"), a.x > b.x));
    }
    out
}

/// Only pairs whose heights differ by the order margin: closer, "above" would be a
/// matter of a pixel.
fn above(scene: &Scene) -> Candidates {
    let mut out = Vec::new();
    for (a, b) in pairs(scene).filter(|(a, b)| (a.y - b.y).abs() >= ORDER_MARGIN) {
        let (ca, cb) = (a.colour.name(), b.colour.name());
        out.push((format!("the {ca} object is above the {cb} object"), a.y < b.y));
        out.push((format!("the {ca} object is below the {cb} object"), a.y > b.y));
    }
    out
}

/// "the object closest to the blue square is a circle": the anchor named by colour
/// and shape, the answer by shape (closest) or colour (farthest).
fn nearest(scene: &Scene, closest: bool) -> Candidates {
    let mut out = Vec::new();
    for anchor in &scene.objects {
        let others: Vec<Object> = scene.objects.iter().filter(|o| *o != anchor).cloned().collect();
        let sign = if closest { 1.0 } else { -1.0 };
        let Some(pick) = unique_min(&others, |o| sign * o.distance(anchor)) else {
            continue;
        };
        let named = format!("{} {}", anchor.colour.name(), anchor.shape.name());
        if closest {
            for shape in Shape::ALL {
                out.push((
                    format!("the object closest to the {named} is a {}", shape.name()),
                    pick.shape == shape,
                ));
            }
        } else {
            for o in &others {
                out.push((
                    format!("the object farthest from the {named} is {}", o.colour.name()),
                    pick.colour == o.colour,
                ));
            }
        }
    }
    out
}

const NUMBER_WORDS: [&str; 4] = ["no", "one", "two", "three"];

fn exactly(scene: &Scene) -> Candidates {
    let mut out = Vec::new();
    for shape in Shape::ALL {
        let count = of_shape(scene, shape).count();
        for (n, word) in NUMBER_WORDS.iter().enumerate() {
            let text = match n {
                0 => format!("there are no {}", shape.plural()),
                1 => format!("there is exactly one {}", shape.name()),
                _ => format!("there are exactly {word} {}", shape.plural()),
            };
            out.push((text, count == n));
        }
    }
    out
}

fn more(scene: &Scene) -> Candidates {
    let mut out = Vec::new();
    for a in Shape::ALL {
        for b in Shape::ALL.into_iter().filter(|b| *b != a) {
            out.push((
                format!("there are more {} than {}", a.plural(), b.plural()),
                of_shape(scene, a).count() > of_shape(scene, b).count(),
            ));
        }
    }
    out
}

/// "every triangle is left of some circle", for shapes the scene holds (an empty
/// "every" would be true of nothing the image shows).
fn every_beside(scene: &Scene) -> Candidates {
    let mut out = Vec::new();
    for a in Shape::ALL {
        for b in Shape::ALL.into_iter().filter(|b| *b != a) {
            if of_shape(scene, a).next().is_none() || of_shape(scene, b).next().is_none() {
                continue;
            }
            let left = of_shape(scene, a).all(|x| of_shape(scene, b).any(|y| x.x < y.x));
            let right = of_shape(scene, a).all(|x| of_shape(scene, b).any(|y| x.x > y.x));
            out.push((format!("every {} is left of some {}", a.name(), b.name()), left));
            out.push((format!("every {} is right of some {}", a.name(), b.name()), right));
        }
    }
    out
}

fn every_size(scene: &Scene) -> Candidates {
    let mut out = Vec::new();
    for shape in Shape::ALL {
        if of_shape(scene, shape).next().is_none() {
            continue;
        }
        for size in [Size::Small, Size::Large] {
            out.push((
                format!("every {} is {}", shape.name(), size.name()),
                of_shape(scene, shape).all(|o| o.size == size),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn every_family_is_balanced_and_present() {
        let mut rng = SplitMix64::new(5);
        let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for _ in 0..500 {
            let scene = Scene::generate(&mut rng, 64);
            let drawn = statements(&scene, &mut rng, 2);
            for s in &drawn {
                let entry = counts.entry(s.family.clone()).or_default();
                if s.truth {
                    entry.0 += 1;
                } else {
                    entry.1 += 1;
                }
            }
        }
        assert_eq!(counts.len(), 11, "{counts:?}");
        for (family, (t, f)) in &counts {
            assert_eq!(t, f, "{family}");
            assert!(*t > 100, "{family}: only {t} true statements in 500 scenes");
        }
    }

    #[test]
    fn quantified_statements_follow_their_definitions() {
        let obj = |colour, shape, x: f32| Object {
            colour,
            shape,
            size: Size::Small,
            x,
            y: 10.0,
            radius: 4.0,
        };
        let scene = Scene {
            size: 64,
            objects: vec![
                obj(Colour::Red, Shape::Triangle, 10.0),
                obj(Colour::Blue, Shape::Circle, 30.0),
                obj(Colour::Green, Shape::Triangle, 50.0),
            ],
        };
        let truth = |text: &str| {
            families(&scene)
                .into_iter()
                .flat_map(|f| f.2)
                .find(|c| c.0 == text)
                .unwrap_or_else(|| panic!("{text:?} not stated"))
                .1
        };
        assert!(!truth("every triangle is left of some circle"));
        assert!(truth("every circle is left of some triangle"));
        assert!(truth("every circle is right of some triangle"));
        assert!(truth("there are more triangles than circles"));
        assert!(truth("there are more circles than squares"));
        assert!(!truth("there are more squares than circles"));
        assert!(truth("there are exactly two triangles"));
        assert!(truth("there are no squares"));
        assert!(truth("every triangle is small"));
        // Red and green are equally far from the blue circle: no "closest" about it.
        assert!(families(&scene)
            .into_iter()
            .flat_map(|f| f.2)
            .all(|c| !c.0.starts_with("the object closest to the blue circle")));
    }
}

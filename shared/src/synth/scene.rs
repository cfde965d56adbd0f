//! Scene description: what is where. Everything else is computed from it.

use serde::{Deserialize, Serialize};

use crate::rng::SplitMix64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    Red,
    Green,
    Blue,
    Orange,
    Yellow,
    Purple,
}

impl Colour {
    pub const ALL: [Colour; 6] = [
        Colour::Red,
        Colour::Green,
        Colour::Blue,
        Colour::Orange,
        Colour::Yellow,
        Colour::Purple,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Colour::Red => "red",
            Colour::Green => "green",
            Colour::Blue => "blue",
            Colour::Orange => "orange",
            Colour::Yellow => "yellow",
            Colour::Purple => "purple",
        }
    }

    pub fn rgb(self) -> [u8; 3] {
        match self {
            Colour::Red => [220, 30, 30],
            Colour::Green => [30, 160, 50],
            Colour::Blue => [30, 70, 220],
            Colour::Orange => [250, 140, 0],
            Colour::Yellow => [235, 215, 20],
            Colour::Purple => [140, 50, 180],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    Circle,
    Square,
    Triangle,
}

impl Shape {
    pub const ALL: [Shape; 3] = [Shape::Circle, Shape::Square, Shape::Triangle];

    pub fn name(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Shape::Circle => "circles",
            Shape::Square => "squares",
            Shape::Triangle => "triangles",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    Small,
    Large,
}

impl Size {
    pub fn name(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Large => "large",
        }
    }
}

/// One object; positions and radius are in pixels of the rendered image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Object {
    pub colour: Colour,
    pub shape: Shape,
    pub size: Size,
    /// Centre, x to the right and y downwards.
    pub x: f32,
    pub y: f32,
    /// Half the side of a square, the radius of a circle, half the base of a triangle.
    pub radius: f32,
}

impl Object {
    /// Radius of a circle that contains the whole shape.
    pub fn bounding_radius(&self) -> f32 {
        match self.shape {
            Shape::Circle => self.radius,
            Shape::Square | Shape::Triangle => self.radius * std::f32::consts::SQRT_2,
        }
    }

    pub fn distance(&self, other: &Object) -> f32 {
        ((self.x - other.x).powi(2) + (self.y - other.y).powi(2)).sqrt()
    }
}

/// A rendered-to-be image: a square canvas and its objects, each colour at most once
/// so that "the red object" always names exactly one thing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scene {
    pub size: u32,
    pub objects: Vec<Object>,
}

/// Objects keep this far (in pixels) from the image's centre lines, so that
/// "left or right" and "top or bottom" are never a coin toss.
pub const CENTRE_MARGIN: f32 = 2.0;
/// Objects' centres differ by at least this (pixels) horizontally, so the
/// left-to-right order in captions is visible in the image.
pub const ORDER_MARGIN: f32 = 2.0;
/// The fewest and most objects in a scene.
pub const MIN_OBJECTS: usize = 3;
pub const MAX_OBJECTS: usize = 6;

impl Scene {
    /// Draws a random scene. `size` is the canvas side in pixels (at least 32).
    pub fn generate(rng: &mut SplitMix64, size: u32) -> Scene {
        let size = size.max(32);
        loop {
            if let Some(scene) = Self::try_generate(rng, size) {
                return scene;
            }
        }
    }

    fn try_generate(rng: &mut SplitMix64, size: u32) -> Option<Scene> {
        let s = size as f32;
        let count = rng.range(MIN_OBJECTS as u32, MAX_OBJECTS as u32) as usize;
        let mut colours = Colour::ALL;
        rng.shuffle(&mut colours);
        let mut objects: Vec<Object> = Vec::with_capacity(count);
        for &colour in &colours[..count] {
            let shape = Shape::ALL[rng.below(3) as usize];
            let size_class = if rng.below(2) == 0 {
                Size::Small
            } else {
                Size::Large
            };
            let radius = match size_class {
                Size::Small => s / 16.0,
                Size::Large => s / 10.0,
            };
            let mut placed = None;
            for _ in 0..200 {
                let candidate = Object {
                    colour,
                    shape,
                    size: size_class,
                    x: 0.0,
                    y: 0.0,
                    radius,
                };
                let reach = candidate.bounding_radius() + 1.0;
                let x = reach + rng.unit() as f32 * (s - 2.0 * reach);
                let y = reach + rng.unit() as f32 * (s - 2.0 * reach);
                let (x, y) = ((x * 4.0).round() / 4.0, (y * 4.0).round() / 4.0);
                if (x - s / 2.0).abs() < CENTRE_MARGIN || (y - s / 2.0).abs() < CENTRE_MARGIN {
                    continue;
                }
                let candidate = Object { x, y, ..candidate };
                let clear = objects.iter().all(|o| {
                    o.distance(&candidate) > o.bounding_radius() + candidate.bounding_radius() + 2.0
                        && (o.x - candidate.x).abs() >= ORDER_MARGIN
                });
                if clear {
                    placed = Some(candidate);
                    break;
                }
            }
            objects.push(placed?);
        }
        Some(Scene { size, objects })
    }

    pub fn by_colour(&self, colour: Colour) -> Option<&Object> {
        self.objects.iter().find(|o| o.colour == colour)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenes_respect_their_invariants() {
        let mut rng = SplitMix64::new(3);
        for _ in 0..300 {
            let scene = Scene::generate(&mut rng, 64);
            let n = scene.objects.len();
            assert!((MIN_OBJECTS..=MAX_OBJECTS).contains(&n));
            for (i, a) in scene.objects.iter().enumerate() {
                let r = a.bounding_radius();
                assert!(a.x - r >= 0.0 && a.x + r <= 64.0 && a.y - r >= 0.0 && a.y + r <= 64.0);
                assert!((a.x - 32.0).abs() >= CENTRE_MARGIN);
                for b in &scene.objects[i + 1..] {
                    assert_ne!(a.colour, b.colour);
                    assert!(a.distance(b) > a.bounding_radius() + b.bounding_radius());
                    assert!((a.x - b.x).abs() >= ORDER_MARGIN);
                }
            }
        }
    }
}

//! Short clips of a scene in which one thing happens: an object moves, appears or
//! disappears, or nothing happens. The captions say what happened; every frame is a
//! [`Scene`], so the truth is computed from the sequence, never guessed.

use serde::{Deserialize, Serialize};

use super::scene::{Object, Scene, CENTRE_MARGIN, ORDER_MARGIN};
use crate::rng::SplitMix64;

/// The fewest and most frames of a clip.
pub const MIN_FRAMES: usize = 4;
pub const MAX_FRAMES: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Left,
    Right,
    Up,
    Down,
}

impl Direction {
    pub const ALL: [Direction; 4] = [Direction::Left, Direction::Right, Direction::Up, Direction::Down];

    pub fn name(self) -> &'static str {
        match self {
            Direction::Left => "left",
            Direction::Right => "right",
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }

    pub fn reversed(self) -> Direction {
        match self {
            Direction::Left => Direction::Right,
            Direction::Right => Direction::Left,
            Direction::Up => Direction::Down,
            Direction::Down => Direction::Up,
        }
    }

    /// Unit step in pixels (y grows downwards).
    fn step(self) -> (f32, f32) {
        match self {
            Direction::Left => (-1.0, 0.0),
            Direction::Right => (1.0, 0.0),
            Direction::Up => (0.0, -1.0),
            Direction::Down => (0.0, 1.0),
        }
    }

    /// Where the move ends up: "to the left", "to the top".
    fn side(self) -> &'static str {
        match self {
            Direction::Left => "left",
            Direction::Right => "right",
            Direction::Up => "top",
            Direction::Down => "bottom",
        }
    }

    /// The relation a move past another object creates: "left of", "above".
    fn relation(self) -> &'static str {
        match self {
            Direction::Left => "left of",
            Direction::Right => "right of",
            Direction::Up => "above",
            Direction::Down => "below",
        }
    }
}

/// What happens in a clip. The object is named as it looks in the frames where it is seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ClipEvent {
    Moves { object: Object, direction: Direction },
    Appears { object: Object, frame: usize },
    Disappears { object: Object, frame: usize },
    Still,
}

impl ClipEvent {
    pub fn kind(&self) -> &'static str {
        match self {
            ClipEvent::Moves { .. } => "moves",
            ClipEvent::Appears { .. } => "appears",
            ClipEvent::Disappears { .. } => "disappears",
            ClipEvent::Still => "still",
        }
    }

    /// Whether playing the clip backwards changes what happened.
    pub fn depends_on_direction(&self) -> bool {
        !matches!(self, ClipEvent::Still)
    }

    /// What happens in the clip of `frames` frames played backwards (a mover keeps
    /// the object as it looked at the start; only its look and direction matter here).
    pub fn opposite(&self, frames: usize) -> ClipEvent {
        let flip = |frame: usize| frames.saturating_sub(frame);
        match self {
            ClipEvent::Moves { object, direction } => ClipEvent::Moves {
                object: object.clone(),
                direction: direction.reversed(),
            },
            ClipEvent::Appears { object, frame } => ClipEvent::Disappears {
                object: object.clone(),
                frame: flip(*frame),
            },
            ClipEvent::Disappears { object, frame } => ClipEvent::Appears {
                object: object.clone(),
                frame: flip(*frame),
            },
            ClipEvent::Still => ClipEvent::Still,
        }
    }

    /// Whether a caption tells this event: it names the object by colour and shape
    /// and says what it did (any of [`clip_captions`]' phrasings).
    pub fn told_by(&self, caption: &str) -> bool {
        let caption = format!(" {} ", caption.split_whitespace().collect::<Vec<_>>().join(" "));
        let says = |phrase: &str| caption.contains(&format!(" {phrase} "));
        let names = |o: &Object| says(&format!("{} {}", o.colour.name(), o.shape.name()));
        match self {
            ClipEvent::Moves { object, direction } => {
                names(object)
                    && (says(&format!("moves {}", direction.name()))
                        || says(&format!("moving {}", direction.name()))
                        || says(&format!("moves to the {}", direction.side()))
                        || says(&format!("moves {}", direction.relation())))
            }
            ClipEvent::Appears { object, .. } => {
                names(object) && (says("appears") || says("comes into view"))
            }
            ClipEvent::Disappears { object, .. } => names(object) && (says("disappears") || says("is gone")),
            ClipEvent::Still => says("nothing happens") || says("nothing moves") || says("stays the same"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clip {
    pub frames: Vec<Scene>,
    pub event: ClipEvent,
}

impl Clip {
    /// Draws a clip of `frames` frames (clamped to [`MIN_FRAMES`]..=[`MAX_FRAMES`]) on a
    /// `size`-pixel canvas: moves, appearances, disappearances and still clips in equal
    /// shares, the moves' directions too.
    pub fn generate(rng: &mut SplitMix64, size: u32, frames: usize) -> Clip {
        let frames = frames.clamp(MIN_FRAMES, MAX_FRAMES);
        let kind = rng.below(4);
        loop {
            let scene = Scene::generate(rng, size);
            let clip = match kind {
                // A crowded scene rarely has a clear path: several tries before another scene.
                0 => (0..40).find_map(|_| moving(rng, &scene, frames)),
                1 => Some(appearing(rng, &scene, frames, true)),
                2 => Some(appearing(rng, &scene, frames, false)),
                _ => Some(Clip {
                    frames: vec![scene; frames],
                    event: ClipEvent::Still,
                }),
            };
            if let Some(clip) = clip {
                return clip;
            }
        }
    }

    /// The same clip played backwards, with what then happens.
    pub fn reversed(&self) -> Clip {
        let frames: Vec<Scene> = self.frames.iter().rev().cloned().collect();
        let event = match self.event.opposite(self.frames.len()) {
            // Played backwards, the mover starts where it ended.
            ClipEvent::Moves { object, direction } => ClipEvent::Moves {
                object: frames
                    .first()
                    .and_then(|f| f.by_colour(object.colour))
                    .unwrap_or(&object)
                    .clone(),
                direction,
            },
            other => other,
        };
        Clip { frames, event }
    }
}

/// One object slides in a straight line over the whole clip, clear of the others in
/// every frame, by a third to a half of the canvas.
fn moving(rng: &mut SplitMix64, scene: &Scene, frames: usize) -> Option<Clip> {
    let s = scene.size as f32;
    let mover = rng.below(scene.objects.len() as u64) as usize;
    let direction = Direction::ALL[rng.below(4) as usize];
    let distance = s * (0.3 + 0.2 * rng.unit() as f32);
    let (dx, dy) = direction.step();
    let start = &scene.objects[mover];
    let reach = start.bounding_radius() + 1.0;
    let mut sequence = Vec::with_capacity(frames);
    for f in 0..frames {
        let t = f as f32 / (frames - 1) as f32;
        let (x, y) = (start.x + dx * distance * t, start.y + dy * distance * t);
        let (x, y) = ((x * 4.0).round() / 4.0, (y * 4.0).round() / 4.0);
        if x < reach || x > s - reach || y < reach || y > s - reach {
            return None;
        }
        let moved = Object {
            x,
            y,
            ..start.clone()
        };
        let clear = scene.objects.iter().enumerate().all(|(i, o)| {
            i == mover || o.distance(&moved) > o.bounding_radius() + moved.bounding_radius() + 2.0
        });
        if !clear {
            return None;
        }
        let mut frame = scene.clone();
        frame.objects[mover] = moved;
        sequence.push(frame);
    }
    // The end keeps the still scene's margins, so "left of" and "on the left" hold there too.
    let end = &sequence[frames - 1].objects[mover];
    let order_kept = scene.objects.iter().enumerate().all(|(i, o)| {
        i == mover || ((o.x - end.x).abs() >= ORDER_MARGIN && (o.y - end.y).abs() >= ORDER_MARGIN)
    });
    if (end.x - s / 2.0).abs() < CENTRE_MARGIN || (end.y - s / 2.0).abs() < CENTRE_MARGIN || !order_kept {
        return None;
    }
    Some(Clip {
        frames: sequence,
        event: ClipEvent::Moves {
            object: start.clone(),
            direction,
        },
    })
}

/// One object is there from a frame in the middle third on (`appears`) or until then.
fn appearing(rng: &mut SplitMix64, scene: &Scene, frames: usize, appears: bool) -> Clip {
    let which = rng.below(scene.objects.len() as u64) as usize;
    let third = frames / 3;
    let frame = third.max(1) + rng.below((frames - 2 * third).max(1) as u64) as usize;
    let mut without = scene.clone();
    let object = without.objects.remove(which);
    let sequence = (0..frames)
        .map(|f| {
            if (f >= frame) == appears {
                scene.clone()
            } else {
                without.clone()
            }
        })
        .collect();
    let event = if appears {
        ClipEvent::Appears { object, frame }
    } else {
        ClipEvent::Disappears { object, frame }
    };
    Clip {
        frames: sequence,
        event,
    }
}

/// Three captions of what happened: plain, with the size and where it ends up, and
/// related to another object (what it moved past, where it appeared or what it left).
pub fn clip_captions(clip: &Clip) -> Vec<String> {
    let named = |o: &Object| format!("{} {}", o.colour.name(), o.shape.name());
    let sized = |o: &Object| format!("{} {} {}", o.size.name(), o.colour.name(), o.shape.name());
    let Some(first) = clip.frames.first() else {
        return Vec::new();
    };
    let half = first.size as f32 / 2.0;
    let horizontal = |o: &Object| if o.x < half { "left" } else { "right" };
    match &clip.event {
        ClipEvent::Moves { object, direction } => {
            let last = clip.frames.last().unwrap_or(first);
            let end = last.by_colour(object.colour).unwrap_or(object);
            let passed = passed_by(object, end, *direction, first);
            let third = match passed {
                Some(other) => format!(
                    "the {} moves {} the {}",
                    named(object),
                    direction.relation(),
                    named(other)
                ),
                None => format!("the {} is moving {}", named(object), direction.name()),
            };
            vec![
                format!("the {} moves {}", named(object), direction.name()),
                format!("a {} moves to the {}", sized(object), direction.side()),
                third,
            ]
        }
        ClipEvent::Appears { object, .. } => vec![
            format!("a {} appears", named(object)),
            format!("a {} appears on the {}", sized(object), horizontal(object)),
            format!("a new {} comes into view", named(object)),
        ],
        ClipEvent::Disappears { object, .. } => vec![
            format!("the {} disappears", named(object)),
            format!("the {} on the {} disappears", sized(object), horizontal(object)),
            format!("the {} is gone", named(object)),
        ],
        ClipEvent::Still => vec![
            "nothing happens".to_string(),
            "nothing moves".to_string(),
            "the scene stays the same".to_string(),
        ],
    }
}

/// The object the mover went past along its direction, nearest to its end position
/// (it was on one side of it at the start and is on the other at the end).
fn passed_by<'a>(start: &Object, end: &Object, direction: Direction, scene: &'a Scene) -> Option<&'a Object> {
    let along = |o: &Object| match direction {
        Direction::Left => -o.x,
        Direction::Right => o.x,
        Direction::Up => -o.y,
        Direction::Down => o.y,
    };
    scene
        .objects
        .iter()
        .filter(|o| o.colour != start.colour && along(o) > along(start) && along(o) < along(end))
        .min_by(|a, b| (along(end) - along(a)).total_cmp(&(along(end) - along(b))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_keep_their_invariants_and_say_what_happened() {
        let mut rng = SplitMix64::new(5);
        let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
        let mut moved_objects = Vec::new();
        for _ in 0..400 {
            let clip = Clip::generate(&mut rng, 64, 8);
            assert_eq!(clip.frames.len(), 8);
            *kinds.entry(clip.event.kind()).or_default() += 1;
            let captions = clip_captions(&clip);
            assert_eq!(captions.len(), 3);
            let (first, last) = (&clip.frames[0], &clip.frames[7]);
            match &clip.event {
                ClipEvent::Moves { object, direction } => {
                    let (a, b) = (
                        first.by_colour(object.colour).unwrap(),
                        last.by_colour(object.colour).unwrap(),
                    );
                    let (dx, dy) = (b.x - a.x, b.y - a.y);
                    let moved = match direction {
                        Direction::Left => -dx,
                        Direction::Right => dx,
                        Direction::Up => -dy,
                        Direction::Down => dy,
                    };
                    assert!(moved >= 64.0 * 0.3 - 0.5, "{moved}");
                    moved_objects.push(first.objects.len());
                    assert!(captions[0].ends_with(direction.name()), "{captions:?}");
                    for frame in &clip.frames {
                        for (i, p) in frame.objects.iter().enumerate() {
                            for q in &frame.objects[i + 1..] {
                                assert!(p.distance(q) > p.bounding_radius() + q.bounding_radius());
                            }
                        }
                    }
                }
                ClipEvent::Appears { object, frame } => {
                    assert!(first.by_colour(object.colour).is_none());
                    assert!(last.by_colour(object.colour).is_some());
                    assert!(clip.frames[*frame].by_colour(object.colour).is_some());
                    assert!(clip.frames[frame - 1].by_colour(object.colour).is_none());
                }
                ClipEvent::Disappears { object, frame } => {
                    assert!(first.by_colour(object.colour).is_some());
                    assert!(last.by_colour(object.colour).is_none());
                    assert!(clip.frames[*frame].by_colour(object.colour).is_none());
                }
                ClipEvent::Still => assert!(clip.frames.iter().all(|f| f == first)),
            }
        }
        assert_eq!(kinds.len(), 4, "{kinds:?}");
        assert!(kinds.values().all(|&n| n > 60), "{kinds:?}");
        let crowded = moved_objects.iter().filter(|&&n| n >= 5).count();
        assert!(
            crowded * 5 >= moved_objects.len(),
            "moves happen in crowded scenes too: {moved_objects:?}"
        );
    }

    #[test]
    fn a_reversed_clip_tells_the_opposite_event() {
        let mut rng = SplitMix64::new(9);
        for _ in 0..100 {
            let clip = Clip::generate(&mut rng, 64, 8);
            let back = clip.reversed();
            assert_eq!(back.reversed(), clip);
            let (forward, backward) = (clip_captions(&clip), clip_captions(&back));
            assert_eq!(
                forward[0] == backward[0],
                !clip.event.depends_on_direction(),
                "{forward:?} {backward:?}"
            );
            for caption in &forward {
                assert!(clip.event.told_by(caption), "{caption:?} tells {:?}", clip.event);
                assert_eq!(
                    back.event.told_by(caption),
                    !clip.event.depends_on_direction(),
                    "{caption:?}"
                );
            }
        }
    }

    #[test]
    fn a_move_past_another_object_names_it() {
        use crate::synth::{Colour, Shape, Size};
        let object = |colour, x| Object {
            colour,
            shape: Shape::Circle,
            size: Size::Small,
            x,
            y: 20.0,
            radius: 4.0,
        };
        let still = Scene {
            size: 64,
            objects: vec![object(Colour::Red, 50.0), object(Colour::Blue, 30.0)],
        };
        let mut end = still.clone();
        end.objects[0].x = 10.0;
        let clip = Clip {
            frames: vec![still, end],
            event: ClipEvent::Moves {
                object: object(Colour::Red, 50.0),
                direction: Direction::Left,
            },
        };
        assert_eq!(
            clip_captions(&clip),
            [
                "the red circle moves left",
                "a small red circle moves to the left",
                "the red circle moves left of the blue circle",
            ]
        );
    }
}

//! Template captions: the same scene always gets the same three sentences.

use super::scene::{Object, Scene, Shape};

const NUMBERS: [&str; 7] = ["no", "one", "two", "three", "four", "five", "six"];

/// Three captions: objects left to right, a chain of "left of" relations, and counts.
pub fn captions(scene: &Scene) -> Vec<String> {
    let mut by_x: Vec<&Object> = scene.objects.iter().collect();
    by_x.sort_by(|a, b| a.x.total_cmp(&b.x));
    let described: Vec<String> = by_x
        .iter()
        .map(|o| format!("a {} {} {}", o.size.name(), o.colour.name(), o.shape.name()))
        .collect();
    let chained: Vec<String> = by_x
        .iter()
        .map(|o| {
            format!(
                "{} {} {}",
                article(o.colour.name()),
                o.colour.name(),
                o.shape.name()
            )
        })
        .collect();
    let counts: Vec<String> = Shape::ALL
        .iter()
        .filter_map(|&shape| {
            let n = scene.objects.iter().filter(|o| o.shape == shape).count();
            (n > 0).then(|| {
                let noun = if n == 1 { shape.name() } else { shape.plural() };
                format!("{} {noun}", NUMBERS[n.min(6)])
            })
        })
        .collect();
    vec![
        format!("from left to right : {}", join_and(&described)),
        chained.join(" left of "),
        format!("there {} {}", verb_for(&counts), join_and(&counts)),
    ]
}

/// "there is one circle and two squares": the verb agrees with the first count, as in
/// ordinary English, so the decoder never learns "there are one".
fn verb_for(counts: &[String]) -> &'static str {
    match counts.first() {
        Some(first) if first.starts_with("one ") => "is",
        _ => "are",
    }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// "a , b and c"
fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(" , ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::scene::{Colour, Size};

    fn obj(colour: Colour, shape: Shape, x: f32) -> Object {
        Object {
            colour,
            shape,
            size: Size::Small,
            x,
            y: 10.0,
            radius: 4.0,
        }
    }

    #[test]
    fn captions_follow_the_templates() {
        let scene = Scene {
            size: 64,
            objects: vec![
                obj(Colour::Blue, Shape::Square, 40.0),
                obj(Colour::Orange, Shape::Circle, 10.0),
                obj(Colour::Green, Shape::Square, 55.0),
            ],
        };
        assert_eq!(
            captions(&scene),
            [
                "from left to right : a small orange circle , a small blue square and a small green square",
                "an orange circle left of a blue square left of a green square",
                "there is one circle and two squares",
            ]
        );
    }

    /// Every template over many scenes: articles fit the next word, number words agree
    /// with their nouns and "there is/are" agrees with the first count.
    #[test]
    fn every_template_caption_is_grammatical() {
        let singular: Vec<&str> = Shape::ALL.iter().map(|s| s.name()).collect();
        let plural: Vec<&str> = Shape::ALL.iter().map(|s| s.plural()).collect();
        let mut rng = crate::rng::SplitMix64::new(7);
        let mut seen_is = false;
        let mut seen_are = false;
        for _ in 0..2_000 {
            let scene = Scene::generate(&mut rng, 64);
            for caption in captions(&scene) {
                let words: Vec<&str> = caption.split(' ').collect();
                assert!(words.iter().all(|w| !w.is_empty()), "empty word in {caption:?}");
                for pair in words.windows(2) {
                    let (word, next) = (pair[0], pair[1]);
                    match word {
                        "a" => assert!(!next.starts_with(['a', 'e', 'i', 'o', 'u']), "{caption:?}"),
                        "an" => assert!(next.starts_with(['a', 'e', 'i', 'o', 'u']), "{caption:?}"),
                        "one" => assert!(singular.contains(&next), "{caption:?}"),
                        "two" | "three" | "four" | "five" | "six" => {
                            assert!(plural.contains(&next), "{caption:?}")
                        }
                        "is" => assert_eq!(next, "one", "{caption:?}"),
                        "are" => assert_ne!(next, "one", "{caption:?}"),
                        _ => {}
                    }
                    assert_ne!(word, "no", "a zero count in {caption:?}");
                }
                seen_is |= caption.starts_with("there is ");
                seen_are |= caption.starts_with("there are ");
            }
        }
        assert!(seen_is && seen_are, "both verb forms occur");
    }
}

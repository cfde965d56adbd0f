//! `edgevlm data synth`: reproducible bytes, and answers that are true of the
//! rendered pixels (objects are found in the image, not read from the scene file).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn synth(out: &Path, n: usize, seed: u64) {
    let status = Command::new(env!("CARGO_BIN_EXE_edgevlm"))
        .args([
            "data",
            "synth",
            "--n",
            &n.to_string(),
            "--seed",
            &seed.to_string(),
            "--out",
        ])
        .arg(out)
        .status()
        .unwrap();
    assert!(status.success());
}

fn tree_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for sub in ["", "images"] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap().flatten() {
            if entry.path().is_file() {
                files.insert(
                    format!("{sub}/{}", entry.file_name().to_string_lossy()),
                    std::fs::read(entry.path()).unwrap(),
                );
            }
        }
    }
    files
}

#[test]
fn same_seed_same_bytes_other_seed_differs() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
    synth(&a, 40, 7);
    synth(&b, 40, 7);
    synth(&c, 40, 8);
    let (ta, tb, tc) = (tree_bytes(&a), tree_bytes(&b), tree_bytes(&c));
    assert_eq!(ta.len(), 40 + 5);
    assert!(ta == tb, "same seed must give identical bytes");
    assert_ne!(ta["/questions.jsonl"], tc["/questions.jsonl"]);
    assert_ne!(ta["images/000000.png"], tc["images/000000.png"]);
}

/// An object as seen in the pixels.
#[derive(Debug)]
struct Seen {
    colour: &'static str,
    shape: &'static str,
    large: bool,
    x: f32,
    y: f32,
}

const PALETTE: [(&str, [u8; 3]); 6] = [
    ("red", [220, 30, 30]),
    ("green", [30, 160, 50]),
    ("blue", [30, 70, 220]),
    ("orange", [250, 140, 0]),
    ("yellow", [235, 215, 20]),
    ("purple", [140, 50, 180]),
];

fn detect(path: &Path) -> (u32, Vec<Seen>) {
    let img = image::open(path).unwrap().into_rgb8();
    let size = img.width();
    let mut seen = Vec::new();
    for (name, rgb) in PALETTE {
        let pixels: Vec<(u32, u32)> = img
            .enumerate_pixels()
            .filter(|(_, _, p)| p.0 == rgb)
            .map(|(x, y, _)| (x, y))
            .collect();
        if pixels.is_empty() {
            continue;
        }
        let (x0, x1) = (
            pixels.iter().map(|p| p.0).min().unwrap(),
            pixels.iter().map(|p| p.0).max().unwrap(),
        );
        let (y0, y1) = (
            pixels.iter().map(|p| p.1).min().unwrap(),
            pixels.iter().map(|p| p.1).max().unwrap(),
        );
        let (w, h) = ((x1 - x0 + 1) as f32, (y1 - y0 + 1) as f32);
        let row_width = |y: u32| pixels.iter().filter(|p| p.1 == y).count() as f32;
        let (top, bottom) = (row_width(y0), row_width(y1));
        // A square's rows are all full; a triangle grows from apex to base; a circle is symmetric.
        let shape = if top == w && bottom == w {
            "square"
        } else if bottom >= 0.8 * w && top <= 0.5 * w {
            "triangle"
        } else {
            "circle"
        };
        let _ = h;
        seen.push(Seen {
            colour: name,
            shape,
            large: w > size as f32 * 0.1625,
            x: (x0 + x1 + 1) as f32 / 2.0,
            y: (y0 + y1 + 1) as f32 / 2.0,
        });
    }
    (size, seen)
}

fn dist(a: &Seen, b: &Seen) -> f32 {
    ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt()
}

/// Answers a question from detected objects, parsing the question text itself.
fn answer(q: &str, size: u32, objs: &[Seen]) -> String {
    let half = size as f32 / 2.0;
    let by_colour = |c: &str| {
        objs.iter()
            .find(|o| o.colour == c)
            .unwrap_or_else(|| panic!("no {c} object in image for {q:?}"))
    };
    let colour_in = |q: &str| {
        PALETTE
            .iter()
            .map(|p| p.0)
            .find(|c| q.contains(&format!("the {c} object")))
            .unwrap()
    };
    if q == "how many objects are there?" {
        return objs.len().to_string();
    }
    for shape in ["circle", "square", "triangle"] {
        if q == format!("how many {shape}s are there?") {
            return objs.iter().filter(|o| o.shape == shape).count().to_string();
        }
    }
    for (word, key) in [
        ("leftmost", 0),
        ("rightmost", 1),
        ("topmost", 2),
        ("bottommost", 3),
    ] {
        if q == format!("what colour is the {word} object?") {
            let score = |o: &Seen| [o.x, -o.x, o.y, -o.y][key];
            return objs
                .iter()
                .min_by(|a, b| score(a).total_cmp(&score(b)))
                .unwrap()
                .colour
                .to_string();
        }
    }
    let anchor = by_colour(colour_in(q));
    let others = || objs.iter().filter(|o| o.colour != anchor.colour);
    if q.contains("closest to") || q.contains("farthest from") {
        let near = q.contains("closest");
        let pick = others()
            .min_by(|a, b| {
                let (da, db) = (dist(a, anchor), dist(b, anchor));
                if near {
                    da.total_cmp(&db)
                } else {
                    db.total_cmp(&da)
                }
            })
            .unwrap();
        return if q.starts_with("what shape") {
            pick.shape
        } else {
            pick.colour
        }
        .to_string();
    }
    if q.starts_with("how many other objects have the same shape") {
        return others().filter(|o| o.shape == anchor.shape).count().to_string();
    }
    if q.starts_with("what shape") {
        return anchor.shape.into();
    }
    if q.contains("small or large") {
        return if anchor.large { "large" } else { "small" }.into();
    }
    if q.contains("left or on the right") {
        return if anchor.x < half { "left" } else { "right" }.into();
    }
    if q.contains("top or at the bottom") {
        return if anchor.y < half { "top" } else { "bottom" }.into();
    }
    panic!("unknown question template {q:?}");
}

#[test]
fn answers_and_captions_are_true_of_the_pixels() {
    let tmp = tempfile::tempdir().unwrap();
    synth(tmp.path(), 150, 11);
    let text = std::fs::read_to_string(tmp.path().join("questions.jsonl")).unwrap();
    let mut detected = BTreeMap::new();
    let mut kinds = BTreeMap::new();
    for line in text.lines() {
        let q: Value = serde_json::from_str(line).unwrap();
        let image = q["image"].as_str().unwrap().to_string();
        let (size, objs) = detected
            .entry(image.clone())
            .or_insert_with(|| detect(&tmp.path().join(&image)));
        let want = answer(q["question"].as_str().unwrap(), *size, objs);
        assert_eq!(q["answer"].as_str().unwrap(), want, "{image}: {}", q["question"]);
        *kinds.entry(q["type"].as_str().unwrap().to_string()).or_insert(0) += 1;
    }
    assert_eq!(detected.len(), 150);
    assert!(
        kinds["relational"] > 1000 && kinds["non-relational"] > 1000,
        "{kinds:?}"
    );

    // The left-to-right caption lists the detected objects in x order.
    let captions: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("captions.json")).unwrap()).unwrap();
    for c in captions
        .iter()
        .filter(|c| c["text"].as_str().unwrap().starts_with("from left to right"))
    {
        let (_, objs) = &detected[c["image"].as_str().unwrap()];
        let mut ordered: Vec<&Seen> = objs.iter().collect();
        ordered.sort_by(|a, b| a.x.total_cmp(&b.x));
        let colours: Vec<&str> = c["text"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .filter(|w| PALETTE.iter().any(|p| p.0 == *w))
            .collect();
        assert_eq!(colours, ordered.iter().map(|o| o.colour).collect::<Vec<_>>());
    }
}

/// Judges a statement from detected objects, parsing the statement text itself.
fn truth(statement: &str, size: u32, objs: &[Seen]) -> bool {
    let half = size as f32 / 2.0;
    let w: Vec<&str> = statement.split_whitespace().collect();
    let by_colour = |c: &str| {
        objs.iter()
            .find(|o| o.colour == c)
            .unwrap_or_else(|| panic!("no {c} object in image for {statement:?}"))
    };
    let singular = |s: &str| s.trim_end_matches('s').to_string();
    let count = |shape: &str| objs.iter().filter(|o| o.shape == shape).count();
    let number = |word: &str| {
        ["no", "one", "two", "three"]
            .iter()
            .position(|n| *n == word)
            .unwrap()
    };
    match w.as_slice() {
        ["there", "is", "a", c, s] => objs.iter().any(|o| o.colour == *c && o.shape == *s),
        ["the", c, "object", "is", "a", s] => by_colour(c).shape == *s,
        ["the", c, "object", "is", "on", "the", side] => (by_colour(c).x < half) == (*side == "left"),
        ["the", c, "object", "is", "at", "the", level] => (by_colour(c).y < half) == (*level == "top"),
        ["the", a, "object", "is", rel @ ("left" | "right"), "of", "the", b, "object"] => {
            (by_colour(a).x < by_colour(b).x) == (*rel == "left")
        }
        ["the", a, "object", "is", rel @ ("above" | "below"), "the", b, "object"] => {
            (by_colour(a).y < by_colour(b).y) == (*rel == "above")
        }
        ["the", "object", which @ ("closest" | "farthest"), _, "the", c, _, "is", rest @ ..] => {
            let anchor = by_colour(c);
            let others = objs.iter().filter(|o| o.colour != anchor.colour);
            let pick = if *which == "closest" {
                others.min_by(|a, b| dist(a, anchor).total_cmp(&dist(b, anchor)))
            } else {
                others.max_by(|a, b| dist(a, anchor).total_cmp(&dist(b, anchor)))
            }
            .unwrap();
            match rest {
                ["a", s] => pick.shape == *s,
                [c] => pick.colour == *c,
                _ => panic!("unknown statement {statement:?}"),
            }
        }
        ["there", "are", "no", pl] => count(&singular(pl)) == 0,
        ["there", "is", "exactly", "one", s] => count(s) == 1,
        ["there", "are", "exactly", n, pl] => count(&singular(pl)) == number(n),
        ["there", "are", "more", a, "than", b] => count(&singular(a)) > count(&singular(b)),
        ["every", a, "is", rel @ ("left" | "right"), "of", "some", b] => {
            objs.iter().filter(|x| x.shape == *a).all(|x| {
                objs.iter()
                    .filter(|y| y.shape == *b)
                    .any(|y| (x.x < y.x) == (*rel == "left"))
            })
        }
        ["every", s, "is", size] => objs
            .iter()
            .filter(|o| o.shape == *s)
            .all(|o| o.large == (*size == "large")),
        _ => panic!("unknown statement {statement:?}"),
    }
}

#[test]
fn statements_are_true_or_false_of_the_pixels_and_balanced() {
    let tmp = tempfile::tempdir().unwrap();
    synth(tmp.path(), 150, 12);
    let text = std::fs::read_to_string(tmp.path().join("statements.jsonl")).unwrap();
    let mut detected = BTreeMap::new();
    let mut by_family: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for line in text.lines() {
        let s: Value = serde_json::from_str(line).unwrap();
        let image = s["image"].as_str().unwrap().to_string();
        let (size, objs) = detected
            .entry(image.clone())
            .or_insert_with(|| detect(&tmp.path().join(&image)));
        let stated = s["answer"].as_str().unwrap() == "true";
        let seen = truth(s["statement"].as_str().unwrap(), *size, objs);
        assert_eq!(stated, seen, "{image}: {}", s["statement"]);
        let counts = by_family
            .entry(format!(
                "{}/{}",
                s["type"].as_str().unwrap(),
                s["family"].as_str().unwrap()
            ))
            .or_default();
        if stated {
            counts.0 += 1;
        } else {
            counts.1 += 1;
        }
    }
    assert_eq!(detected.len(), 150);
    assert_eq!(by_family.len(), 11, "{by_family:?}");
    for (family, (t, f)) in &by_family {
        assert_eq!(t, f, "{family} is not balanced");
        assert!(*t >= 30, "{family}: {t} true statements in 150 scenes");
    }
}

/// Each dialog round answered from the detected objects: "it" is the object the
/// round `distance` back introduced (named by colour in its question, or answered
/// by its colour), and the question is asked of that object by name.
#[test]
fn dialog_answers_are_true_of_the_pixels_and_refer_back() {
    let tmp = tempfile::tempdir().unwrap();
    synth(tmp.path(), 100, 13);
    let text = std::fs::read_to_string(tmp.path().join("dialogs.jsonl")).unwrap();
    let (mut dialogs, mut referring) = (0, 0);
    for line in text.lines() {
        let d: Value = serde_json::from_str(line).unwrap();
        let image = d["image"].as_str().unwrap();
        let (size, objs) = detect(&tmp.path().join(image));
        let rounds = d["rounds"].as_array().unwrap();
        assert_eq!(rounds.len(), 10);
        for (k, r) in rounds.iter().enumerate() {
            let question = r["question"].as_str().unwrap();
            let asked = match r["distance"].as_u64() {
                None => {
                    assert!(!question.contains(" it"), "{question} stands alone but says 'it'");
                    question.to_string()
                }
                Some(d) => {
                    referring += 1;
                    let source = &rounds[k - d as usize];
                    let colour = if source["family"] == "intro-named" {
                        PALETTE
                            .iter()
                            .map(|p| p.0)
                            .find(|c| source["question"].as_str().unwrap().contains(c))
                            .unwrap()
                    } else {
                        source["answer"].as_str().unwrap()
                    };
                    question
                        .replace("is it ", &format!("is the {colour} object "))
                        .replace(" it?", &format!(" the {colour} object?"))
                }
            };
            assert_eq!(
                r["answer"].as_str().unwrap(),
                answer(&asked, size, &objs),
                "{image} round {}: {question} (asked as {asked})",
                k + 1
            );
        }
        dialogs += 1;
    }
    assert_eq!(dialogs, 100);
    assert!(referring > 300, "{referring} rounds refer back");
}

/// Every clip's first caption is what the pixels show happening between its first
/// and last frames, and an object that appears (disappears) stays (stays away).
#[test]
fn clip_captions_tell_what_happens_in_the_pixels() {
    let tmp = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_edgevlm"))
        .args([
            "data",
            "synth",
            "--n",
            "2",
            "--clips",
            "80",
            "--clip-frames",
            "8",
            "--seed",
            "4",
            "--out",
        ])
        .arg(tmp.path())
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(tmp.path().join("clips.jsonl")).unwrap();
    let mut kinds = BTreeMap::<&str, usize>::new();
    for line in text.lines() {
        let clip: Value = serde_json::from_str(line).unwrap();
        let frames: Vec<Vec<Seen>> = clip["frames"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| detect(&tmp.path().join(f.as_str().unwrap())).1)
            .collect();
        assert_eq!(frames.len(), 8);
        let (first, last) = (&frames[0], &frames[7]);
        fn find<'a>(objs: &'a [Seen], colour: &str) -> Option<&'a Seen> {
            objs.iter().find(|o| o.colour == colour)
        }
        let mut told = Vec::new();
        for o in last.iter().filter(|o| find(first, o.colour).is_none()) {
            let seen: Vec<bool> = frames.iter().map(|f| find(f, o.colour).is_some()).collect();
            assert!(
                seen.windows(2).all(|w| w[0] <= w[1]),
                "{} flickers: {seen:?}",
                o.colour
            );
            told.push(("appears", format!("a {} {} appears", o.colour, o.shape)));
        }
        for o in first.iter().filter(|o| find(last, o.colour).is_none()) {
            let seen: Vec<bool> = frames.iter().map(|f| find(f, o.colour).is_some()).collect();
            assert!(
                seen.windows(2).all(|w| w[0] >= w[1]),
                "{} flickers: {seen:?}",
                o.colour
            );
            told.push(("disappears", format!("the {} {} disappears", o.colour, o.shape)));
        }
        for a in first {
            let Some(b) = find(last, a.colour) else { continue };
            let (dx, dy) = (b.x - a.x, b.y - a.y);
            if dx.abs().max(dy.abs()) < 4.0 {
                continue;
            }
            let direction = match (dx.abs() > dy.abs(), dx > 0.0, dy > 0.0) {
                (true, true, _) => "right",
                (true, false, _) => "left",
                (false, _, true) => "down",
                (false, _, false) => "up",
            };
            told.push(("moves", format!("the {} {} moves {direction}", a.colour, a.shape)));
        }
        if told.is_empty() {
            told.push(("still", "nothing happens".to_string()));
        }
        assert_eq!(told.len(), 1, "one thing happens in {}: {told:?}", clip["clip"]);
        let (kind, caption) = told.remove(0);
        assert_eq!(clip["captions"][0].as_str().unwrap(), caption, "{}", clip["clip"]);
        *kinds.entry(kind).or_default() += 1;
    }
    assert_eq!(kinds.len(), 4, "every kind of event occurs: {kinds:?}");
}

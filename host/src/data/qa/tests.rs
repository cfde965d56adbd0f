use std::path::PathBuf;

use super::parse::{read, words};
use super::*;
use crate::data::testutil::{write_jpeg, write_text};

fn asked(caption: &str) -> Vec<(String, String, &'static str)> {
    read(caption)
        .questions
        .into_iter()
        .map(|q| (q.question, q.answer, q.family.name()))
        .collect()
}

fn q(question: &str, answer: &str, family: &'static str) -> (String, String, &'static str) {
    (question.into(), answer.into(), family)
}

#[test]
fn a_caption_gives_the_questions_it_answers() {
    assert_eq!(
        asked("A black dog is running through the grass ."),
        vec![
            q("what is running through the grass?", "dog", "object"),
            q("where is the dog running?", "grass", "location"),
            q("what colour is the dog?", "black", "colour"),
        ]
    );
    assert_eq!(
        asked("Two dogs play in the snow ."),
        vec![
            q("how many dogs play in the snow?", "two", "number"),
            q("how many dogs are there?", "two", "number"),
        ]
    );
    assert_eq!(
        asked("3 children are playing on the beach"),
        vec![
            q("how many children are playing on the beach?", "three", "number"),
            q("where are the children playing?", "beach", "location"),
            q("how many children are there?", "three", "number"),
        ]
    );
    // The verb after the subject's own phrase: no "what" (it would lose the shirt),
    // but the shirt's colour.
    assert_eq!(
        asked("A man in a red shirt is climbing a rock ."),
        vec![q("what colour is the shirt?", "red", "colour")]
    );
    // Black and white is neither; "and" joins two subjects, so neither is asked of.
    assert_eq!(
        asked("A black and white dog jumps over a log ."),
        vec![q("what jumps over a log?", "dog", "object")]
    );
    assert!(asked("A dog and a cat sleep on the couch").is_empty());
    // No verb the lexicon knows after the subject: nothing is guessed.
    assert!(asked("A dog beside a fence").is_empty());
    // Where the verb happens, not where its object is; colours of people are not asked.
    assert_eq!(
        asked("A white man is taking a picture in the park"),
        vec![q("what is taking a picture in the park?", "man", "object")]
    );
    assert_eq!(
        words("A girl's red-hat, grey"),
        vec!["a", "girl", "s", "red-hat", "grey"]
    );
}

#[test]
fn facts_feed_the_yes_no_questions() {
    let f = read("Two brown dogs run across a green field with a ball");
    assert_eq!(
        f.objects.iter().map(|o| o.singular).collect::<Vec<_>>(),
        vec!["dog", "ball"]
    );
    assert_eq!(
        f.counts.iter().map(|c| (c.0.singular, c.1)).collect::<Vec<_>>(),
        vec![("dog", "two")]
    );
    assert_eq!(
        f.colours
            .iter()
            .map(|c| (c.noun.as_str(), c.colour))
            .collect::<Vec<_>>(),
        vec![("dogs", "brown"), ("field", "green")]
    );
}

fn photo(name: &str, captions: &[&str]) -> CaptionRecord {
    CaptionRecord {
        image: PathBuf::from(name),
        captions: captions.iter().map(|c| c.to_string()).collect(),
    }
}

fn photos() -> Vec<CaptionRecord> {
    vec![
        photo(
            "a.jpg",
            &[
                "A black dog is running through the grass .",
                "A black dog runs on the lawn with a ball .",
                "A dog is running through the grass .",
            ],
        ),
        photo(
            "b.jpg",
            &[
                "Two children are playing on the beach .",
                "Three children are playing on the beach .",
                "Kids play in the sand near a red boat .",
            ],
        ),
        photo(
            "c.jpg",
            &[
                "A man in a blue shirt is riding a bike down the street .",
                "A man rides a bike .",
                "A cyclist is riding down the street .",
            ],
        ),
        photo(
            "d.jpg",
            &[
                "Two brown horses stand in a field .",
                "Two horses are standing in the field .",
            ],
        ),
    ]
}

/// Every answer recomputed from the photo's own captions: what an open question
/// answers is a word they say; a "yes" states what they say, a "no" what none says.
#[test]
fn every_answer_is_what_the_captions_say() {
    let records = photos();
    let (out, report) = questions(&records, 1.0, 3);
    assert!(report.questions > 15, "{report:?}");
    for (image, qs) in &out {
        let record = records.iter().find(|r| &r.image == image).unwrap();
        let said: Vec<Vec<String>> = record.captions.iter().map(|c| words(c)).collect();
        let says = |w: &str| said.iter().any(|c| c.iter().any(|x| x == w));
        for q in qs {
            let asked_of: Vec<String> = words(&q.question);
            match q.family {
                Family::Object | Family::Colour | Family::Location => {
                    assert!(says(&q.answer), "{image:?}: {q:?}")
                }
                Family::Number => {
                    let n = ["two", "three"]
                        .iter()
                        .position(|w| *w == q.answer)
                        .map(|i| (i + 2).to_string());
                    assert!(says(&q.answer) || n.is_some_and(|n| says(&n)), "{q:?}")
                }
                Family::Exists => {
                    // "is there a dog in the picture?": the noun is the fourth word.
                    let noun = &asked_of[3];
                    let group = lexicon::object(noun).unwrap().0.group;
                    let named = said
                        .iter()
                        .flatten()
                        .any(|w| lexicon::object(w).is_some_and(|o| o.0.group == group));
                    assert_eq!(named, q.answer == "yes", "{image:?}: {q:?}");
                }
                Family::IsColour => {
                    let colour = asked_of.last().unwrap();
                    assert_eq!(says(colour), q.answer == "yes", "{image:?}: {q:?}");
                }
                Family::IsCount => {
                    let count = &asked_of[2];
                    assert_eq!(says(count), q.answer == "yes", "{image:?}: {q:?}");
                }
            }
        }
    }
    // b.jpg's captions disagree on the count: neither count is asked.
    let b = &out.iter().find(|(i, _)| i == &PathBuf::from("b.jpg")).unwrap().1;
    assert!(
        b.iter()
            .all(|q| q.family != Family::Number && q.family != Family::IsCount),
        "{b:?}"
    );
    assert!(report.conflicting >= 1);
}

#[test]
fn no_answer_dominates_its_kind() {
    let mut records = Vec::new();
    for i in 0..60 {
        let animal = ["dog", "dog", "dog", "cat", "horse", "bird"][i % 6];
        records.push(photo(
            &format!("{i}.jpg"),
            &[&format!("A {animal} is running through the grass .")],
        ));
    }
    let (_, report) = questions(&records, 0.4, 0);
    let objects = &report.top_answers["object"];
    let total: usize = objects.iter().map(|a| a.1).sum();
    assert_eq!(objects[0].0, "dog");
    assert!(objects[0].1 as f64 <= 0.4 * total as f64, "{objects:?}");
    assert_eq!(report.per_family["object"], total);
    assert!(report.thinned > 0);
}

#[test]
fn the_number_asked_does_not_give_the_answer_away() {
    // Most photos show two dogs, a few three or four: "are there two …?" would
    // be "yes" and any other number "no" without looking at the photo.
    let mut records = Vec::new();
    for i in 0..200 {
        let count = ["Two", "Two", "Two", "Two", "Three", "Four"][i % 6];
        records.push(photo(
            &format!("{i}.jpg"),
            &[&format!("{count} black dogs play in the snow .")],
        ));
    }
    let (photos, _) = questions(&records, 0.4, 0);
    let mut by_word: BTreeMap<(Family, String), (usize, usize)> = BTreeMap::new();
    for q in photos.iter().flat_map(|(_, qs)| qs) {
        if let Some(probe) = q.probe {
            let e = by_word.entry((q.family, probe.to_string())).or_default();
            if q.answer == "yes" {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
    }
    let asked_counts = by_word.keys().filter(|k| k.0 == Family::IsCount).count();
    assert!(asked_counts >= 2, "{by_word:?}");
    for (probe, (yes, no)) in &by_word {
        assert_eq!(yes, no, "{probe:?}: {yes} yes, {no} no");
    }
}

#[test]
fn each_split_keeps_its_own_photos() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("flickr");
    let mut csv = String::from("image,caption\n");
    for (i, r) in photos().iter().enumerate() {
        let name = format!("{i}.jpg");
        write_jpeg(&data.join("Images").join(&name), 8, 8);
        for c in &r.captions {
            csv.push_str(&format!("{name},{c}\n"));
        }
    }
    write_text(&data.join("captions.txt"), &csv);
    write_text(&data.join("Flickr_8k.trainImages.txt"), "0.jpg\n1.jpg\n2.jpg\n");
    write_text(&data.join("Flickr_8k.devImages.txt"), "3.jpg\n");
    let out = dir.path().join("qa");
    let reports = write(Format::Flickr8k, &data, &out, &QaOptions::default()).unwrap();
    assert_eq!(reports.len(), 2);
    let dev = std::fs::read_to_string(out.join("dev.jsonl")).unwrap();
    assert!(!dev.is_empty());
    for line in dev.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let image = v["image"].as_str().unwrap();
        assert!(image.ends_with("3.jpg"), "{line}");
        // Read from anywhere, not only from beside the caption set.
        assert!(std::path::Path::new(image).is_absolute(), "{line}");
        assert!(["yes/no", "number", "other"].contains(&v["type"].as_str().unwrap()));
    }
    let train = std::fs::read_to_string(out.join("train.jsonl")).unwrap();
    assert!(!train.contains("3.jpg"));
    // The files read back as a question set.
    let set = crate::data::vqa::load_jsonl(&out.join("train.jsonl"), LoadOptions::default()).unwrap();
    assert_eq!(set.records.len(), train.lines().count());
    assert!(set.records.iter().all(|r| r.family.is_some()));

    let err = write(Format::Jsonl, &data, &out, &QaOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("caption set"), "{err}");
    let bad = QaOptions {
        max_answer_share: 0.0,
        ..QaOptions::default()
    };
    assert!(write(Format::Flickr8k, &data, &out, &bad)
        .unwrap_err()
        .to_string()
        .contains("max-answer-share"));
}

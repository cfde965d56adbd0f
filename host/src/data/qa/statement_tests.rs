use std::collections::BTreeSet;
use std::path::PathBuf;

use super::parse::words;
use super::statements::{statements, Edit};
use crate::data::CaptionRecord;

fn photo(name: &str, captions: &[&str]) -> CaptionRecord {
    CaptionRecord {
        image: PathBuf::from(name),
        captions: captions.iter().map(|c| c.to_string()).collect(),
    }
}

fn photos() -> Vec<CaptionRecord> {
    vec![
        photo(
            "dog.jpg",
            &[
                "A black dog is running through the grass .",
                "Two black dogs run on a lawn .",
                "A dog is running in a field .",
                "The black dog runs .",
                "Two dogs are running outside .",
            ],
        ),
        photo(
            "beach.jpg",
            &[
                "A girl in a red dress is jumping on the beach .",
                "A child jumps in the sand .",
                "A little girl wearing red is jumping .",
                "A girl jumping near the water .",
                "A kid plays at the beach .",
            ],
        ),
        photo(
            "bike.jpg",
            &[
                "Three men are riding bikes on a dirt road .",
                "Three cyclists ride down a road .",
                "Men riding bicycles .",
                "Three people on blue bikes .",
                "A group of men biking .",
            ],
        ),
    ]
}

#[test]
fn true_statements_are_captions_and_false_ones_change_one_word_to_an_unsaid_one() {
    let records = photos();
    let made = statements(&records, 3);
    for (record, statements) in records.iter().zip(&made) {
        let captions: Vec<Vec<String>> = record.captions.iter().map(|c| words(c)).collect();
        let said: BTreeSet<&str> = captions.iter().flatten().map(String::as_str).collect();
        let (truths, falsehoods): (Vec<_>, Vec<_>) = statements.iter().partition(|s| s.truth);
        assert_eq!(truths.len(), falsehoods.len(), "{}", record.image.display());
        assert!(!falsehoods.is_empty(), "{}", record.image.display());
        for s in &truths {
            assert_eq!(s.edit, Edit::Caption);
            assert!(captions.iter().any(|c| c.join(" ") == s.statement), "{s:?}");
        }
        let mut kinds = BTreeSet::new();
        for s in &falsehoods {
            kinds.insert(s.edit);
            let w: Vec<&str> = s.statement.split(' ').collect();
            if s.edit == Edit::OtherPhoto {
                assert!(!captions.iter().any(|c| c.join(" ") == s.statement), "{s:?}");
                continue;
            }
            // One word (and its article) differs from some caption, and that word is
            // one none of the photo's captions says.
            let source = captions
                .iter()
                .find(|c| {
                    c.len() == w.len()
                        && c.iter()
                            .zip(&w)
                            .filter(|(a, b)| a != b && !["a", "an"].contains(&a.as_str()))
                            .count()
                            == 1
                })
                .unwrap_or_else(|| panic!("{s:?} is no one-word edit of a caption"));
            let (_, new) = source
                .iter()
                .zip(&w)
                .find(|(a, b)| a != b && !["a", "an"].contains(&a.as_str()))
                .unwrap();
            assert!(!said.contains(new), "{s:?}: {new} is said of the photo");
        }
        assert!(kinds.len() >= 2, "{}: only {kinds:?}", record.image.display());
    }
}

#[test]
fn same_seed_same_statements() {
    let records = photos();
    assert_eq!(statements(&records, 5), statements(&records, 5));
    assert_ne!(statements(&records, 5), statements(&records, 6));
}

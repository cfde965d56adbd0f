//! `edgevlm data statements-from-captions`: true and false statements about real
//! photos, for `finetune reasoning` and `eval reasoning`. A photo's captions are its
//! true statements; its false ones are counterfactual edits of them (a colour, a
//! count, an object or an action changed to one none of the photo's captions uses)
//! and captions of other photos that name none of its objects. Each photo gets as
//! many false statements as true ones, the false ones spread over the edit types,
//! and every statement stays in its photo's split.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use edgevlm_shared::rng::SplitMix64;
use serde::Serialize;

use super::lexicon::{self, Object};
use super::parse;
use super::{draw, load, pick, splits};
use crate::data::{CaptionRecord, DataError, Format, Result};

/// How a statement was made: the true ones are captions, the false ones edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Edit {
    Caption,
    Colour,
    Number,
    Object,
    Action,
    OtherPhoto,
}

impl Edit {
    pub const FALSE: [Edit; 5] = [
        Edit::Colour,
        Edit::Number,
        Edit::Object,
        Edit::Action,
        Edit::OtherPhoto,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Edit::Caption => "caption",
            Edit::Colour => "colour",
            Edit::Number => "number",
            Edit::Object => "object",
            Edit::Action => "action",
            Edit::OtherPhoto => "other-photo",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PhotoStatement {
    pub statement: String,
    pub truth: bool,
    pub edit: Edit,
}

/// Actions as captions write them, each with a group: an action never replaces one
/// of its own group ("lying" for "laying"), nor any the photo's captions use.
const ACTIONS: &[(&str, &str)] = &[
    ("running", "run"),
    ("racing", "run"),
    ("jogging", "run"),
    ("jumping", "jump"),
    ("leaping", "jump"),
    ("swimming", "swim"),
    ("sitting", "rest"),
    ("laying", "rest"),
    ("lying", "rest"),
    ("sleeping", "rest"),
    ("resting", "rest"),
    ("standing", "stand"),
    ("posing", "stand"),
    ("waiting", "stand"),
    ("walking", "walk"),
    ("hiking", "walk"),
    ("climbing", "climb"),
    ("riding", "ride"),
    ("biking", "ride"),
    ("playing", "play"),
    ("eating", "eat"),
    ("drinking", "eat"),
    ("dancing", "dance"),
    ("skiing", "ski"),
    ("surfing", "surf"),
    ("throwing", "throw"),
    ("catching", "catch"),
    ("reading", "read"),
    ("singing", "sing"),
    ("fishing", "fish"),
    ("digging", "dig"),
    ("wrestling", "fight"),
    ("fighting", "fight"),
    ("skateboarding", "skate"),
];

fn action_group(word: &str) -> Option<&'static str> {
    ACTIONS.iter().find(|a| a.0 == word).map(|a| a.1)
}

/// What a photo's captions say, as the edits need it.
struct Said {
    words: BTreeSet<String>,
    colours: BTreeSet<&'static str>,
    counts: BTreeSet<&'static str>,
    object_groups: BTreeSet<&'static str>,
    action_groups: BTreeSet<&'static str>,
}

impl Said {
    fn of(captions: &[String]) -> Said {
        let words: BTreeSet<String> = captions.iter().flat_map(|c| parse::words(c)).collect();
        Said {
            colours: words.iter().filter_map(|w| lexicon::colour(w)).collect(),
            counts: words.iter().filter_map(|w| lexicon::count(w)).collect(),
            object_groups: words
                .iter()
                .filter_map(|w| lexicon::object(w))
                .map(|(o, _)| o.group)
                .collect(),
            action_groups: words.iter().filter_map(|w| action_group(w)).collect(),
            words,
        }
    }
}

/// The replacement words, each as often as the split's captions use it: drawn
/// uniformly, a rare word ("tan", "nine") would mark a statement false by itself.
#[derive(Default)]
struct Pools {
    colours: Vec<&'static str>,
    counts: Vec<&'static str>,
    objects: Vec<&'static Object>,
    actions: Vec<&'static str>,
}

impl Pools {
    fn of(records: &[CaptionRecord]) -> Pools {
        let mut pools = Pools::default();
        for w in records
            .iter()
            .flat_map(|r| &r.captions)
            .flat_map(|c| parse::words(c))
        {
            pools.colours.extend(lexicon::colour(&w));
            pools.counts.extend(lexicon::count(&w));
            pools.objects.extend(
                lexicon::object(&w)
                    .map(|(o, _)| o)
                    .filter(|o| lexicon::can_be_absent(o)),
            );
            pools
                .actions
                .extend(ACTIONS.iter().find(|a| a.0 == w).map(|a| a.0));
        }
        pools
    }
}

/// One edit of `edit`'s type of the caption, if the caption has a word to edit and
/// a replacement none of the photo's captions uses is found.
fn edit(caption: &str, edit: Edit, said: &Said, pools: &Pools, rng: &mut SplitMix64) -> Option<String> {
    let mut words = parse::words(caption);
    let editable: Vec<usize> = (0..words.len())
        .filter(|&i| {
            let w = words[i].as_str();
            match edit {
                Edit::Colour => lexicon::colour(w).is_some(),
                Edit::Number => lexicon::count(w).is_some(),
                Edit::Object => lexicon::object(w).is_some(),
                Edit::Action => action_group(w).is_some(),
                Edit::Caption | Edit::OtherPhoto => false,
            }
        })
        .collect();
    let at = *pick(&editable, rng)?;
    let replacement = match edit {
        Edit::Colour => draw(&pools.colours, rng, |c| !said.colours.contains(c))?,
        Edit::Number => draw(&pools.counts, rng, |c| !said.counts.contains(c))?,
        Edit::Object => {
            let plural = lexicon::object(&words[at]).is_some_and(|(_, plural)| plural);
            let o = draw(&pools.objects, rng, |o| !said.object_groups.contains(o.group))?;
            if plural {
                o.plural
            } else {
                o.singular
            }
        }
        Edit::Action => draw(&pools.actions, rng, |a| {
            action_group(a).is_some_and(|g| !said.action_groups.contains(g))
        })?,
        Edit::Caption | Edit::OtherPhoto => return None,
    };
    if said.words.contains(replacement) {
        return None;
    }
    words[at] = replacement.to_string();
    // "a orange ball" would give the edit away.
    if let Some(article) = at.checked_sub(1).and_then(|i| words.get_mut(i)) {
        if article == "a" || article == "an" {
            let vowel = replacement.starts_with(['a', 'e', 'i', 'o', 'u']);
            *article = if vowel { "an" } else { "a" }.to_string();
        }
    }
    Some(words.join(" "))
}

/// Every photo's statements, photos in the input's order.
pub fn statements(records: &[CaptionRecord], seed: u64) -> Vec<Vec<PhotoStatement>> {
    let said: Vec<Said> = records.iter().map(|r| Said::of(&r.captions)).collect();
    let pools = Pools::of(records);
    let mut rng = SplitMix64::fork(seed, 2);
    let mut out = Vec::with_capacity(records.len());
    for (photo, record) in records.iter().enumerate() {
        let said = &said[photo];
        // Per edit type, the edits this photo allows, so the types can take turns.
        let mut by_type: Vec<Vec<String>> = Vec::new();
        for kind in Edit::FALSE {
            let mut edits: Vec<String> = if kind == Edit::OtherPhoto {
                other_photo(records, photo, said, &mut rng).into_iter().collect()
            } else {
                record
                    .captions
                    .iter()
                    .filter_map(|c| edit(c, kind, said, &pools, &mut rng))
                    .collect()
            };
            edits.sort();
            edits.dedup();
            rng.shuffle(&mut edits);
            by_type.push(edits);
        }
        let mut falses = Vec::new();
        let mut order: Vec<usize> = (0..Edit::FALSE.len()).collect();
        rng.shuffle(&mut order);
        while falses.len() < record.captions.len() && by_type.iter().any(|e| !e.is_empty()) {
            for &t in &order {
                if falses.len() < record.captions.len() {
                    if let Some(s) = by_type[t].pop() {
                        falses.push(PhotoStatement {
                            statement: s,
                            truth: false,
                            edit: Edit::FALSE[t],
                        });
                    }
                }
            }
        }
        let mut photo_statements: Vec<PhotoStatement> = record
            .captions
            .iter()
            .take(falses.len())
            .map(|c| PhotoStatement {
                statement: parse::words(c).join(" "),
                truth: true,
                edit: Edit::Caption,
            })
            .collect();
        photo_statements.extend(falses);
        out.push(photo_statements);
    }
    out
}

/// A caption of another photo that names none of this photo's objects (so it is
/// not true of this one by chance), tried a few times.
fn other_photo(records: &[CaptionRecord], photo: usize, said: &Said, rng: &mut SplitMix64) -> Option<String> {
    if records.len() < 2 {
        return None;
    }
    (0..10).find_map(|_| {
        let other = rng.below(records.len() as u64) as usize;
        let caption = pick(&records[other].captions, rng)?;
        let words = parse::words(caption);
        let shares_an_object = words
            .iter()
            .filter_map(|w| lexicon::object(w))
            .any(|(o, _)| said.object_groups.contains(o.group));
        (other != photo && !shares_an_object && words.iter().any(|w| lexicon::object(w).is_some()))
            .then(|| words.join(" "))
    })
}

#[derive(Serialize)]
struct Line<'a> {
    image: &'a str,
    statement: &'a str,
    answer: &'static str,
    /// The edit that made it (`caption` for the true ones).
    #[serde(rename = "type")]
    edit: &'static str,
}

/// What one split gave.
#[derive(Debug, Default, Serialize)]
pub struct StatementReport {
    pub file: std::path::PathBuf,
    pub images: usize,
    pub statements: usize,
    pub per_type: std::collections::BTreeMap<&'static str, usize>,
}

/// Writes `<split>.jsonl` per split of `data` into `out` and reports each.
pub fn write(format: Format, data: &Path, out: &Path, seed: u64) -> Result<Vec<StatementReport>> {
    std::fs::create_dir_all(out).map_err(|e| DataError::io(out, e))?;
    let data = &data.canonicalize().map_err(|e| DataError::io(data, e))?;
    let mut reports = Vec::new();
    for split in splits(format, data)? {
        let records = load(format, data, split.as_deref())?;
        let split_seed = seed
            ^ split
                .as_deref()
                .map_or(0, |s| s.bytes().fold(0u64, |h, b| h * 31 + b as u64));
        let photos = statements(&records, split_seed);
        let file = out.join(format!("{}.jsonl", split.as_deref().unwrap_or("statements")));
        let mut report = StatementReport {
            file: file.clone(),
            ..Default::default()
        };
        let mut w =
            std::io::BufWriter::new(std::fs::File::create(&file).map_err(|e| DataError::io(&file, e))?);
        for (record, statements) in records.iter().zip(&photos) {
            let image = record.image.to_string_lossy();
            report.images += !statements.is_empty() as usize;
            for s in statements {
                let line = Line {
                    image: &image,
                    statement: &s.statement,
                    answer: if s.truth { "true" } else { "false" },
                    edit: s.edit.name(),
                };
                let json =
                    serde_json::to_string(&line).map_err(|e| DataError::layout(&file, e.to_string()))?;
                writeln!(w, "{json}").map_err(|e| DataError::io(&file, e))?;
                report.statements += 1;
                *report.per_type.entry(s.edit.name()).or_default() += 1;
            }
        }
        w.flush().map_err(|e| DataError::io(&file, e))?;
        reports.push(report);
    }
    Ok(reports)
}

//! One caption read the way COCO-QA's generator reads one (Ren et al. 2015): find
//! the subject, its verb and what follows, and turn them into questions whose
//! one-word answer the caption states: what (the subject), how many (its count),
//! what colour (a colour before a noun), where (the place after the verb). The
//! facts it finds (objects, colours, counts) feed the yes/no questions.

use super::lexicon::{self, Object};

/// The kind of question; `edgevlm eval vqa` reports accuracy per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Object,
    Number,
    Colour,
    Location,
    /// "is there a dog in the picture?"
    Exists,
    /// "is the dog black?"
    IsColour,
    /// "are there two dogs?"
    IsCount,
}

impl Family {
    pub const ALL: [Family; 7] = [
        Family::Object,
        Family::Number,
        Family::Colour,
        Family::Location,
        Family::Exists,
        Family::IsColour,
        Family::IsCount,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Object => "object",
            Family::Number => "number",
            Family::Colour => "colour",
            Family::Location => "location",
            Family::Exists => "exists",
            Family::IsColour => "is-colour",
            Family::IsCount => "is-count",
        }
    }

    /// The answer type VQA v2 reports by: yes/no, number or other.
    pub fn answer_type(self) -> &'static str {
        match self {
            Family::Exists | Family::IsColour | Family::IsCount => "yes/no",
            Family::Number => "number",
            Family::Object | Family::Colour | Family::Location => "other",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub question: String,
    pub answer: String,
    pub family: Family,
    /// The word a yes/no question tests ("two" in "are there two dogs …?"): the
    /// answers are balanced per probe, so the word alone does not give them away.
    pub probe: Option<&'static str>,
}

/// A colour said of a noun: "a black dog", "two red cars".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColourFact {
    pub noun: String,
    pub plural: bool,
    pub colour: &'static str,
}

/// What one caption says.
#[derive(Debug, Default)]
pub struct Facts {
    pub questions: Vec<Question>,
    /// Every object the caption names.
    pub objects: Vec<&'static Object>,
    pub colours: Vec<ColourFact>,
    /// Every colour word it uses, of whatever.
    pub colour_words: Vec<&'static str>,
    /// "two dogs": the object and its count.
    pub counts: Vec<(&'static Object, &'static str)>,
}

/// Verbs a subject does, in their base form (the plural's form): a word is this
/// subject's verb only if it is one of them, so a noun after the subject is never
/// taken for one.
const VERBS: &[&str] = &[
    "play",
    "run",
    "sit",
    "stand",
    "walk",
    "jump",
    "ride",
    "race",
    "swim",
    "pose",
    "look",
    "wait",
    "watch",
    "climb",
    "hold",
    "splash",
    "dance",
    "fight",
    "wrestle",
    "chase",
    "sing",
    "work",
    "eat",
    "lay",
    "lie",
    "carry",
    "cross",
    "hike",
    "relax",
    "rest",
    "smile",
    "talk",
    "perform",
    "kiss",
    "hug",
    "go",
    "wade",
    "skate",
    "ski",
    "surf",
    "stare",
    "compete",
    "march",
    "gather",
    "paddle",
    "drive",
    "sail",
    "catch",
    "throw",
    "kick",
    "bite",
    "pull",
    "push",
    "dive",
    "fly",
    "roll",
    "lean",
    "wear",
    "leap",
    "dig",
    "sleep",
    "drink",
    "bike",
    "skateboard",
    "snowboard",
    "shake",
    "crawl",
    "hang",
    "slide",
    "swing",
    "fetch",
    "retrieve",
];

/// The caption's words, lowercased, punctuation dropped.
pub fn words(caption: &str) -> Vec<String> {
    caption
        .split(|c: char| !(c.is_alphanumeric() || c == '-'))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The base form of a singular verb ("runs", "watches", "carries"), if it is one.
fn singular_verb(word: &str) -> bool {
    let candidates = [
        word.strip_suffix("ies").map(|s| format!("{s}y")),
        word.strip_suffix("es").map(str::to_string),
        word.strip_suffix('s').map(str::to_string),
    ];
    candidates
        .into_iter()
        .flatten()
        .any(|base| VERBS.contains(&base.as_str()))
}

struct Subject {
    /// The noun as written (singular or plural).
    noun: String,
    plural: bool,
    count: Option<&'static str>,
    end: usize,
}

fn subject(w: &[String]) -> Option<Subject> {
    let mut i = 0;
    let mut count = None;
    match w.first()?.as_str() {
        "a" | "an" | "the" => i = 1,
        first => {
            if let Some(c) = lexicon::count(first) {
                count = Some(c);
                i = 1;
            }
        }
    }
    let mut modifiers = 0;
    // "black and white" counts as one modifier.
    let colours_joined = |i: usize| {
        w[i] == "and"
            && i > 0
            && lexicon::colour(&w[i - 1]).is_some()
            && w.get(i + 1).is_some_and(|n| lexicon::colour(n).is_some())
    };
    while i < w.len() && (lexicon::is_modifier(&w[i]) || colours_joined(i)) && modifiers < 4 {
        i += 1;
        modifiers += 1;
    }
    let (_, plural) = lexicon::object(w.get(i)?)?;
    // "a dog and a cat" has two subjects: no question is about one of them.
    if w.get(i + 1).is_some_and(|n| n == "and") {
        return None;
    }
    Some(Subject {
        noun: w[i].clone(),
        plural: plural || count.is_some(),
        count,
        end: i + 1,
    })
}

/// Where the subject's verb phrase starts and whether it is "is/are …ing".
fn verb(w: &[String], s: &Subject) -> Option<(usize, bool)> {
    let progressive = |k: usize| {
        let be = if s.plural { "are" } else { "is" };
        w.get(k).is_some_and(|x| x == be) && w.get(k + 1).is_some_and(|x| x.len() > 4 && x.ends_with("ing"))
    };
    if progressive(s.end) {
        return Some((s.end, true));
    }
    let next = w.get(s.end)?;
    let bare = if s.plural {
        VERBS.contains(&next.as_str())
    } else {
        singular_verb(next)
    };
    if bare {
        return Some((s.end, false));
    }
    // "a man in a red shirt is climbing": the verb after a short modifier.
    if matches!(next.as_str(), "in" | "with" | "wearing") {
        return (s.end + 1..(s.end + 8).min(w.len()))
            .find(|&k| progressive(k))
            .map(|k| (k, true));
    }
    None
}

fn article(noun: &str) -> &'static str {
    if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// Reads one caption.
pub fn read(caption: &str) -> Facts {
    let w = words(caption);
    let mut facts = Facts::default();
    let mut questions = Vec::new();
    let mut ask = |question: String, answer: &str, family: Family| {
        questions.push(Question {
            question,
            answer: answer.to_string(),
            family,
            probe: None,
        })
    };
    if let Some(s) = subject(&w) {
        if let Some((start, progressive)) = verb(&w, &s) {
            let predicate = w[start..].join(" ");
            let be = if s.plural { "are" } else { "is" };
            // "what is running through the grass?" / "what runs through the grass?"
            if start == s.end && !s.plural && w.len() > start + 1 {
                ask(format!("what {predicate}?"), &s.noun, Family::Object);
            }
            if let Some(count) = s.count {
                ask(format!("how many {} {predicate}?", s.noun), count, Family::Number);
            }
            if progressive {
                let doing = &w[start + 1];
                let rest = &w[start + 2..];
                if let Some(place) = place_after(rest) {
                    ask(
                        format!("where {be} the {} {doing}?", s.noun),
                        place,
                        Family::Location,
                    );
                }
            }
        }
    }
    for (j, word) in w.iter().enumerate() {
        if let Some((object, _)) = lexicon::object(word) {
            facts.objects.push(object);
        }
        let Some(colour) = lexicon::colour(word) else {
            continue;
        };
        facts.colour_words.push(colour);
        // "black and white dog" is neither black nor white.
        let joined = |k: Option<usize>| k.and_then(|k| w.get(k)).is_some_and(|x| x == "and");
        if joined(j.checked_sub(1)) || joined(Some(j + 1)) {
            continue;
        }
        let Some(noun) = w.get(j + 1) else { continue };
        let plural = match lexicon::object(noun) {
            // "a black man": not a colour a photo is asked about.
            Some((o, _)) if o.group == "person" => continue,
            Some((_, plural)) => plural,
            None if lexicon::is_place(noun) => false,
            None => continue,
        };
        facts.colours.push(ColourFact {
            noun: noun.clone(),
            plural,
            colour,
        });
        let be = if plural { "are" } else { "is" };
        ask(format!("what colour {be} the {noun}?"), colour, Family::Colour);
    }
    for (j, word) in w.iter().enumerate() {
        let Some(count) = lexicon::count(word) else {
            continue;
        };
        let mut k = j + 1;
        while k < w.len() && lexicon::is_modifier(&w[k]) && k < j + 4 {
            k += 1;
        }
        if let Some((object, true)) = w.get(k).and_then(|n| lexicon::object(n)) {
            facts.counts.push((object, count));
            ask(
                format!("how many {} are there?", object.plural),
                count,
                Family::Number,
            );
        }
    }
    facts.questions = questions;
    facts
}

/// The place the verb goes to: "running through the tall grass" → grass.
fn place_after(rest: &[String]) -> Option<&'static str> {
    // Only right after the verb: "taking a picture in the dirt" does not say
    // where the taking is.
    if !lexicon::is_location_preposition(rest.first()?) {
        return None;
    }
    let mut k = 1;
    if rest
        .get(k)
        .is_some_and(|x| matches!(x.as_str(), "a" | "an" | "the"))
    {
        k += 1;
    }
    while rest.get(k).is_some_and(|x| lexicon::is_modifier(x)) {
        k += 1;
    }
    let noun = rest.get(k)?;
    lexicon::PLACES.iter().copied().find(|p| p == noun)
}

/// "is there a dog in the picture?" / "are there two dogs?" / "is the dog black?"
pub fn exists_question(object: &Object) -> String {
    format!(
        "is there {} {} in the picture?",
        article(object.singular),
        object.singular
    )
}

pub fn count_question(object: &Object, count: &str) -> String {
    format!("are there {count} {} in the picture?", object.plural)
}

pub fn colour_question(fact: &ColourFact, colour: &str) -> String {
    let be = if fact.plural { "are" } else { "is" };
    format!("{be} the {} {colour}?", fact.noun)
}

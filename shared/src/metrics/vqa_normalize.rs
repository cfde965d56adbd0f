//! Answer normalisation of the official VQA evaluation: `processPunctuation` and
//! `processDigitArticle` of VQAEval in GT-Vision-Lab/VQA,
//! PythonEvaluationTools/vqaEvaluation/vqaEval.py (the Python 3 version, commit c4e6a0e4).
//!
//! Reproduced, quirks included:
//! - each of `; / [ ] " { } ( ) = + \ _ - > < @ ` , ? !` is deleted when it touches a space anywhere
//!   in the answer, or when the answer contains digit-comma-digit (`1,000`); otherwise it becomes a
//!   space (`t-shirt` → `t shirt`). Apostrophes and colons are kept;
//! - a period not followed by a digit is deleted (`3.5` stays), at most 32 of them (upstream passes
//!   `re.UNICODE`, which is 32, as the `count` argument of `re.sub`);
//! - lower-casing, number words `none zero one … ten` → digits, articles `a an the` dropped, and
//!   apostrophe-less contractions restored (`dont` → `don't`, `hes` → `he's`).
//!
//! "Digit" means an ASCII digit here, where Python's `\d` also takes other Unicode decimal digits.
//! Upstream's contraction keys with capitals (`Im`, `Ive`, `Id've`, `I'dve`) can never match
//! lower-cased words and are left out.

/// Characters `processPunctuation` deletes or turns into spaces.
const PUNCTUATION: [char; 21] = [
    ';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-', '>', '<', '@', '`', ',', '?', '!',
];

/// Upstream applies its period pattern through `re.sub(..., count=re.UNICODE)`: 32 replacements.
const MAX_PERIODS_REMOVED: usize = 32;

const NUMBER_WORDS: [(&str, &str); 12] = [
    ("none", "0"),
    ("zero", "0"),
    ("one", "1"),
    ("two", "2"),
    ("three", "3"),
    ("four", "4"),
    ("five", "5"),
    ("six", "6"),
    ("seven", "7"),
    ("eight", "8"),
    ("nine", "9"),
    ("ten", "10"),
];

const ARTICLES: [&str; 3] = ["a", "an", "the"];

/// Upstream's contraction table, keys that can match a lower-cased word only.
const CONTRACTIONS: &[(&str, &str)] = &[
    ("aint", "ain't"),
    ("arent", "aren't"),
    ("cant", "can't"),
    ("couldve", "could've"),
    ("couldnt", "couldn't"),
    ("couldn'tve", "couldn't've"),
    ("couldnt've", "couldn't've"),
    ("didnt", "didn't"),
    ("doesnt", "doesn't"),
    ("dont", "don't"),
    ("hadnt", "hadn't"),
    ("hadnt've", "hadn't've"),
    ("hadn'tve", "hadn't've"),
    ("hasnt", "hasn't"),
    ("havent", "haven't"),
    ("hed", "he'd"),
    ("hed've", "he'd've"),
    ("he'dve", "he'd've"),
    ("hes", "he's"),
    ("howd", "how'd"),
    ("howll", "how'll"),
    ("hows", "how's"),
    ("isnt", "isn't"),
    ("itd", "it'd"),
    ("itd've", "it'd've"),
    ("it'dve", "it'd've"),
    ("itll", "it'll"),
    ("let's", "let's"),
    ("maam", "ma'am"),
    ("mightnt", "mightn't"),
    ("mightnt've", "mightn't've"),
    ("mightn'tve", "mightn't've"),
    ("mightve", "might've"),
    ("mustnt", "mustn't"),
    ("mustve", "must've"),
    ("neednt", "needn't"),
    ("notve", "not've"),
    ("oclock", "o'clock"),
    ("oughtnt", "oughtn't"),
    ("ow's'at", "'ow's'at"),
    ("'ows'at", "'ow's'at"),
    ("'ow'sat", "'ow's'at"),
    ("shant", "shan't"),
    ("shed've", "she'd've"),
    ("she'dve", "she'd've"),
    ("she's", "she's"),
    ("shouldve", "should've"),
    ("shouldnt", "shouldn't"),
    ("shouldnt've", "shouldn't've"),
    ("shouldn'tve", "shouldn't've"),
    // Reversed in upstream's table too.
    ("somebody'd", "somebodyd"),
    ("somebodyd've", "somebody'd've"),
    ("somebody'dve", "somebody'd've"),
    ("somebodyll", "somebody'll"),
    ("somebodys", "somebody's"),
    ("someoned", "someone'd"),
    ("someoned've", "someone'd've"),
    ("someone'dve", "someone'd've"),
    ("someonell", "someone'll"),
    ("someones", "someone's"),
    ("somethingd", "something'd"),
    ("somethingd've", "something'd've"),
    ("something'dve", "something'd've"),
    ("somethingll", "something'll"),
    ("thats", "that's"),
    ("thered", "there'd"),
    ("thered've", "there'd've"),
    ("there'dve", "there'd've"),
    ("therere", "there're"),
    ("theres", "there's"),
    ("theyd", "they'd"),
    ("theyd've", "they'd've"),
    ("they'dve", "they'd've"),
    ("theyll", "they'll"),
    ("theyre", "they're"),
    ("theyve", "they've"),
    ("twas", "'twas"),
    ("wasnt", "wasn't"),
    ("wed've", "we'd've"),
    ("we'dve", "we'd've"),
    ("weve", "we've"),
    ("werent", "weren't"),
    ("whatll", "what'll"),
    ("whatre", "what're"),
    ("whats", "what's"),
    ("whatve", "what've"),
    ("whens", "when's"),
    ("whered", "where'd"),
    ("wheres", "where's"),
    ("whereve", "where've"),
    ("whod", "who'd"),
    ("whod've", "who'd've"),
    ("who'dve", "who'd've"),
    ("wholl", "who'll"),
    ("whos", "who's"),
    ("whove", "who've"),
    ("whyll", "why'll"),
    ("whyre", "why're"),
    ("whys", "why's"),
    ("wont", "won't"),
    ("wouldve", "would've"),
    ("wouldnt", "wouldn't"),
    ("wouldnt've", "wouldn't've"),
    ("wouldn'tve", "wouldn't've"),
    ("yall", "y'all"),
    ("yall'll", "y'all'll"),
    ("y'allll", "y'all'll"),
    ("yall'd've", "y'all'd've"),
    ("y'alld've", "y'all'd've"),
    ("y'all'dve", "y'all'd've"),
    ("youd", "you'd"),
    ("youd've", "you'd've"),
    ("you'dve", "you'd've"),
    ("youll", "you'll"),
    ("youre", "you're"),
    ("youve", "you've"),
];

/// Normalises a predicted answer as the official evaluation does before comparing it with the
/// human answers: newlines and tabs to spaces, trimmed, then punctuation, then numbers, articles
/// and contractions.
pub fn normalize_answer(answer: &str) -> String {
    let answer = answer.replace(['\n', '\t'], " ");
    normalize_digits_and_articles(&normalize_punctuation(answer.trim()))
}

/// Upstream's `processPunctuation`, the only step it applies to human answers (and only to those
/// of questions whose humans disagree).
pub fn normalize_punctuation(text: &str) -> String {
    let has_digit_comma_digit = text
        .as_bytes()
        .windows(3)
        .any(|w| w[0].is_ascii_digit() && w[1] == b',' && w[2].is_ascii_digit());
    let mut out = text.to_string();
    for mark in PUNCTUATION {
        // Upstream tests the original answer, but replaces in the running result.
        let touches_space = text.contains(&format!("{mark} ")) || text.contains(&format!(" {mark}"));
        let replacement = if touches_space || has_digit_comma_digit {
            ""
        } else {
            " "
        };
        out = out.replace(mark, replacement);
    }
    remove_periods(&out)
}

/// Deletes periods not followed by a digit, at most [`MAX_PERIODS_REMOVED`].
fn remove_periods(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut removed = 0;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let followed_by_digit = chars.peek().is_some_and(char::is_ascii_digit);
        if c == '.' && !followed_by_digit && removed < MAX_PERIODS_REMOVED {
            removed += 1;
        } else {
            out.push(c);
        }
    }
    out
}

/// Upstream's `processDigitArticle`.
fn normalize_digits_and_articles(text: &str) -> String {
    let lower = text.to_lowercase();
    let words = lower
        .split_whitespace()
        .map(|word| lookup(&NUMBER_WORDS, word).unwrap_or(word))
        .filter(|word| !ARTICLES.contains(word))
        .map(|word| lookup(CONTRACTIONS, word).unwrap_or(word));
    words.collect::<Vec<_>>().join(" ")
}

fn lookup(table: &[(&'static str, &'static str)], key: &str) -> Option<&'static str> {
    table.iter().find(|(from, _)| *from == key).map(|&(_, to)| to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Fixture {
        normalization: Vec<Case>,
    }

    #[derive(Deserialize)]
    struct Case {
        input: String,
        normalized: String,
    }

    #[test]
    fn matches_the_official_normalisation() {
        let fixture: Fixture =
            serde_json::from_str(include_str!("fixtures/vqa.json")).expect("vqa.json parses");
        for case in fixture.normalization {
            assert_eq!(normalize_answer(&case.input), case.normalized, "{:?}", case.input);
        }
    }
}

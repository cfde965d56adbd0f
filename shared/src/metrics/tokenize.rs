//! Caption tokenization as the COCO caption evaluation toolkit does it before BLEU and CIDEr.
//!
//! Reference: pycocoevalcap/tokenizer/ptbtokenizer.py runs the Stanford PTBTokenizer of
//! `stanford-corenlp-3.4.1.jar` as `PTBTokenizer -preserveLines -lowerCase` and then drops the tokens
//! listed in its `PUNCTUATIONS`. [`ptb_tokenize`] approximates the Java tokenizer for ordinary
//! English captions; [`tokenize_caption`] adds the punctuation filter. The fixture `tokenizer.json`
//! holds the jar's own output for the sentences the tests check.
//!
//! What is reproduced (all checked against the jar):
//! - lower-casing happens *after* tokenization, so bracket tokens come out as `-lrb-`, `-rrb-`,
//!   `-lsb-`, `-rsb-`, `-lcb-`, `-rcb-`; the filter lists the upper-case forms, so these survive it,
//!   exactly as in pycocoevalcap;
//! - punctuation is split off words: `, ; : ! ? $ % # ( ) " '` …; runs of `!`/`?` stay one token
//!   (`!!`, `?!`, kept by the filter); three or more dots are one `...`, two dots are two `.`;
//!   a single `-` or a run `--`, en and em dashes become `--`;
//! - inside a word stay: `.` and `/` before a letter or digit (`3.5`, `u.s`, `and/or`), a single `-`
//!   between letters or digits (`t-shirt`, `2-3`), `,` and `:` between digits (`1,000`, `10:30`),
//!   `&` between capitals (`AT&T`), an apostrophe before a letter (`o'clock`);
//! - a word keeps its final period when it is an acronym of single letters (`a.`, `u.s.`, `a.m.`),
//!   a listed abbreviation (`mr.`, `st.`, `etc.` …), or `no.` before a number;
//! - clitics are split off the end: `n't`, `'s`, `'m`, `'d`, `'re`, `'ve`, `'ll` (`ca n't`,
//!   `should n't 've`); `cannot gonna gotta wanna gimme lemme` split into two tokens (`can not`);
//! - double quotes become ``` `` ``` when a letter follows and `''` otherwise; single quotes `` ` ``
//!   or `'` the same way; `'80s` and `'n'` stay whole; curly quotes, `…` and dashes are mapped first.
//!
//! Known differences from the jar (none matters for ordinary captions): URLs, e-mail addresses and
//! smileys are split; `y'all` and `'tis` are not split (the jar gives `y' all`, `'t is`); an
//! apostrophe between letters always joins (`rock'n'roll` stays one token); the jar's other
//! abbreviation lists (states, companies …) are not copied beyond common titles, months and days;
//! characters the jar deletes as untokenizable are kept as one-character tokens.

/// The tokens pycocoevalcap removes after PTB tokenization (`PUNCTUATIONS` in ptbtokenizer.py).
pub const PTB_PUNCTUATIONS: [&str; 17] = [
    "''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";",
];

/// Words whose final period belongs to them (lower case).
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "sr", "jr", "prof", "gen", "sen", "rep", "gov", "lt", "col", "capt", "sgt",
    "maj", "cpl", "pvt", "adm", "rev", "pres", "hon", "esq", "bros", "st", "ste", "mt", "ft", "ave", "rd",
    "blvd", "sq", "dept", "univ", "assn", "inc", "co", "corp", "ltd", "jan", "feb", "mar", "apr", "jun",
    "jul", "aug", "sep", "sept", "oct", "nov", "dec", "mon", "tue", "tues", "wed", "thu", "thurs", "fri",
    "est", "tel", "ext", "al", "etc", "vs",
];

/// Abbreviations that keep their period only before a number (`no. 5`, but `there is no .`).
const NUMBER_ABBREVIATIONS: &[&str] = &["no", "nos"];

/// Words the PTB splits into two tokens, with the length of the first.
const ASSIMILATIONS: &[(&str, usize)] = &[
    ("cannot", 3),
    ("gonna", 3),
    ("gotta", 3),
    ("wanna", 3),
    ("gimme", 3),
    ("lemme", 3),
];

/// Clitics split off the end of a word, in the order they are tried.
const CLITICS: &[&str] = &["n't", "'s", "'m", "'d", "'re", "'ve", "'ll"];

/// Tokenizes a caption as pycocoevalcap does: PTB tokens, lower case, punctuation tokens removed.
pub fn tokenize_caption(text: &str) -> Vec<String> {
    ptb_tokenize(text)
        .into_iter()
        .filter(|token| !PTB_PUNCTUATIONS.contains(&token.as_str()))
        .collect()
}

/// Tokenizes every caption of a list with [`tokenize_caption`].
pub fn tokenize_captions<S: AsRef<str>>(texts: &[S]) -> Vec<Vec<String>> {
    texts.iter().map(|text| tokenize_caption(text.as_ref())).collect()
}

/// PTB tokens of `text`, lower-cased, before the punctuation filter (what the Stanford tokenizer
/// prints with `-lowerCase`).
pub fn ptb_tokenize(text: &str) -> Vec<String> {
    let chars: Vec<char> = map_unicode_punctuation(text).chars().collect();
    let mut tokens = Vec::new();
    let mut at = 0;
    while at < chars.len() {
        let c = chars[at];
        if c.is_whitespace() {
            at += 1;
        } else if c.is_alphanumeric() {
            let end = word_end(&chars, at);
            let mut word: String = chars[at..end].iter().collect::<String>().to_lowercase();
            at = end;
            if chars.get(end) == Some(&'.') && keeps_period(&word, &chars[end + 1..]) {
                word.push('.');
                at += 1;
            }
            push_word(&mut tokens, word);
        } else {
            at = push_punctuation(&mut tokens, &chars, at);
        }
    }
    tokens
}

/// Maps typographic punctuation to the ASCII forms the jar normalises it to.
fn map_unicode_punctuation(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\u{201C}' | '\u{201D}' | '\u{201E}' => out.push('"'),
            '\u{2018}' | '\u{2019}' | '\u{201A}' => out.push('\''),
            '\u{2013}' | '\u{2014}' => out.push_str("--"),
            '\u{2026}' => out.push_str("..."),
            _ => out.push(c),
        }
    }
    out
}

/// End (exclusive) of the word starting at the alphanumeric `chars[start]`.
fn word_end(chars: &[char], start: usize) -> usize {
    let mut end = start + 1;
    while let Some(&c) = chars.get(end) {
        let abbreviation_period = c == '.' && is_number_abbreviation(&chars[start..end]);
        if c.is_alphanumeric() || (joins_word(chars, end) && !abbreviation_period) {
            end += 1;
        } else {
            break;
        }
    }
    end
}

/// Whether `word` is one of [`NUMBER_ABBREVIATIONS`]: its period never joins the number after it
/// (`no.5` → `no. 5`).
fn is_number_abbreviation(word: &[char]) -> bool {
    let word: String = word.iter().collect::<String>().to_lowercase();
    NUMBER_ABBREVIATIONS.contains(&word.as_str())
}

/// Whether the non-alphanumeric `chars[at]`, which follows a letter or digit, stays inside the word.
fn joins_word(chars: &[char], at: usize) -> bool {
    let previous = chars[at - 1];
    let Some(&next) = chars.get(at + 1) else {
        return false;
    };
    match chars[at] {
        '.' | '/' | '-' => next.is_alphanumeric(),
        ',' | ':' => previous.is_ascii_digit() && next.is_ascii_digit(),
        '\'' => next.is_alphabetic(),
        '&' => previous.is_ascii_uppercase() && next.is_ascii_uppercase(),
        _ => false,
    }
}

/// Whether the period right after `word` is part of it; `rest` is the text after that period.
fn keeps_period(word: &str, rest: &[char]) -> bool {
    let is_acronym = word.split('.').all(|part| {
        let mut letters = part.chars();
        matches!((letters.next(), letters.next()), (Some(letter), None) if letter.is_alphabetic())
    });
    let before_number = || {
        rest.iter()
            .find(|c| !c.is_whitespace())
            .is_some_and(|c| c.is_ascii_digit())
    };
    is_acronym || ABBREVIATIONS.contains(&word) || (NUMBER_ABBREVIATIONS.contains(&word) && before_number())
}

/// Pushes a lower-cased word, split into its PTB pieces (`cannot` → `can not`, `don't` → `do n't`).
fn push_word(tokens: &mut Vec<String>, word: String) {
    if let Some(&(_, split)) = ASSIMILATIONS.iter().find(|(whole, _)| *whole == word) {
        tokens.push(word[..split].to_string());
        tokens.push(word[split..].to_string());
        return;
    }
    let mut stem = word.as_str();
    let mut clitics = Vec::new();
    while let Some(clitic) = CLITICS
        .iter()
        .find(|clitic| stem.len() > clitic.len() && stem.ends_with(*clitic))
    {
        stem = &stem[..stem.len() - clitic.len()];
        clitics.push(*clitic);
    }
    tokens.push(stem.to_string());
    tokens.extend(clitics.iter().rev().map(|clitic| clitic.to_string()));
}

/// Pushes the punctuation token starting at `chars[at]` and returns where the next token starts.
fn push_punctuation(tokens: &mut Vec<String>, chars: &[char], at: usize) -> usize {
    let c = chars[at];
    let run = chars[at..].iter().take_while(|&&other| other == c).count();
    // A quote is an opening one when a letter follows it.
    let opens = chars.get(at + 1).is_some_and(|next| next.is_alphabetic());
    let (token, len): (String, usize) = match c {
        '.' if run >= 3 => ("...".into(), run),
        '-' if run >= 2 => ("--".into(), run),
        '!' | '?' => {
            let len = chars[at..]
                .iter()
                .take_while(|other| matches!(other, '!' | '?'))
                .count();
            (chars[at..at + len].iter().collect(), len)
        }
        '`' if run >= 2 => ("``".into(), 2),
        '"' => (if opens { "``" } else { "''" }.into(), 1),
        '\'' => match kept_apostrophe_word(&chars[at..]) {
            Some(len) => (chars[at..at + len].iter().collect::<String>().to_lowercase(), len),
            None => (if opens { "`" } else { "'" }.into(), 1),
        },
        '(' => ("-lrb-".into(), 1),
        ')' => ("-rrb-".into(), 1),
        '[' => ("-lsb-".into(), 1),
        ']' => ("-rsb-".into(), 1),
        '{' => ("-lcb-".into(), 1),
        '}' => ("-rcb-".into(), 1),
        _ => (c.to_lowercase().collect(), 1),
    };
    tokens.push(token);
    at + len
}

/// Length of `'n'` or of a decade such as `'80s`/`'11` at the start of `chars`, which the PTB keeps
/// whole.
fn kept_apostrophe_word(chars: &[char]) -> Option<usize> {
    let at = |i: usize| chars.get(i).copied().unwrap_or(' ');
    if matches!(at(1), 'n' | 'N') && at(2) == '\'' {
        return Some(3);
    }
    if at(1).is_ascii_digit() && at(2).is_ascii_digit() {
        let len = if matches!(at(3), 's' | 'S') { 4 } else { 3 };
        return (!at(len).is_alphanumeric()).then_some(len);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Fixture {
        punctuations: Vec<String>,
        cases: Vec<Case>,
    }

    #[derive(Deserialize)]
    struct Case {
        text: String,
        ptb_tokens: Vec<String>,
        caption_tokens: Vec<String>,
    }

    fn fixture() -> Fixture {
        serde_json::from_str(include_str!("fixtures/tokenizer.json")).expect("tokenizer.json parses")
    }

    #[test]
    fn punctuation_list_is_pycocoevalcaps() {
        assert_eq!(fixture().punctuations, PTB_PUNCTUATIONS);
    }

    #[test]
    fn ptb_tokens_match_the_stanford_jar() {
        for case in fixture().cases {
            assert_eq!(ptb_tokenize(&case.text), case.ptb_tokens, "{:?}", case.text);
        }
    }

    #[test]
    fn caption_tokens_match_pycocoevalcap() {
        let fixture = fixture();
        let texts: Vec<&str> = fixture.cases.iter().map(|case| case.text.as_str()).collect();
        let expected: Vec<&Vec<String>> = fixture.cases.iter().map(|case| &case.caption_tokens).collect();
        assert_eq!(tokenize_captions(&texts).iter().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn empty_and_blank_captions_have_no_tokens() {
        assert!(tokenize_caption("").is_empty());
        assert!(tokenize_caption(" \t ").is_empty());
        assert!(tokenize_caption(" . , ; ").is_empty());
    }
}

//! `edgevlm data qa-from-captions`: questions with one-word answers made from a
//! caption set, the way COCO-QA was made from COCO (Ren et al. 2015): object,
//! number, colour and location questions read off each caption, yes/no questions
//! (existence, colour, count) answered "yes" by what the captions say and "no" by
//! what none of the photo's captions says, over-frequent answers thinned per kind.
//!
//! Each split of the source gives its own file (`train.jsonl`, `dev.jsonl`, …), so
//! a photo's questions stay in its photo's split. A question two captions of one
//! photo answer differently is dropped.

mod balance;
mod lexicon;
mod parse;
pub mod statements;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use edgevlm_shared::rng::SplitMix64;
use serde::Serialize;

pub use parse::{Family, Question};

use super::{coco, flickr8k, text_image, CaptionRecord, DataError, Format, LoadOptions, Result};
use lexicon::Object;
use parse::Facts;

#[derive(Debug, Clone)]
pub struct QaOptions {
    pub seed: u64,
    /// The largest share of one kind's questions one answer may hold.
    pub max_answer_share: f64,
}

impl Default for QaOptions {
    fn default() -> Self {
        Self {
            seed: 0,
            max_answer_share: 0.2,
        }
    }
}

/// One line of the written JSONL, which `--format jsonl` reads back.
#[derive(Debug, Serialize)]
struct Line<'a> {
    image: &'a str,
    question: &'a str,
    answer: &'a str,
    /// yes/no, number or other.
    #[serde(rename = "type")]
    answer_type: &'static str,
    family: &'static str,
}

/// What one split gave.
#[derive(Debug, Default, Serialize)]
pub struct SplitReport {
    pub file: PathBuf,
    pub images: usize,
    pub questions: usize,
    pub per_family: BTreeMap<&'static str, usize>,
    pub per_answer_type: BTreeMap<&'static str, usize>,
    /// Each kind's five most frequent answers with their counts, after thinning.
    pub top_answers: BTreeMap<&'static str, Vec<(String, usize)>>,
    /// Questions two captions of one photo answered differently.
    pub conflicting: usize,
    /// Questions dropped so that no answer dominates its kind.
    pub thinned: usize,
}

/// A photo's questions.
pub type PhotoQuestions = (PathBuf, Vec<Question>);

/// The splits a caption set has, each with the name its file gets.
fn splits(format: Format, data: &Path) -> Result<Vec<Option<String>>> {
    Ok(match format {
        Format::Flickr8k => ["train", "dev", "test"]
            .into_iter()
            .filter(|s| flickr8k::split_file(data, s).is_file())
            .map(|s| Some(s.to_string()))
            .collect(),
        Format::Coco => coco::splits(data)?.into_iter().map(Some).collect(),
        Format::TextImage => vec![None],
        other => {
            return Err(DataError::layout(
                data,
                format!("{other:?} holds questions already; qa-from-captions reads a caption set"),
            ))
        }
    })
}

fn load(format: Format, data: &Path, split: Option<&str>) -> Result<Vec<CaptionRecord>> {
    let opts = LoadOptions {
        strict: false,
        skip_decode_check: true,
    };
    let set = match format {
        Format::Flickr8k => flickr8k::load(data, split, opts)?,
        Format::Coco => coco::load(data, split, opts)?,
        _ => text_image::load(data, opts)?,
    };
    if let Some(warning) = set.skipped.warning() {
        eprintln!("{warning}");
    }
    Ok(set.records)
}

/// Writes one JSONL per split of `data` into `out` and reports each.
pub fn write(format: Format, data: &Path, out: &Path, opts: &QaOptions) -> Result<Vec<SplitReport>> {
    if !(opts.max_answer_share > 0.0 && opts.max_answer_share <= 1.0) {
        return Err(DataError::layout(
            out,
            format!(
                "--max-answer-share must be in (0, 1], not {}",
                opts.max_answer_share
            ),
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| DataError::io(out, e))?;
    // The JSONL files name their photos by absolute path: they live elsewhere than
    // the caption set, and a relative name would resolve against their folder.
    let data = &data.canonicalize().map_err(|e| DataError::io(data, e))?;
    let mut reports = Vec::new();
    for split in splits(format, data)? {
        let records = load(format, data, split.as_deref())?;
        let seed = opts.seed
            ^ split
                .as_deref()
                .map_or(0, |s| s.bytes().fold(0u64, |h, b| h * 31 + b as u64));
        let (photos, mut report) = questions(&records, opts.max_answer_share, seed);
        report.file = out.join(format!("{}.jsonl", split.as_deref().unwrap_or("questions")));
        write_jsonl(&report.file, &photos)?;
        reports.push(report);
    }
    Ok(reports)
}

fn write_jsonl(file: &Path, photos: &[PhotoQuestions]) -> Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(file).map_err(|e| DataError::io(file, e))?);
    for (image, questions) in photos {
        let image = image.to_string_lossy();
        for q in questions {
            let line = Line {
                image: &image,
                question: &q.question,
                answer: &q.answer,
                answer_type: q.family.answer_type(),
                family: q.family.name(),
            };
            let json = serde_json::to_string(&line).map_err(|e| DataError::layout(file, e.to_string()))?;
            writeln!(w, "{json}").map_err(|e| DataError::io(file, e))?;
        }
    }
    w.flush().map_err(|e| DataError::io(file, e))
}

/// The pools "no" answers are drawn from: what the split's captions say, as often
/// as they say it, so a question alone does not tell "yes" from "no".
#[derive(Default)]
struct Pools {
    objects: Vec<&'static Object>,
    colours: Vec<&'static str>,
    counts: Vec<&'static str>,
}

fn draw<T: Copy>(pool: &[T], rng: &mut SplitMix64, ok: impl Fn(T) -> bool) -> Option<T> {
    if pool.is_empty() {
        return None;
    }
    (0..20)
        .map(|_| pool[rng.below(pool.len() as u64) as usize])
        .find(|&x| ok(x))
}

/// Every photo's questions, thinned per kind; photos in the input's order.
pub fn questions(records: &[CaptionRecord], share: f64, seed: u64) -> (Vec<PhotoQuestions>, SplitReport) {
    let facts: Vec<Vec<Facts>> = records
        .iter()
        .map(|r| r.captions.iter().map(|c| parse::read(c)).collect())
        .collect();
    let mut pools = Pools::default();
    for f in facts.iter().flatten() {
        pools
            .objects
            .extend(f.objects.iter().filter(|o| lexicon::can_be_absent(o)));
        pools.colours.extend(f.colours.iter().map(|c| c.colour));
        pools.counts.extend(f.counts.iter().map(|c| c.1));
    }
    let mut rng = SplitMix64::fork(seed, 1);
    let mut report = SplitReport::default();
    let mut all: Vec<(usize, Question)> = Vec::new();
    for (photo, captions) in facts.iter().enumerate() {
        let (open, conflicting) = agreed(captions);
        report.conflicting += conflicting;
        all.extend(open.into_iter().map(|q| (photo, q)));
        all.extend(yes_no(captions, &pools, &mut rng).into_iter().map(|q| (photo, q)));
    }
    let before = all.len();
    let mut kept: Vec<(usize, Question)> = Vec::new();
    for (k, family) in Family::ALL.into_iter().enumerate() {
        let of_kind: Vec<_> = all.iter().filter(|(_, q)| q.family == family).cloned().collect();
        let family_seed = SplitMix64::fork(seed, 100 + k as u64).next_u64();
        let of_kind = balance::even_per_probe(of_kind, family_seed, |(_, q)| (q.probe, q.answer.as_str()));
        kept.extend(balance::balance(of_kind, share, family_seed, |(_, q)| &q.answer));
    }
    report.thinned = before - kept.len();
    kept.sort_by_key(|(photo, _)| *photo);
    let mut photos: Vec<PhotoQuestions> = Vec::new();
    for (photo, q) in kept {
        *report.per_family.entry(q.family.name()).or_default() += 1;
        *report.per_answer_type.entry(q.family.answer_type()).or_default() += 1;
        match photos.last_mut() {
            Some((image, qs)) if *image == records[photo].image => qs.push(q),
            _ => photos.push((records[photo].image.clone(), vec![q])),
        }
    }
    report.images = photos.len();
    report.questions = photos.iter().map(|(_, q)| q.len()).sum();
    report.top_answers = top_answers(&photos);
    (photos, report)
}

/// The open questions of one photo's captions, each once, without those its
/// captions answer differently (and how many of those there were).
fn agreed(captions: &[Facts]) -> (Vec<Question>, usize) {
    let mut answers: BTreeMap<&str, (BTreeSet<&str>, &Question)> = BTreeMap::new();
    for q in captions.iter().flat_map(|f| &f.questions) {
        answers
            .entry(&q.question)
            .or_insert((BTreeSet::new(), q))
            .0
            .insert(&q.answer);
    }
    let conflicting = answers.values().filter(|(a, _)| a.len() > 1).count();
    let open = answers
        .into_values()
        .filter(|(a, _)| a.len() == 1)
        .map(|(_, q)| q.clone())
        .collect();
    (open, conflicting)
}

/// One "yes" and one "no" of each kind the photo's captions allow.
fn yes_no(captions: &[Facts], pools: &Pools, rng: &mut SplitMix64) -> Vec<Question> {
    let yes_no = |question: String, yes: bool, family: Family| Question {
        question,
        answer: if yes { "yes" } else { "no" }.into(),
        family,
        probe: None,
    };
    let probing = |q: Question, probe: &'static str| Question {
        probe: Some(probe),
        ..q
    };
    let mut out = Vec::new();
    let groups: BTreeSet<&str> = captions
        .iter()
        .flat_map(|f| f.objects.iter().map(|o| o.group))
        .collect();
    let present: Vec<&Object> = captions
        .iter()
        .flat_map(|f| f.objects.iter().copied())
        .filter(|o| lexicon::can_be_absent(o))
        .collect();
    if let Some(&o) = pick(&present, rng) {
        out.push(yes_no(parse::exists_question(o), true, Family::Exists));
        if let Some(absent) = draw(&pools.objects, rng, |a| !groups.contains(a.group)) {
            out.push(yes_no(parse::exists_question(absent), false, Family::Exists));
        }
    }
    let said: BTreeSet<&str> = captions
        .iter()
        .flat_map(|f| f.colour_words.iter().copied())
        .collect();
    let colours: Vec<_> = captions.iter().flat_map(|f| &f.colours).collect();
    if let Some(fact) = pick(&colours, rng) {
        // Only a noun every caption gives the same colour.
        if colours
            .iter()
            .all(|c| c.noun != fact.noun || c.colour == fact.colour)
        {
            out.push(probing(
                yes_no(parse::colour_question(fact, fact.colour), true, Family::IsColour),
                fact.colour,
            ));
            if let Some(other) = draw(&pools.colours, rng, |c| !said.contains(c)) {
                out.push(probing(
                    yes_no(parse::colour_question(fact, other), false, Family::IsColour),
                    other,
                ));
            }
        }
    }
    let counts: Vec<_> = captions.iter().flat_map(|f| &f.counts).collect();
    if let Some(&&(object, count)) = pick(&counts, rng) {
        let stated: BTreeSet<&str> = counts
            .iter()
            .filter(|c| c.0.group == object.group)
            .map(|c| c.1)
            .collect();
        if stated.len() == 1 {
            out.push(probing(
                yes_no(parse::count_question(object, count), true, Family::IsCount),
                count,
            ));
            if let Some(other) = draw(&pools.counts, rng, |c| !stated.contains(c)) {
                out.push(probing(
                    yes_no(parse::count_question(object, other), false, Family::IsCount),
                    other,
                ));
            }
        }
    }
    out
}

fn pick<'a, T>(items: &'a [T], rng: &mut SplitMix64) -> Option<&'a T> {
    (!items.is_empty()).then(|| &items[rng.below(items.len() as u64) as usize])
}

fn top_answers(photos: &[PhotoQuestions]) -> BTreeMap<&'static str, Vec<(String, usize)>> {
    let mut counts: BTreeMap<&'static str, BTreeMap<&str, usize>> = BTreeMap::new();
    for q in photos.iter().flat_map(|(_, qs)| qs) {
        *counts
            .entry(q.family.name())
            .or_default()
            .entry(&q.answer)
            .or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(family, answers)| {
            let mut answers: Vec<(String, usize)> =
                answers.into_iter().map(|(a, n)| (a.to_string(), n)).collect();
            answers.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            answers.truncate(5);
            (family, answers)
        })
        .collect()
}

#[cfg(test)]
mod statement_tests;
#[cfg(test)]
mod tests;

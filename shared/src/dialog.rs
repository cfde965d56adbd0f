//! A dialog round as the model reads it: the question first, then the earlier
//! rounds newest first, each as question and answer. Truncation to the tokenizer's
//! `max_len` then drops the oldest rounds and never the question. Host training,
//! `edgevlm chat` and `edgevlm-device chat` all compose through here.

/// Separates the rounds: not a word of any caption or question.
pub const SEPARATOR: &str = "|";

/// The most earlier rounds a composed text carries (the tokenizer's `max_len`
/// usually keeps fewer).
pub const MAX_HISTORY: usize = 4;

/// `question | previous question previous answer | …`.
pub fn compose<Q: AsRef<str>, A: AsRef<str>>(question: &str, history: &[(Q, A)]) -> String {
    let mut text = question.trim().to_string();
    for (q, a) in history.iter().rev().take(MAX_HISTORY) {
        text.push_str(&format!(
            " {SEPARATOR} {} {}",
            q.as_ref().trim(),
            a.as_ref().trim()
        ));
    }
    text
}

/// Longest question a conversation takes, in bytes.
pub const MAX_QUESTION: usize = 512;

/// Why a conversation refused a question.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuestionError {
    #[error("empty question")]
    Empty,
    #[error("question of {bytes} bytes; at most {MAX_QUESTION}")]
    TooLong { bytes: usize },
}

/// A conversation about one image: the rounds so far (the last [`MAX_HISTORY`]
/// only, so a long chat holds bounded memory).
#[derive(Debug, Default, Clone)]
pub struct Conversation {
    rounds: std::collections::VecDeque<(String, String)>,
}

impl Conversation {
    /// The text the model reads for `question`, or why it is refused.
    pub fn text_for(&self, question: &str) -> Result<String, QuestionError> {
        let question = question.trim();
        if question.is_empty() {
            return Err(QuestionError::Empty);
        }
        if question.len() > MAX_QUESTION {
            return Err(QuestionError::TooLong {
                bytes: question.len(),
            });
        }
        let history: Vec<&(String, String)> = self.rounds.iter().collect();
        Ok(compose(
            question,
            &history.iter().map(|r| (&r.0, &r.1)).collect::<Vec<_>>(),
        ))
    }

    /// Keeps a round in the history.
    pub fn record(&mut self, question: &str, answer: &str) {
        if self.rounds.len() == MAX_HISTORY {
            self.rounds.pop_front();
        }
        self.rounds
            .push_back((question.trim().to_string(), answer.trim().to_string()));
    }

    /// Forgets the history (a new image).
    pub fn clear(&mut self) {
        self.rounds.clear();
    }

    pub fn len(&self) -> usize {
        self.rounds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rounds.is_empty()
    }
}

/// The next line of `reader` (None at the end), read in bounded memory: a line
/// longer than [`MAX_QUESTION`] comes back cut just past it (so
/// [`Conversation::text_for`] refuses it) and the rest of it is skipped.
pub fn next_line(reader: &mut impl std::io::BufRead) -> std::io::Result<Option<String>> {
    use std::io::{BufRead, Read};
    let mut line = Vec::new();
    let limit = MAX_QUESTION as u64 + 2;
    if reader.by_ref().take(limit).read_until(b'\n', &mut line)? == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') && line.len() as u64 == limit {
        let mut rest = Vec::new();
        loop {
            rest.clear();
            let n = reader.by_ref().take(4096).read_until(b'\n', &mut rest)?;
            if n == 0 || rest.last() == Some(&b'\n') {
                break;
            }
        }
    }
    Ok(Some(
        String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_question_comes_first_and_the_newest_round_next() {
        let history = [
            ("what colour is the leftmost object?", "red"),
            ("is it large?", "yes"),
        ];
        assert_eq!(
            compose("what shape is it?", &history),
            "what shape is it? | is it large? yes | what colour is the leftmost object? red"
        );
        assert_eq!(compose::<&str, &str>(" how many? ", &[]), "how many?");
        let long: Vec<(String, String)> = (0..10).map(|i| (format!("q{i}"), format!("a{i}"))).collect();
        assert_eq!(compose("q", &long).matches(SEPARATOR).count(), MAX_HISTORY);
    }

    #[test]
    fn a_conversation_keeps_its_last_rounds_and_refuses_bad_questions() {
        let mut chat = Conversation::default();
        assert_eq!(
            chat.text_for("what colour is the leftmost object?").unwrap(),
            "what colour is the leftmost object?"
        );
        chat.record("what colour is the leftmost object?", "red");
        assert_eq!(
            chat.text_for("what shape is it?").unwrap(),
            "what shape is it? | what colour is the leftmost object? red"
        );
        for i in 0..10 {
            chat.record(&format!("q{i}"), "a");
        }
        assert_eq!(chat.len(), MAX_HISTORY);
        assert_eq!(chat.text_for("  "), Err(QuestionError::Empty));
        assert_eq!(
            chat.text_for(&"x".repeat(MAX_QUESTION + 1)),
            Err(QuestionError::TooLong {
                bytes: MAX_QUESTION + 1
            })
        );
        chat.clear();
        assert!(chat.is_empty());
    }

    #[test]
    fn lines_are_read_in_bounded_memory() {
        let text = format!("first\n{}\nlast", "y".repeat(100_000));
        let mut reader = std::io::Cursor::new(text.into_bytes());
        assert_eq!(next_line(&mut reader).unwrap().as_deref(), Some("first"));
        let long = next_line(&mut reader).unwrap().unwrap();
        assert!(long.len() > MAX_QUESTION && long.len() <= MAX_QUESTION + 2);
        assert_eq!(next_line(&mut reader).unwrap().as_deref(), Some("last"));
        assert_eq!(next_line(&mut reader).unwrap(), None);
    }
}

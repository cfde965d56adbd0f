//! Text tokenization on Hugging Face `tokenizers`, saved as `tokenizer.json`.
//!
//! A [`TextTokenizer`] is either trained here (BERT-style WordPiece over a caption
//! corpus, so a small decoder gets a small vocabulary) or loaded from any BERT-family
//! `tokenizer.json` (MiniLM, BERT). Either way sequences look like BERT's:
//! `[CLS] tokens… [SEP]`, truncated to `max_len`, padded with `[PAD]`.

mod vocabulary;

use std::collections::BTreeMap;
use std::path::Path;

use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{
    AddedToken, NormalizedString, Normalizer, OffsetReferential, OffsetType, PreTokenizedString,
    PreTokenizer, Tokenizer, TruncationParams,
};

use crate::config::TokenizerConfig;
use crate::error::{Error, Result};

pub const PAD: &str = "[PAD]";
pub const UNK: &str = "[UNK]";
pub const CLS: &str = "[CLS]";
pub const SEP: &str = "[SEP]";
pub const MASK: &str = "[MASK]";
/// In id order for a trained vocabulary: `[PAD]` is 0, as in BERT.
pub const SPECIAL_TOKENS: [&str; 5] = [PAD, UNK, CLS, SEP, MASK];

/// Ids of the special tokens in the loaded vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialIds {
    pub pad: u32,
    pub unk: u32,
    pub cls: u32,
    pub sep: u32,
    pub mask: u32,
}

/// A padded batch of token ids, row-major `[batch, seq_len]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBatch {
    pub ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub mask: Vec<u32>,
    pub batch: usize,
    pub seq_len: usize,
}

impl EncodedBatch {
    pub fn row(&self, i: usize) -> &[u32] {
        &self.ids[i * self.seq_len..(i + 1) * self.seq_len]
    }

    /// The distinct rows (in order of first occurrence) and, for each row, its index
    /// among them.
    pub fn distinct(&self) -> (EncodedBatch, Vec<usize>) {
        let mut seen: std::collections::HashMap<&[u32], usize> = std::collections::HashMap::new();
        let (mut ids, mut mask, mut row_of) = (Vec::new(), Vec::new(), Vec::with_capacity(self.batch));
        for r in 0..self.batch {
            let span = r * self.seq_len..(r + 1) * self.seq_len;
            let next = seen.len();
            let k = *seen.entry(self.row(r)).or_insert_with(|| {
                ids.extend_from_slice(&self.ids[span.clone()]);
                mask.extend_from_slice(&self.mask[span]);
                next
            });
            row_of.push(k);
        }
        let batch = seen.len();
        (
            EncodedBatch {
                ids,
                mask,
                batch,
                seq_len: self.seq_len,
            },
            row_of,
        )
    }
}

#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    special: SpecialIds,
    max_len: usize,
}

fn tok_err(path: Option<&Path>, reason: impl std::fmt::Display) -> Error {
    Error::Tokenizer {
        path: path.map(Path::to_path_buf),
        reason: reason.to_string(),
    }
}

impl TextTokenizer {
    /// Trains a WordPiece vocabulary on `texts`; the same texts always give the same
    /// vocabulary ([`vocabulary::train_vocabulary`]).
    pub fn train<I, S>(texts: I, cfg: &TokenizerConfig) -> Result<Self>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
    {
        cfg.validate()?;
        let strip_accents = if cfg.lowercase { None } else { Some(false) };
        let normalizer = BertNormalizer::new(true, true, strip_accents, cfg.lowercase);
        let mut word_counts = BTreeMap::<String, u64>::new();
        for text in texts {
            let mut normalized = NormalizedString::from(text.as_ref());
            normalizer
                .normalize(&mut normalized)
                .map_err(|e| tok_err(None, e))?;
            let mut words = PreTokenizedString::from(normalized);
            BertPreTokenizer
                .pre_tokenize(&mut words)
                .map_err(|e| tok_err(None, e))?;
            for (word, _, _) in words.get_splits(OffsetReferential::Normalized, OffsetType::Byte) {
                *word_counts.entry(word.to_string()).or_default() += 1;
            }
        }
        let tokens =
            vocabulary::train_vocabulary(&word_counts, &SPECIAL_TOKENS, cfg.vocab_size, cfg.min_frequency);
        let vocab: serde_json::Map<String, serde_json::Value> = tokens
            .into_iter()
            .enumerate()
            .map(|(id, token)| (token, serde_json::json!(id)))
            .collect();
        // WordPiece borrows the model type's name while parsing, so it reads text.
        let model = serde_json::json!({
            "type": "WordPiece",
            "unk_token": UNK,
            "continuing_subword_prefix": vocabulary::CONTINUING,
            "max_input_chars_per_word": 100,
            "vocab": vocab,
        });
        let model: WordPiece = serde_json::from_str(&model.to_string()).map_err(|e| tok_err(None, e))?;
        let mut inner = Tokenizer::new(model);
        inner
            .with_normalizer(Some(normalizer))
            .map_err(|e| tok_err(None, e))?;
        inner.with_pre_tokenizer(Some(BertPreTokenizer));
        inner.with_decoder(Some(WordPieceDecoder::default()));
        // Already in the vocabulary (ids 0–4): this marks them special, it adds none.
        let _ = inner.add_special_tokens(SPECIAL_TOKENS.iter().map(|t| AddedToken::from(*t, true)));
        let special = special_ids(&inner, None)?;
        inner.with_post_processor(Some(BertProcessing::new(
            (SEP.into(), special.sep),
            (CLS.into(), special.cls),
        )));
        Self::wrap(inner, cfg.max_len, None)
    }

    /// Loads a `tokenizer.json` (ours, or a BERT/MiniLM one from an HF model dir).
    pub fn from_file(path: &Path, max_len: usize) -> Result<Self> {
        let json = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        Self::from_json(&json, max_len, Some(path))
    }

    /// Parses `tokenizer.json` content; `origin` only labels errors.
    pub fn from_json(json: &str, max_len: usize, origin: Option<&Path>) -> Result<Self> {
        let inner: Tokenizer = json
            .parse()
            .map_err(|e| tok_err(origin, format!("not a valid tokenizer.json: {e}")))?;
        Self::wrap(inner, max_len, origin)
    }

    fn wrap(mut inner: Tokenizer, max_len: usize, origin: Option<&Path>) -> Result<Self> {
        if max_len < 3 {
            return Err(Error::Config {
                field: "max_len".into(),
                reason: format!("must leave room for [CLS], [SEP] and one token, got {max_len}"),
            });
        }
        let special = special_ids(&inner, origin)?;
        // Padding is ours (to the batch's longest row); truncation is the config's.
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(|e| tok_err(origin, e))?;
        Ok(Self {
            inner,
            special,
            max_len,
        })
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_json()?).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })
    }

    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(false).map_err(|e| tok_err(None, e))
    }

    pub fn special_ids(&self) -> SpecialIds {
        self.special
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// `[CLS] … [SEP]`, truncated to `max_len`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, true)
            .map_err(|e| tok_err(None, format!("cannot encode {text:?}: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Encodes and pads to the longest row (at most `max_len`).
    pub fn encode_batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<EncodedBatch> {
        let rows = texts
            .iter()
            .map(|t| self.encode(t.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.pad(&rows, None))
    }

    /// Pads id rows to `seq_len` (or the longest row), truncating longer ones.
    pub fn pad(&self, rows: &[Vec<u32>], seq_len: Option<usize>) -> EncodedBatch {
        pad_rows(rows, self.special.pad, seq_len)
    }

    /// Text from ids, skipping special tokens and joining word pieces.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| tok_err(None, format!("cannot decode: {e}")))
    }
}

fn special_ids(inner: &Tokenizer, origin: Option<&Path>) -> Result<SpecialIds> {
    let id = |token: &str| {
        inner.token_to_id(token).ok_or_else(|| {
            tok_err(
                origin,
                format!("vocabulary has no {token} token (expected a BERT-style WordPiece vocabulary)"),
            )
        })
    };
    Ok(SpecialIds {
        pad: id(PAD)?,
        unk: id(UNK)?,
        cls: id(CLS)?,
        sep: id(SEP)?,
        mask: id(MASK)?,
    })
}

/// Token rows padded with `pad` to `seq_len` (default: the longest row; longer rows
/// are cut), with the attention mask.
pub fn pad_rows<R: AsRef<[u32]>>(rows: &[R], pad: u32, seq_len: Option<usize>) -> EncodedBatch {
    let seq_len = seq_len.unwrap_or_else(|| rows.iter().map(|r| r.as_ref().len()).max().unwrap_or(0));
    let mut ids = vec![pad; rows.len() * seq_len];
    let mut mask = vec![0u32; rows.len() * seq_len];
    for (r, row) in rows.iter().enumerate() {
        let row = row.as_ref();
        let n = row.len().min(seq_len);
        ids[r * seq_len..r * seq_len + n].copy_from_slice(&row[..n]);
        mask[r * seq_len..r * seq_len + n].fill(1);
    }
    EncodedBatch {
        ids,
        mask,
        batch: rows.len(),
        seq_len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_rows_map_every_row_to_its_first_copy() {
        let rows = EncodedBatch {
            ids: vec![2, 7, 3, 2, 8, 3, 2, 7, 3, 2, 8, 0],
            mask: vec![1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0],
            batch: 4,
            seq_len: 3,
        };
        let (distinct, row_of) = rows.distinct();
        assert_eq!(
            row_of,
            [0, 1, 0, 2],
            "same ids, different padding are different rows"
        );
        assert_eq!((distinct.batch, distinct.seq_len), (3, 3));
        assert_eq!(distinct.ids, [2, 7, 3, 2, 8, 3, 2, 8, 0]);
        assert_eq!(distinct.mask, [1, 1, 1, 1, 1, 1, 1, 1, 0]);
    }

    fn corpus() -> Vec<String> {
        let base = [
            "a dog runs on the grass",
            "two dogs play in the snow",
            "a man rides a bike on the road",
            "a girl in a pink dress climbs the stairs",
            "a black dog jumps over a fence",
            "people walk on the beach at sunset",
        ];
        base.iter().cycle().take(60).map(|s| s.to_string()).collect()
    }

    fn trained(max_len: usize) -> TextTokenizer {
        let cfg = TokenizerConfig {
            vocab_size: 200,
            min_frequency: 1,
            max_len,
            lowercase: true,
        };
        TextTokenizer::train(corpus().iter(), &cfg).unwrap()
    }

    #[test]
    fn trained_vocabulary_encodes_with_bert_framing() {
        let tok = trained(16);
        let s = tok.special_ids();
        assert_eq!((s.pad, s.unk, s.cls, s.sep, s.mask), (0, 1, 2, 3, 4));
        let ids = tok.encode("A Dog runs on the GRASS").unwrap();
        assert_eq!(ids.first(), Some(&s.cls));
        assert_eq!(ids.last(), Some(&s.sep));
        assert!(!ids.contains(&s.unk), "{ids:?}");
        assert_eq!(tok.decode(&ids).unwrap(), "a dog runs on the grass");
        assert!(tok.vocab_size() <= 200);
    }

    /// `tokenizers`' own trainer gave different vocabularies for one corpus from run
    /// to run (huggingface/tokenizers#1794); ties here go by text, so every run of the
    /// same texts saves the same `tokenizer.json`, and every word of the corpus
    /// comes back whole once the vocabulary has room for it.
    #[test]
    fn training_is_deterministic_and_keeps_frequent_words_whole() {
        let json = trained(16).to_json().unwrap();
        for _ in 0..5 {
            assert_eq!(trained(16).to_json().unwrap(), json);
        }
        let tok = trained(16);
        for word in ["dog", "dogs", "stairs", "sunset", "bike"] {
            assert!(tok.token_to_id(word).is_some(), "{word} is one token");
        }
        assert_eq!(tok.encode("dogs").unwrap().len(), 3, "[CLS] dogs [SEP]");
        // A word never seen is spelled with the corpus's pieces, not [UNK].
        let ids = tok.encode("grasses").unwrap();
        assert!(ids.len() > 3 && !ids.contains(&tok.special_ids().unk), "{ids:?}");
    }

    #[test]
    fn truncates_and_pads() {
        let tok = trained(5);
        let long = tok.encode("a man rides a bike on the road").unwrap();
        assert_eq!(long.len(), 5);
        assert_eq!(long[4], tok.special_ids().sep);
        let batch = tok
            .encode_batch(&["a dog", "a man rides a bike on the road"])
            .unwrap();
        assert_eq!((batch.batch, batch.seq_len), (2, 5));
        assert_eq!(batch.mask, vec![1, 1, 1, 1, 0, 1, 1, 1, 1, 1]);
        assert_eq!(batch.row(0)[4], tok.special_ids().pad);
    }

    #[test]
    fn save_and_load_round_trip() {
        let tok = trained(16);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        tok.save(&path).unwrap();
        let back = TextTokenizer::from_file(&path, 16).unwrap();
        let text = "two dogs play on the beach";
        assert_eq!(back.encode(text).unwrap(), tok.encode(text).unwrap());
        assert_eq!(back.special_ids(), tok.special_ids());
    }

    #[test]
    fn malformed_or_foreign_files_are_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, "{ not json").unwrap();
        let msg = TextTokenizer::from_file(&path, 16).unwrap_err().to_string();
        assert!(
            msg.contains("tokenizer.json") && msg.contains("not a valid"),
            "{msg}"
        );
        let missing = dir.path().join("absent.json");
        let msg = TextTokenizer::from_file(&missing, 16).unwrap_err().to_string();
        assert!(msg.contains("absent.json"), "{msg}");
    }
}

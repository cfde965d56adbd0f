//! The model the loop runs: the configured bundle (signed, or unsigned on a bench
//! that says so) or the agent's active slot, verified again at each reading. A
//! text trigger's phrases are embedded from one reading with the text tower alone,
//! and the loop's graphs are built from another without it, so the text tower and
//! the captioning graphs are in memory together only in a loop that answers
//! questions (the VQA graph reads the text tower's states).

use std::path::PathBuf;

use ed25519_dalek::VerifyingKey;
use edgevlm_shared::bundle::Bundle;

use super::DeviceConfig;
use crate::agent::{read_signed, trusted_keys, Slot, State};
use crate::runtime::{Runtime, TextTower};

enum ModelFile {
    Unsigned(PathBuf),
    Signed { path: PathBuf, keys: Vec<VerifyingKey> },
    Slot { state: State, slot: Slot },
}

impl ModelFile {
    /// The bundle, verified; only the files named in `keep` (all with `None`).
    fn read(&self, keep: Option<&[&str]>) -> anyhow::Result<Bundle> {
        Ok(match (self, keep) {
            (ModelFile::Unsigned(path), None) => Bundle::read(path)?,
            (ModelFile::Unsigned(path), Some(keep)) => Bundle::read_only(path, keep)?,
            (ModelFile::Signed { path, keys }, keep) => read_signed(path, keys, keep)?,
            (ModelFile::Slot { state, slot }, keep) => state.verified_only(*slot, keep)?,
        })
    }
}

/// The bundle to run: the configured one, or the agent's active slot (checked,
/// rolled back if need be, and loaded: returned too, to be used when no phrase
/// needs the text tower first).
fn locate(cfg: &DeviceConfig) -> anyhow::Result<(ModelFile, Option<Runtime>)> {
    if let Some(bundle) = &cfg.bundle {
        let path = bundle.clone();
        // A file on the card is as hostile as a network peer: it runs only
        // signed, unless the config says in so many words that this is a bench.
        let file = match (&cfg.agent, &cfg.trusted) {
            (Some(agent), _) => ModelFile::Signed {
                path,
                keys: State::open(&agent.state)?.trusted().to_vec(),
            },
            (None, Some(trusted)) => ModelFile::Signed {
                path,
                keys: trusted_keys(trusted)?,
            },
            (None, None) if cfg.unsigned_bundle => {
                eprintln!("run: {} runs unsigned (unsigned_bundle = true)", bundle.display());
                ModelFile::Unsigned(path)
            }
            (None, None) => anyhow::bail!(
                "bundle {} runs only signed: set `trusted = \"keys\"` (a folder of *.pub) with {}.sig beside it, \
                 an [agent] section, or `unsigned_bundle = true` on a bench",
                bundle.display(),
                bundle.display()
            ),
        };
        return Ok((file, None));
    }
    let Some(agent) = &cfg.agent else {
        anyhow::bail!("no `bundle` and no [agent] section in the device config");
    };
    let state = State::open(&agent.state)?;
    let (slot, runtime, note) = state.select()?;
    if let Some(note) = note {
        eprintln!("run: {note}");
    }
    eprintln!("run: model from slot {}", slot.name());
    Ok((ModelFile::Slot { state, slot }, Some(runtime)))
}

/// The loop's runtime and the embeddings of `phrases` (in order), computed first.
/// The runtime holds the text tower only when `answering` (the loop may be asked
/// questions) and the bundle has a VQA graph, which reads the tower's states.
pub(super) fn load(
    cfg: &DeviceConfig,
    phrases: &[&str],
    answering: bool,
) -> anyhow::Result<(Runtime, Vec<Vec<f32>>)> {
    let (file, checked) = locate(cfg)?;
    let text_tower = || -> anyhow::Result<TextTower> {
        let files = TextTower::files();
        Ok(TextTower::from_owned(
            file.read(Some(&files.each_ref().map(String::as_str)))?,
        )?)
    };
    let (runtime, embeddings) = if phrases.is_empty() {
        let runtime = match checked {
            Some(runtime) => runtime,
            None => Runtime::without_text_encoder(file.read(None)?)?,
        };
        runtime.release_text_encoder();
        (runtime, Vec::new())
    } else {
        drop(checked);
        let text = text_tower()?;
        let embeddings = text.embed(phrases)?;
        drop(text);
        crate::runtime::return_freed_memory();
        (Runtime::without_text_encoder(file.read(None)?)?, embeddings)
    };
    if answering && runtime.answers_questions() {
        runtime.use_text_tower(&text_tower()?);
    }
    Ok((runtime, embeddings))
}

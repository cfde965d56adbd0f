//! `edgevlm-device info` and `unpack`: look inside a bundle without running it.

use std::path::Path;

use anyhow::{Context, Result};
use edgevlm_shared::bundle::Bundle;

use crate::info;

pub fn info(bundle: &Path) -> Result<()> {
    let b = Bundle::read(bundle)?;
    print!("{}", info::describe(&b, std::fs::metadata(bundle)?.len()));
    Ok(())
}

pub fn unpack(bundle: &Path, out: &Path) -> Result<()> {
    let b = Bundle::read(bundle)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    b.unpack(out)?;
    let manifest = out.join("manifest.json");
    std::fs::write(&manifest, serde_json::to_string_pretty(&b.manifest)?)?;
    println!(
        "{} files and manifest.json written to {}",
        b.manifest.files.len(),
        out.display()
    );
    Ok(())
}

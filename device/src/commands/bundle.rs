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
    if b.has_file("manifest.json") {
        anyhow::bail!(
            "{}: carries a file named manifest.json, the name unpack gives the manifest",
            bundle.display()
        );
    }
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

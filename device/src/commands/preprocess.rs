//! `edgevlm-device preprocess`: the model's input tensor for an image, as this
//! board computes it, to compare with the trainer's.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use edgevlm_shared::{preprocess_file, PreprocessConfig};

pub fn preprocess(image: &Path, config: Option<PathBuf>, out: Option<PathBuf>) -> Result<()> {
    let cfg = match config {
        Some(path) => {
            let text =
                std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let cfg: PreprocessConfig = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a preprocessing config", path.display()))?;
            cfg.validate()?;
            cfg
        }
        None => PreprocessConfig::default(),
    };
    let tensor = preprocess_file(image, &cfg)?;
    let mean = tensor.data.iter().map(|&v| v as f64).sum::<f64>() / tensor.data.len() as f64;
    println!("{}: shape {:?}, mean {mean:.6}", image.display(), tensor.shape());
    if let Some(out) = out {
        let mut f = std::fs::File::create(&out).with_context(|| format!("creating {}", out.display()))?;
        for v in &tensor.data {
            f.write_all(&v.to_le_bytes())?;
        }
    }
    Ok(())
}

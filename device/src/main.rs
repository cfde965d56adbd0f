use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use edgevlm_shared::{preprocess_file, PreprocessConfig};

#[derive(Parser)]
#[command(
    name = "edgevlm-device",
    version,
    about = "edgevlm firmware: on-device captioning and VQA"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the shared preprocessing on an image and write the CHW f32 tensor
    /// (little-endian) — the exact input the model sees on this board.
    Preprocess {
        image: PathBuf,
        /// Preprocessing config as JSON (defaults to ImageNet statistics at 224 px).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where to write the tensor; prints a summary only when absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Preprocess { image, config, out } => {
            let cfg = match config {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let cfg: PreprocessConfig = serde_json::from_str(&text)
                        .with_context(|| format!("{}: not a preprocessing config", path.display()))?;
                    cfg.validate()?;
                    cfg
                }
                None => PreprocessConfig::default(),
            };
            let tensor = preprocess_file(&image, &cfg)?;
            let mean = tensor.data.iter().map(|&v| v as f64).sum::<f64>() / tensor.data.len() as f64;
            println!("{}: shape {:?}, mean {mean:.6}", image.display(), tensor.shape());
            if let Some(out) = out {
                let mut f =
                    std::fs::File::create(&out).with_context(|| format!("creating {}", out.display()))?;
                for v in &tensor.data {
                    f.write_all(&v.to_le_bytes())?;
                }
            }
        }
    }
    Ok(())
}

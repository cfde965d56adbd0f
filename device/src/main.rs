use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use edgevlm_device::agent::{ServerConfig, State};
use edgevlm_device::runtime::Runtime;
use edgevlm_shared::bundle::Bundle;
use edgevlm_shared::caption::{Consensus, Decoding};
use edgevlm_shared::preprocess::load_image;
use edgevlm_shared::{preprocess_file, PreprocessConfig};

mod bench;
mod info;

#[derive(Parser)]
#[command(
    name = "edgevlm-device",
    version,
    about = "edgevlm firmware: on-device captioning and VQA"
)]
struct Cli {
    /// Threads for tract's matrix products (1 = single-threaded).
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct ModelArgs {
    /// Bundle written by `edgevlm export`.
    #[arg(long)]
    bundle: PathBuf,
}

/// Caption decoding; what is not given comes from the bundle (the settings its
/// trainer chose), else greedy search.
#[derive(Args, Clone, Copy)]
pub struct SearchArgs {
    /// Beam size (1 = greedy).
    #[arg(long)]
    beam: Option<usize>,
    /// GNMT length penalty exponent.
    #[arg(long)]
    length_penalty: Option<f32>,
    /// Rerank the beam's captions against the N training captions nearest the
    /// image (0 = keep the beam's best); needs a bundle with a caption memory.
    #[arg(long, value_name = "N")]
    consensus: Option<usize>,
}

impl SearchArgs {
    pub fn decoding(self, runtime: &Runtime) -> Decoding {
        let mut d = runtime.decoding();
        if let Some(beam) = self.beam {
            d.beam_size = beam.max(1);
        }
        if let Some(penalty) = self.length_penalty {
            d.length_penalty = penalty;
        }
        match self.consensus {
            Some(0) => d.consensus = None,
            Some(n) => {
                d.consensus = Some(Consensus {
                    neighbours: n,
                    ..d.consensus.unwrap_or_default()
                })
            }
            None => {}
        }
        d
    }
}

#[derive(Subcommand)]
enum Command {
    /// Print a bundle's manifest: graphs, files and checksums, vocabularies, self-test.
    Info { bundle: PathBuf },
    /// The device loop: trigger → capture → caption (+ questions) → JSON events.
    Run {
        #[arg(long)]
        config: PathBuf,
        /// Stop after this many events (0: run until killed).
        #[arg(long, default_value_t = 0)]
        max_events: u64,
    },
    /// The update agent: receives signed bundles over TCP and installs them into
    /// A/B slots (verify, self-test, atomic switch).
    Agent {
        /// Device config whose [agent] section gives the state folder, address
        /// and token file (flags below override it).
        #[arg(long)]
        config: Option<PathBuf>,
        /// State folder (trusted/*.pub, slots/, active).
        #[arg(long, required_unless_present = "config")]
        state: Option<PathBuf>,
        /// Address to listen on [default: 127.0.0.1:7878, loopback only].
        #[arg(long)]
        listen: Option<String>,
        /// Shared secret the host must present (or the EDGEVLM_AGENT_TOKEN variable).
        #[arg(long, env = "EDGEVLM_AGENT_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Serve on this serial port instead of TCP (a UART cable from the host).
        #[arg(long)]
        serial: Option<String>,
        #[arg(long, default_value_t = 115_200)]
        baud: u32,
        /// Largest bundle accepted, in MiB [default: 512].
        #[arg(long)]
        max_bundle_mb: Option<u64>,
        /// Exit after this many installs (0: serve forever).
        #[arg(long, default_value_t = 0)]
        max_installs: usize,
    },
    /// Install a signed bundle from a file into the state folder (as the agent does).
    Install {
        #[arg(long)]
        state: PathBuf,
        bundle: PathBuf,
        /// Signature file (default: BUNDLE.sig).
        #[arg(long)]
        sig: Option<PathBuf>,
    },
    /// What the device starts: the active slot, or the other one if it fails.
    /// With a command after `--`, runs it with the chosen slot's firmware (when
    /// its bundle carried one), e.g. `start --state S -- run --config device.toml`.
    Start {
        #[arg(long)]
        state: PathBuf,
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Verify a bundle and write its files (graphs, tokenizer, …) into a folder.
    Unpack {
        bundle: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Caption an image.
    Caption {
        image: PathBuf,
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        search: SearchArgs,
    },
    /// Answer a question about an image.
    Ask {
        image: PathBuf,
        question: String,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// ITC similarity of an image to each text.
    Match {
        image: PathBuf,
        #[arg(required = true)]
        texts: Vec<String>,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Run the bundle's golden self-test.
    Selftest {
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Latency per stage and per caption (p50/p95) and peak RSS, as JSON.
    Bench {
        #[command(flatten)]
        model: ModelArgs,
        /// Images to time (default: the bundle's self-test image).
        images: Vec<PathBuf>,
        #[arg(long, default_value_t = 20)]
        runs: usize,
        #[command(flatten)]
        search: SearchArgs,
        #[arg(long)]
        report: Option<PathBuf>,
    },
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

fn load(model: &ModelArgs) -> Result<Runtime> {
    let start = Instant::now();
    let runtime = Runtime::load(&model.bundle)?;
    eprintln!(
        "loaded {} in {:.0} ms",
        model.bundle.display(),
        start.elapsed().as_secs_f64() * 1e3
    );
    Ok(runtime)
}

fn encode(runtime: &Runtime, image: &Path) -> Result<edgevlm_device::runtime::EncodedImage> {
    let pixels = load_image(image)?;
    Ok(runtime.encode_image(&pixels)?)
}

fn report_start(state: &State) {
    match state.select() {
        Ok((slot, runtime, note)) => {
            if let Some(note) = note {
                eprintln!("agent: {note}");
            }
            eprintln!(
                "agent: running {} version {} from slot {}",
                runtime.manifest.name,
                runtime.manifest.model_version,
                slot.name()
            );
        }
        Err(e) => eprintln!("agent: {e}"),
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if cli.threads > 1 {
        use tract_linalg::multithread::{set_default_executor, Executor};
        set_default_executor(Executor::multithread(cli.threads));
    }
    match cli.command {
        Command::Info { bundle } => {
            let b = Bundle::read(&bundle)?;
            print!("{}", info::describe(&b, std::fs::metadata(&bundle)?.len()));
        }
        Command::Run { config, max_events } => {
            let cfg = edgevlm_device::run::DeviceConfig::load(&config)?;
            edgevlm_device::run::run(&cfg, max_events)?;
        }
        Command::Agent {
            config,
            state,
            listen,
            token,
            serial,
            baud,
            max_bundle_mb,
            max_installs,
        } => {
            let (from_config, config_token) = match &config {
                Some(path) => {
                    let (agent, token) = edgevlm_device::run::agent_settings(path)?;
                    (Some(agent), token)
                }
                None => (None, None),
            };
            let state = state
                .or_else(|| from_config.as_ref().map(|a| a.state.clone()))
                .context("--state or a config with an [agent] section is needed")?;
            let token = token.or(config_token).context(
                "no agent token: pass --token, set EDGEVLM_AGENT_TOKEN or agent.token_file in the config",
            )?;
            let listen = listen
                .or_else(|| from_config.as_ref().map(|a| a.listen.clone()))
                .unwrap_or_else(|| "127.0.0.1:7878".into());
            let max_bundle_mb = max_bundle_mb
                .or_else(|| from_config.as_ref().map(|a| a.max_bundle_mb))
                .unwrap_or(512);
            let state = State::open(&state)?;
            report_start(&state);
            let cfg = ServerConfig {
                listen,
                token,
                max_bundle: max_bundle_mb << 20,
                max_installs,
            };
            match serial.or_else(|| from_config.as_ref().and_then(|a| a.serial.clone())) {
                Some(port) => edgevlm_device::agent::serve_serial(&state, &cfg, &port, baud)?,
                None => edgevlm_device::agent::serve(&state, &cfg)?,
            }
        }
        Command::Install { state, bundle, sig } => {
            let state = State::open(&state)?;
            let sig_path = sig.unwrap_or_else(|| {
                let mut name = bundle.clone().into_os_string();
                name.push(".sig");
                name.into()
            });
            let bytes = std::fs::read(&bundle).with_context(|| format!("reading {}", bundle.display()))?;
            let sig = std::fs::read(&sig_path).with_context(|| format!("reading {}", sig_path.display()))?;
            let r = state.install(&bytes, &sig)?;
            println!(
                "installed {} version {} into slot {}",
                r.name,
                r.model_version,
                r.slot.name()
            );
        }
        Command::Start { state, command } => {
            let state = State::open(&state)?;
            let (slot, runtime, note) = state.select()?;
            if let Some(note) = note {
                eprintln!("{note}");
            }
            println!(
                "slot {}: {} version {}",
                slot.name(),
                runtime.manifest.name,
                runtime.manifest.model_version
            );
            if !command.is_empty() {
                drop(runtime);
                let exe = match state.executable(slot) {
                    Some(exe) => exe,
                    None => std::env::current_exe().context("locating edgevlm-device")?,
                };
                eprintln!("start: {} {}", exe.display(), command.join(" "));
                std::io::stdout().flush()?;
                use std::os::unix::process::CommandExt;
                let err = std::process::Command::new(&exe).args(&command).exec();
                return Err(err).with_context(|| format!("starting {}", exe.display()));
            }
        }
        Command::Unpack { bundle, out } => {
            let b = Bundle::read(&bundle)?;
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            b.unpack(&out)?;
            let manifest = out.join("manifest.json");
            std::fs::write(&manifest, serde_json::to_string_pretty(&b.manifest)?)?;
            println!(
                "{} files and manifest.json written to {}",
                b.manifest.files.len(),
                out.display()
            );
        }
        Command::Caption { image, model, search } => {
            let runtime = load(&model)?;
            let start = Instant::now();
            let encoded = encode(&runtime, &image)?;
            let caption = runtime.caption_with(&encoded, search.decoding(&runtime))?;
            println!("{caption}");
            eprintln!("{:.1} ms", start.elapsed().as_secs_f64() * 1e3);
        }
        Command::Ask {
            image,
            question,
            model,
        } => {
            let runtime = load(&model)?;
            let start = Instant::now();
            let answer = runtime.answer(&encode(&runtime, &image)?, &question)?;
            println!("{}", answer.answer);
            let top: Vec<String> = answer.top.iter().map(|(a, p)| format!("{a} {p:.3}")).collect();
            eprintln!(
                "{} ({:.1} ms)",
                top.join(", "),
                start.elapsed().as_secs_f64() * 1e3
            );
        }
        Command::Match { image, texts, model } => {
            let runtime = load(&model)?;
            let encoded = encode(&runtime, &image)?;
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            for (text, score) in texts.iter().zip(runtime.match_texts(&encoded, &refs)?) {
                println!("{score:.4}  {text}");
            }
        }
        Command::Selftest { model } => {
            let runtime = load(&model)?;
            let report = runtime.selftest()?;
            println!(
                "self-test passed: caption {:?}{}, embedding within {:.2e}",
                report.caption,
                report
                    .answer
                    .map(|a| format!(", answer {a:?}"))
                    .unwrap_or_default(),
                report.embedding_error
            );
        }
        Command::Bench {
            model,
            images,
            runs,
            search,
            report,
        } => {
            let runtime = load(&model)?;
            let result = bench::run(
                &runtime,
                &images,
                runs.max(1),
                search.decoding(&runtime),
                cli.threads,
            )?;
            let json = serde_json::to_string_pretty(&result)?;
            println!("{json}");
            if let Some(path) = report {
                std::fs::write(&path, &json).with_context(|| format!("writing {}", path.display()))?;
            }
        }
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

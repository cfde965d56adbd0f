//! Command-line interface of the firmware binary. `main.rs` only dispatches.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use edgevlm_device::runtime::Runtime;
use edgevlm_shared::caption::{Consensus, Decoding};

#[derive(Parser)]
#[command(
    name = "edgevlm-device",
    version,
    about = "edgevlm firmware: on-device captioning and VQA"
)]
pub struct Cli {
    /// Threads for tract's matrix products (1 = single-threaded).
    #[arg(long, global = true, default_value_t = 1)]
    pub threads: usize,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args)]
pub struct ModelArgs {
    /// Bundle written by `edgevlm export`.
    #[arg(long)]
    pub bundle: PathBuf,
}

/// What `explain` maps: an answer, a similarity to a text (by default the caption),
/// or the decoder's confidence in a word of a caption.
#[derive(Args)]
pub struct ExplainWhat {
    #[arg(long, conflicts_with_all = ["text", "word"])]
    pub question: Option<String>,
    #[arg(long, conflicts_with = "word")]
    pub text: Option<String>,
    /// A word of the caption: how sure the decoder is of it.
    #[arg(long)]
    pub word: Option<String>,
    /// The caption `--word` is read in (default: the bundle's own caption).
    #[arg(long, requires = "word")]
    pub caption: Option<String>,
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
pub enum Command {
    /// Print a bundle's manifest: graphs, files and checksums, vocabularies, self-test.
    Info { bundle: PathBuf },
    /// The device loop: trigger → capture → caption (+ questions) → JSON events.
    Run {
        #[arg(long)]
        config: PathBuf,
        /// Stop after this many events (0: run until killed).
        #[arg(long, default_value_t = 0)]
        max_events: u64,
        /// Stop once this many frames were captured and judged, fired or not (0: no
        /// limit): a folder of frames through the trigger, then exit.
        #[arg(long, default_value_t = 0)]
        max_frames: u64,
    },
    /// The update agent: receives signed bundles over TCP and installs them into
    /// A/B slots (verify, self-test, atomic switch).
    Agent(AgentArgs),
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
    /// Caption what happens in a clip: a folder of frames (in name order) or the
    /// frame files in order (a bundle exported from a clip model).
    CaptionClip {
        #[arg(required = true)]
        frames: Vec<PathBuf>,
        /// Play the clip backwards.
        #[arg(long)]
        reversed: bool,
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
    /// Judge whether a statement about an image is true (a bundle exported from a
    /// model fine-tuned with `edgevlm finetune reasoning`).
    Verify {
        image: PathBuf,
        statement: String,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// A conversation about an image: one question per line on stdin, one answer
    /// per line out, earlier rounds kept as the history.
    Chat {
        image: PathBuf,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Where the bundle looked: an occlusion map of its answer to a question, or of
    /// its similarity to a text (by default its own caption), as a PNG.
    Explain {
        image: PathBuf,
        #[command(flatten)]
        what: ExplainWhat,
        #[arg(long, default_value = "explain.png")]
        out: PathBuf,
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
        /// One more pass timed node by node: per graph, op and node, with GFLOP/s
        /// against this core's measured peak (Markdown tables on stderr).
        #[arg(long)]
        profile: bool,
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

#[derive(Args)]
pub struct AgentArgs {
    /// Device config whose [agent] section gives the state folder, address
    /// and token file (flags below override it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// State folder (trusted/*.pub, slots/, active).
    #[arg(long, required_unless_present = "config")]
    pub state: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7878, loopback only].
    #[arg(long)]
    pub listen: Option<String>,
    /// File holding the secret the host must present: one line of at least 16
    /// bytes (`openssl rand -hex 16 > agent.token`). The agent refuses to start without it.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Serve on this serial port instead of TCP (a UART cable from the host).
    #[arg(long)]
    pub serial: Option<String>,
    #[arg(long, default_value_t = 115_200)]
    pub baud: u32,
    /// Largest bundle accepted, in MiB [default: 512].
    #[arg(long)]
    pub max_bundle_mb: Option<u64>,
    /// Exit after this many installs (0: serve forever).
    #[arg(long, default_value_t = 0)]
    pub max_installs: usize,
    /// Seconds a peer has to show the token [default: 10].
    #[arg(long)]
    pub greeting_timeout: Option<f64>,
    /// Longest single wait for a peer's bytes, in seconds [default: 30].
    #[arg(long)]
    pub idle_timeout: Option<f64>,
    /// Longest conversation, in seconds; a transfer resumes in the next [default: 3600].
    #[arg(long)]
    pub session_timeout: Option<f64>,
    /// Peers served at once; the next is told to come back [default: 4].
    #[arg(long)]
    pub max_connections: Option<usize>,
}

//! `device.toml`: one file configures the loop (`run`) and the update agent
//! (`agent`). Relative paths are relative to the file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::events::EventsConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Name in every event and MQTT topic.
    #[serde(default = "default_name")]
    pub device: String,
    /// The model to run; without it, the agent's active slot (with rollback).
    /// It runs only with `BUNDLE.sig` by a key in `trusted` (or the agent's
    /// `state/trusted`), unless `unsigned_bundle` says otherwise.
    pub bundle: Option<PathBuf>,
    /// Folder of trusted ed25519 keys (`*.pub`) for `bundle` without an [agent].
    pub trusted: Option<PathBuf>,
    /// Runs `bundle` without a signature: for a bench, never for a board in the field.
    #[serde(default)]
    pub unsigned_bundle: bool,
    /// Loop period.
    #[serde(default = "default_tick")]
    pub tick_ms: u64,
    pub camera: CameraConfig,
    pub trigger: TriggerConfig,
    #[serde(default)]
    pub questions: Vec<String>,
    #[serde(default)]
    pub events: EventsConfig,
    /// Caption beam size; without it, the bundle's own decoding (beam and reranking).
    #[serde(default)]
    pub beam: Option<usize>,
    /// Keep the last N frames' image tokens and caption them as a clip when the
    /// trigger fires (a clip bundle; every tick then captures and encodes a frame).
    #[serde(default)]
    pub clip_frames: Option<usize>,
    pub agent: Option<AgentConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// State folder: trusted/*.pub, slots/, active.
    pub state: PathBuf,
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Serve on this serial port instead of TCP.
    pub serial: Option<String>,
    /// File holding the control token: one line of at least 16 bytes.
    pub token_file: Option<PathBuf>,
    #[serde(default = "default_max_bundle_mb")]
    pub max_bundle_mb: u64,
    /// Seconds a peer has to show the token [default: 10].
    pub greeting_timeout_s: Option<f64>,
    /// Longest single wait for a peer, in seconds [default: 30].
    pub idle_timeout_s: Option<f64>,
    /// Longest conversation, in seconds [default: 3600].
    pub session_timeout_s: Option<f64>,
    /// Peers served at once [default: 4].
    pub max_connections: Option<usize>,
}

fn default_name() -> String {
    "edgevlm".into()
}
fn default_tick() -> u64 {
    100
}
fn default_listen() -> String {
    "127.0.0.1:7878".into()
}
fn default_max_bundle_mb() -> u64 {
    512
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum CameraConfig {
    Still {
        path: PathBuf,
    },
    Directory {
        path: PathBuf,
        /// Also the files already there at start.
        #[serde(default)]
        existing: bool,
        /// How long a new file must stay unchanged before it is read (a file
        /// still being copied in is not a frame yet).
        #[serde(default = "default_settle_ms")]
        settle_ms: u64,
    },
    Synthetic {
        #[serde(default)]
        seed: u64,
        #[serde(default = "default_size")]
        size: u32,
    },
    /// A V4L2 device (`/dev/videoN`); needs the `v4l2` cargo feature.
    V4l2 {
        path: PathBuf,
        #[serde(default = "default_width")]
        width: u32,
        #[serde(default = "default_height")]
        height: u32,
        #[serde(default = "default_fps")]
        fps: u32,
        /// "mjpeg" or "yuyv".
        #[serde(default = "default_format")]
        format: String,
    },
}

fn default_settle_ms() -> u64 {
    crate::camera::DIRECTORY_SETTLE.as_millis() as u64
}
fn default_size() -> u32 {
    64
}
fn default_width() -> u32 {
    640
}
fn default_height() -> u32 {
    480
}
fn default_fps() -> u32 {
    15
}
fn default_format() -> String {
    "mjpeg".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum TriggerConfig {
    /// Every `every_ticks` ticks.
    Interval { every_ticks: u32 },
    /// Every frame the camera has (a directory camera: every new file).
    Frame,
    /// Frame differencing.
    Motion {
        threshold: f32,
        #[serde(default = "default_cooldown")]
        cooldown_frames: u32,
    },
    /// ITC similarity of the frame to `phrase` at least `min_similarity`.
    Text { phrase: String, min_similarity: f32 },
    /// A GPIO button: a line of a GPIO character device (`chip` + `line`), or a
    /// value file (`file`: sysfs GPIO's `value`, or one a test writes).
    Button {
        chip: Option<PathBuf>,
        line: Option<u32>,
        file: Option<PathBuf>,
        #[serde(default = "default_true")]
        active_low: bool,
        #[serde(default = "default_debounce")]
        debounce_ms: u32,
    },
}

impl TriggerConfig {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Interval { .. } => "interval",
            Self::Frame => "frame",
            Self::Motion { .. } => "motion",
            Self::Text { .. } => "text",
            Self::Button { .. } => "button",
        }
    }
}

fn default_cooldown() -> u32 {
    10
}
fn default_true() -> bool {
    true
}
fn default_debounce() -> u32 {
    30
}

impl DeviceConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut cfg: Self = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        cfg.bundle.iter_mut().for_each(rebase);
        cfg.trusted.iter_mut().for_each(rebase);
        cfg.events.file.iter_mut().for_each(rebase);
        if let Some(snapshot) = cfg.events.snapshot.as_mut() {
            rebase(&mut snapshot.dir);
            snapshot
                .check()
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        }
        if let Some(tls) = cfg.events.mqtt.as_mut().and_then(|m| m.tls.as_mut()) {
            tls.rebase(base);
        }
        match &mut cfg.camera {
            CameraConfig::Still { path } | CameraConfig::Directory { path, .. } => rebase(path),
            CameraConfig::Synthetic { .. } | CameraConfig::V4l2 { .. } => {}
        }
        if let TriggerConfig::Button { file, chip, line, .. } = &mut cfg.trigger {
            file.iter_mut().for_each(rebase);
            if file.is_some() == (chip.is_some() || line.is_some()) || chip.is_some() != line.is_some() {
                anyhow::bail!(
                    "{}: trigger.kind = \"button\" needs either `chip` and `line` or `file`",
                    path.display()
                );
            }
        }
        if let Some(agent) = &mut cfg.agent {
            rebase(&mut agent.state);
            agent.token_file.iter_mut().for_each(rebase);
        }
        if let Some(n) = cfg.clip_frames {
            if !(2..=super::clip::MAX_RING).contains(&n) {
                anyhow::bail!(
                    "{}: clip_frames = {n}: expected 2 to {} frames",
                    path.display(),
                    super::clip::MAX_RING
                );
            }
        }
        if cfg.bundle.is_none() && cfg.agent.is_none() {
            anyhow::bail!(
                "{}: set `bundle`, or an [agent] section whose active slot runs",
                path.display()
            );
        }
        Ok(cfg)
    }
}

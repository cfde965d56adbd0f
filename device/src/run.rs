//! `edgevlm-device run --config device.toml`: trigger → capture → caption (and the
//! configured questions) → one JSON event per capture. A bad frame or a failed
//! inference becomes an error event and the loop goes on.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edgevlm_shared::search::DecodeOptions;
use serde::{Deserialize, Serialize};

use crate::camera::{Camera, DirectoryCamera, Frame, StillCamera, SyntheticCamera};
use crate::runtime::Runtime;
use crate::trigger::{Interval, Motion, MotionConfig, Trigger};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Name in every event.
    #[serde(default = "default_name")]
    pub device: String,
    pub bundle: PathBuf,
    /// Loop period.
    #[serde(default = "default_tick")]
    pub tick_ms: u64,
    pub camera: CameraConfig,
    pub trigger: TriggerConfig,
    #[serde(default)]
    pub questions: Vec<String>,
    /// Events as JSON lines appended to this file; stdout when absent.
    pub events: Option<PathBuf>,
    #[serde(default = "default_beam")]
    pub beam: usize,
}

fn default_name() -> String {
    "edgevlm".into()
}
fn default_tick() -> u64 {
    100
}
fn default_beam() -> usize {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum CameraConfig {
    Still {
        path: PathBuf,
    },
    Directory {
        path: PathBuf,
        #[serde(default)]
        existing: bool,
    },
    Synthetic {
        #[serde(default)]
        seed: u64,
        #[serde(default = "default_size")]
        size: u32,
    },
}

fn default_size() -> u32 {
    64
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
    /// A GPIO button through the Linux GPIO character device.
    Button {
        chip: PathBuf,
        line: u32,
        #[serde(default = "default_true")]
        active_low: bool,
        #[serde(default = "default_debounce")]
        debounce_ms: u32,
    },
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
        // Relative paths are relative to the config file.
        let base = path.parent().unwrap_or(Path::new("."));
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        rebase(&mut cfg.bundle);
        if let Some(e) = cfg.events.as_mut() {
            rebase(e);
        }
        match &mut cfg.camera {
            CameraConfig::Still { path } | CameraConfig::Directory { path, .. } => rebase(path),
            CameraConfig::Synthetic { .. } => {}
        }
        Ok(cfg)
    }
}

#[derive(Debug, Serialize)]
pub struct QaResult {
    pub question: String,
    pub answer: String,
    pub probability: f32,
}

#[derive(Debug, Serialize, Default)]
pub struct Latency {
    pub capture_ms: f64,
    pub encode_ms: f64,
    pub caption_ms: f64,
    pub questions_ms: f64,
    pub total_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct Event {
    pub device: String,
    pub seq: u64,
    /// Unix time, milliseconds.
    pub time_ms: u128,
    pub trigger: String,
    pub source: Option<String>,
    pub caption: Option<String>,
    pub answers: Vec<QaResult>,
    pub error: Option<String>,
    pub latency: Latency,
}

/// Where a capture decision comes from, per tick.
enum Gate {
    Interval(Interval),
    Frame,
    Motion(Motion),
    Text { phrase: String, min: f32 },
    Button(Box<dyn Trigger<Error = String>>),
}

struct PinTrigger<T>(T);

impl<T: Trigger> Trigger for PinTrigger<T>
where
    T::Error: std::fmt::Debug,
{
    type Error = String;
    fn poll(&mut self) -> Result<bool, String> {
        self.0.poll().map_err(|e| format!("{e:?}"))
    }
}

fn button(chip: &Path, line: u32, active_low: bool, debounce_ms: u32, tick_ms: u64) -> anyhow::Result<Gate> {
    use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
    let mut chip = Chip::new(chip).map_err(|e| anyhow::anyhow!("{}: {e}", chip.display()))?;
    let handle = chip
        .get_line(line)
        .and_then(|l| l.request(LineRequestFlags::INPUT, 0, "edgevlm-device"))
        .map_err(|e| anyhow::anyhow!("GPIO line {line}: {e}"))?;
    let pin =
        linux_embedded_hal::CdevPin::new(handle).map_err(|e| anyhow::anyhow!("GPIO line {line}: {e}"))?;
    let cfg = crate::trigger::ButtonConfig {
        active_low,
        debounce_ms,
        poll_ms: tick_ms.max(1) as u32,
    };
    let b = crate::trigger::Button::new(pin, linux_embedded_hal::Delay, cfg);
    Ok(Gate::Button(Box::new(PinTrigger(b))))
}

fn camera(cfg: &CameraConfig) -> anyhow::Result<Box<dyn Camera>> {
    Ok(match cfg {
        CameraConfig::Still { path } => Box::new(StillCamera::new(path)),
        CameraConfig::Directory { path, existing } => Box::new(DirectoryCamera::new(path, *existing)?),
        CameraConfig::Synthetic { seed, size } => Box::new(SyntheticCamera::new(*seed, *size)),
    })
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

fn describe(
    runtime: &Runtime,
    cfg: &DeviceConfig,
    frame: &Frame,
    latency: &mut Latency,
) -> Result<(String, Vec<QaResult>), String> {
    let t = Instant::now();
    let encoded = runtime.encode_image(&frame.image).map_err(|e| e.to_string())?;
    latency.encode_ms = ms(t);
    let t = Instant::now();
    let opts = DecodeOptions {
        beam_size: cfg.beam.max(1),
        ..Default::default()
    };
    let caption = runtime.caption(&encoded, opts).map_err(|e| e.to_string())?;
    latency.caption_ms = ms(t);
    let t = Instant::now();
    let mut answers = Vec::new();
    for q in &cfg.questions {
        let a = runtime.answer(&encoded, q).map_err(|e| e.to_string())?;
        answers.push(QaResult {
            question: q.clone(),
            answer: a.answer,
            probability: a.probability,
        });
    }
    latency.questions_ms = ms(t);
    Ok((caption, answers))
}

/// Runs the loop until `max_events` events (0: forever) or the camera ends.
pub fn run(cfg: &DeviceConfig, max_events: u64) -> anyhow::Result<u64> {
    let runtime = Runtime::load(&cfg.bundle)?;
    let mut camera = camera(&cfg.camera)?;
    let mut gate = match &cfg.trigger {
        TriggerConfig::Interval { every_ticks } => Gate::Interval(Interval::new(*every_ticks)),
        TriggerConfig::Frame => Gate::Frame,
        TriggerConfig::Motion {
            threshold,
            cooldown_frames,
        } => Gate::Motion(Motion::new(MotionConfig {
            threshold: *threshold,
            cooldown_frames: *cooldown_frames,
            ..Default::default()
        })),
        TriggerConfig::Text {
            phrase,
            min_similarity,
        } => Gate::Text {
            phrase: phrase.clone(),
            min: *min_similarity,
        },
        TriggerConfig::Button {
            chip,
            line,
            active_low,
            debounce_ms,
        } => button(chip, *line, *active_low, *debounce_ms, cfg.tick_ms)?,
    };
    let mut sink: Box<dyn Write> = match &cfg.events {
        Some(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let trigger_name = format!("{:?}", cfg.trigger)
        .split([' ', '{'])
        .next()
        .unwrap_or("")
        .to_lowercase();
    let mut seq = 0u64;
    while max_events == 0 || seq < max_events {
        let tick = Instant::now();
        let start = Instant::now();
        let mut latency = Latency::default();
        // Triggers that look at frames capture every tick; the others only when fired.
        let captured: Option<Result<Option<Frame>, String>> = match &mut gate {
            Gate::Interval(t) => t
                .poll()
                .unwrap_or(false)
                .then(|| camera.capture().map_err(|e| e.to_string())),
            Gate::Button(b) => match b.poll() {
                Ok(true) => Some(camera.capture().map_err(|e| e.to_string())),
                Ok(false) => None,
                Err(e) => Some(Err(format!("button: {e}"))),
            },
            Gate::Frame => Some(camera.capture().map_err(|e| e.to_string())),
            Gate::Motion(m) => match camera.capture() {
                Ok(Some(frame)) => m.feed(&frame.image).then_some(Ok(Some(frame))),
                Ok(None) => None,
                Err(e) => Some(Err(e.to_string())),
            },
            Gate::Text { phrase, min } => match camera.capture() {
                Ok(Some(frame)) => {
                    let score = runtime
                        .encode_image(&frame.image)
                        .and_then(|enc| runtime.match_texts(&enc, &[phrase.as_str()]))
                        .map(|s| s[0]);
                    match score {
                        Ok(s) if s >= *min => Some(Ok(Some(frame))),
                        Ok(_) => None,
                        Err(e) => Some(Err(e.to_string())),
                    }
                }
                Ok(None) => None,
                Err(e) => Some(Err(e.to_string())),
            },
        };
        latency.capture_ms = ms(start);
        let outcome = match captured {
            None => None,
            // No frame yet (a directory camera waiting for files).
            Some(Ok(None)) => None,
            Some(Ok(Some(frame))) => Some((
                Some(frame.source.clone()),
                describe(&runtime, cfg, &frame, &mut latency),
            )),
            Some(Err(e)) => Some((None, Err(e))),
        };
        if let Some((source, result)) = outcome {
            latency.total_ms = ms(start);
            let (caption, answers, error) = match result {
                Ok((c, a)) => (Some(c), a, None),
                Err(e) => (None, Vec::new(), Some(e)),
            };
            let event = Event {
                device: cfg.device.clone(),
                seq,
                time_ms: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0),
                trigger: trigger_name.clone(),
                source,
                caption,
                answers,
                error,
                latency,
            };
            writeln!(sink, "{}", serde_json::to_string(&event)?)?;
            sink.flush()?;
            seq += 1;
        }
        std::thread::sleep(Duration::from_millis(cfg.tick_ms).saturating_sub(tick.elapsed()));
    }
    Ok(seq)
}

//! `edgevlm-device run --config device.toml`: trigger → capture → caption (and the
//! configured questions) → one event per capture to every sink. A bad frame or a
//! failed inference becomes an error event and the loop goes on.

mod asked;
mod clip;
mod config;
mod model;

pub use config::{AgentConfig, CameraConfig, DeviceConfig, TriggerConfig};

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::camera::{Camera, DirectoryCamera, Frame, StillCamera, SyntheticCamera};
use crate::events::{self, Event, Latency, QaResult, Sinks};
use crate::runtime::Runtime;
use crate::trigger::{Button, ButtonConfig, Interval, Motion, MotionConfig, Trigger, ValueFilePin};

/// Where a capture decision comes from, per tick.
enum Gate {
    Interval(Interval),
    Frame,
    Motion(Motion),
    /// The phrase's ITC embedding, computed once at start.
    Text {
        phrase: Vec<f32>,
        min: f32,
    },
    Button(Box<dyn Trigger<Error = String>>),
}

/// Erases a trigger's error type so that pins of any HAL fit one gate.
struct Boxed<T>(T);

impl<T: Trigger> Trigger for Boxed<T>
where
    T::Error: std::fmt::Debug,
{
    type Error = String;
    fn poll(&mut self) -> Result<bool, String> {
        self.0.poll().map_err(|e| format!("{e:?}"))
    }
}

/// A debounced button on a value-file pin (`file`) or a GPIO character-device line.
fn button_gate(
    file: Option<&Path>,
    chip_line: Option<(&Path, u32)>,
    cfg: ButtonConfig,
) -> anyhow::Result<Gate> {
    let delay = linux_embedded_hal::Delay;
    if let Some(file) = file {
        let pin = ValueFilePin::new(file);
        return Ok(Gate::Button(Box::new(Boxed(Button::new(pin, delay, cfg)))));
    }
    let Some((chip, line)) = chip_line else {
        anyhow::bail!("trigger.kind = \"button\" needs `chip` and `line`, or `file`");
    };
    use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
    let handle = Chip::new(chip)
        .and_then(|mut c| c.get_line(line))
        .and_then(|l| l.request(LineRequestFlags::INPUT, 0, "edgevlm-device"))
        .map_err(|e| anyhow::anyhow!("GPIO {} line {line}: {e}", chip.display()))?;
    let pin = linux_embedded_hal::CdevPin::new(handle)
        .map_err(|e| anyhow::anyhow!("GPIO {} line {line}: {e}", chip.display()))?;
    Ok(Gate::Button(Box::new(Boxed(Button::new(pin, delay, cfg)))))
}

/// The trigger; a text trigger's `phrase` is its phrase's embedding.
fn gate(cfg: &DeviceConfig, phrase: Option<Vec<f32>>) -> anyhow::Result<Gate> {
    Ok(match &cfg.trigger {
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
        TriggerConfig::Text { min_similarity, .. } => Gate::Text {
            phrase: phrase
                .ok_or_else(|| anyhow::anyhow!("trigger.phrase: the text encoder gave no embedding"))?,
            min: *min_similarity,
        },
        TriggerConfig::Button {
            chip,
            line,
            file,
            active_low,
            debounce_ms,
        } => button_gate(
            file.as_deref(),
            chip.as_deref().zip(*line),
            ButtonConfig {
                active_low: *active_low,
                debounce_ms: *debounce_ms,
                poll_ms: cfg.tick_ms.max(1) as u32,
            },
        )?,
    })
}

fn camera(cfg: &CameraConfig) -> anyhow::Result<Box<dyn Camera>> {
    Ok(match cfg {
        CameraConfig::Still { path } => Box::new(StillCamera::new(path)),
        CameraConfig::Directory {
            path,
            existing,
            settle_ms,
        } => Box::new(DirectoryCamera::new(
            path,
            *existing,
            Duration::from_millis(*settle_ms),
        )?),
        CameraConfig::Synthetic { seed, size } => Box::new(SyntheticCamera::new(*seed, *size)),
        CameraConfig::V4l2 {
            path,
            width,
            height,
            fps,
            format,
        } => crate::camera::v4l2(path, *width, *height, *fps, format)?,
    })
}

/// Now as Unix time in milliseconds (0 on a clock set before 1970).
fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// A frame to describe, with the trigger's score; `Err` when capture failed.
type Captured = Result<(Frame, Option<f32>), String>;

/// Polls the trigger (capturing when it needs frames to decide); `None`: no event.
fn poll(gate: &mut Gate, camera: &mut dyn Camera, runtime: &Runtime) -> Option<Captured> {
    let capture = |camera: &mut dyn Camera| match camera.capture() {
        Ok(Some(frame)) => Some(Ok((frame, None))),
        // No frame yet (a directory camera waiting for files).
        Ok(None) => None,
        Err(e) => Some(Err(e.to_string())),
    };
    match gate {
        Gate::Interval(t) => t.poll().unwrap_or(false).then(|| capture(camera)).flatten(),
        Gate::Button(b) => match b.poll() {
            Ok(true) => capture(camera),
            Ok(false) => None,
            Err(e) => Some(Err(format!("button: {e}"))),
        },
        Gate::Frame => capture(camera),
        Gate::Motion(m) => match capture(camera)? {
            Ok((frame, _)) => m.feed(&frame.image).then_some(Ok((frame, None))),
            Err(e) => Some(Err(e)),
        },
        Gate::Text { phrase, min } => match capture(camera)? {
            Ok((frame, _)) => {
                let score = runtime.encode_image(&frame.image).map(|enc| {
                    enc.embedding
                        .iter()
                        .zip(phrase.iter())
                        .map(|(a, b)| a * b)
                        .sum::<f32>()
                });
                match score {
                    Ok(s) if s >= *min => Some(Ok((frame, Some(s)))),
                    Ok(_) => None,
                    Err(e) => Some(Err(e.to_string())),
                }
            }
            Err(e) => Some(Err(e)),
        },
    }
}

/// The frame as a capped JPEG, when snapshots are on.
fn snapshot(cfg: &DeviceConfig, frame: &Frame) -> Option<Vec<u8>> {
    let max_bytes = cfg.events.snapshot.as_ref()?.max_bytes;
    events::snapshot::jpeg(&frame.image, max_bytes)
        .map_err(|e| eprintln!("run: snapshot: {e}"))
        .ok()
}

/// The bundle's decoding, with the config's beam when it sets one.
fn decoding(runtime: &Runtime, cfg: &DeviceConfig) -> edgevlm_shared::caption::Decoding {
    let mut decoding = runtime.decoding();
    if let Some(beam) = cfg.beam {
        decoding.beam_size = beam.max(1);
    }
    decoding
}

/// [`decoding`]'s beam search, for clip captions (never reranked: the caption
/// memory holds captions of single images).
fn search_options(runtime: &Runtime, cfg: &DeviceConfig) -> edgevlm_shared::search::DecodeOptions {
    decoding(runtime, cfg).search(runtime.manifest.decoder.max_len)
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
    let caption = runtime
        .caption_with(&encoded, decoding(runtime, cfg))
        .map_err(|e| e.to_string())?;
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

/// When the loop stops; 0 means no limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub max_events: u64,
    /// Frames captured, whether the trigger fired on them or not.
    pub max_frames: u64,
}

/// Counts the frames a camera gives.
struct Counted<'r> {
    camera: clip::Ringed<'r>,
    frames: u64,
}

impl Camera for Counted<'_> {
    fn capture(&mut self) -> Result<Option<Frame>, crate::camera::CameraError> {
        let frame = self.camera.capture()?;
        self.frames += u64::from(frame.is_some());
        Ok(frame)
    }
}

/// Runs the loop until a limit is reached (none: forever); returns the events sent.
pub fn run(cfg: &DeviceConfig, limits: Limits) -> anyhow::Result<u64> {
    let Limits {
        max_events,
        max_frames,
    } = limits;
    let phrases: Vec<&str> = match &cfg.trigger {
        TriggerConfig::Text { phrase, .. } => vec![phrase.as_str()],
        _ => Vec::new(),
    };
    let answering = !cfg.questions.is_empty() || cfg.events.mqtt.as_ref().is_some_and(|m| m.ask);
    let (runtime, mut embeddings) = model::load(cfg, &phrases, answering)?;
    crate::runtime::keep_blocks_for_reuse();
    let ring = match cfg.clip_frames {
        None => None,
        Some(_) if runtime.clip_frames().is_none() => anyhow::bail!(
            "clip_frames is set, but the bundle captions single images, not clips (export a model \
             fine-tuned with `edgevlm finetune clip-caption`)"
        ),
        Some(n) => Some((clip::ClipRing::new(n), &runtime)),
    };
    let mut camera = Counted {
        camera: clip::Ringed {
            camera: camera(&cfg.camera)?,
            ring,
        },
        frames: 0,
    };
    let mut gate = gate(cfg, embeddings.pop())?;
    let mut sinks = Sinks::open(&cfg.events, &cfg.device, &cfg.questions)?;
    let mut asked = asked::Asked::new(cfg.events.mqtt.as_ref().and_then(|m| m.conversation()));
    let mut seq = 0u64;
    let mut frames_trimmed = 0;
    while (max_events == 0 || seq < max_events) && (max_frames == 0 || camera.frames < max_frames) {
        let tick = Instant::now();
        // Only a frame's inference churns the heap; an idle tick leaves it alone.
        if camera.frames != frames_trimmed {
            frames_trimmed = camera.frames;
            crate::runtime::bound_free_heap();
        }
        asked.extend(sinks.asked());
        for answered in asked.answer(&cfg.device, &mut camera, &runtime) {
            sinks.answer(&answered)?;
        }
        let mut latency = Latency::default();
        // The clip needs every tick's frame; these gates capture only when they fire.
        if camera.camera.ring.is_some() && matches!(gate, Gate::Interval(_) | Gate::Button(_)) {
            if let Err(e) = camera.capture() {
                eprintln!("run: clip ring: {e}");
            }
        }
        let Some(captured) = poll(&mut gate, &mut camera, &runtime) else {
            std::thread::sleep(Duration::from_millis(cfg.tick_ms).saturating_sub(tick.elapsed()));
            continue;
        };
        latency.capture_ms = ms(tick);
        asked.new_capture();
        let (source, score, result, jpeg) = match captured {
            Ok((frame, score)) => (
                Some(frame.source.clone()),
                score,
                describe(&runtime, cfg, &frame, &mut latency),
                snapshot(cfg, &frame),
            ),
            Err(e) => (None, None, Err(e), None),
        };
        let clip_caption = match (&result, &camera.camera.ring) {
            (Ok(_), Some((ring, runtime))) => {
                let t = Instant::now();
                let caption = ring.caption(runtime, search_options(runtime, cfg));
                latency.clip_ms = Some(ms(t));
                match caption {
                    Some(Ok(caption)) => Some(caption),
                    Some(Err(e)) => {
                        eprintln!("run: clip caption: {e}");
                        None
                    }
                    None => None,
                }
            }
            _ => None,
        };
        latency.total_ms = ms(tick);
        // Saved and published before the event, so whoever the event wakes finds it.
        let snapshot = jpeg.and_then(|jpeg| {
            let dir = &cfg.events.snapshot.as_ref()?.dir;
            let saved = events::snapshot::save(dir, seq, &jpeg)
                .map_err(|e| eprintln!("run: snapshot into {}: {e}", dir.display()))
                .ok();
            sinks.snapshot(jpeg);
            saved
        });
        let (caption, answers, error) = match result {
            Ok((c, a)) => (Some(c), a, None),
            Err(e) => (None, Vec::new(), Some(e)),
        };
        sinks.send(&Event {
            device: cfg.device.clone(),
            seq,
            time_ms: unix_ms(),
            trigger: cfg.trigger.name().into(),
            trigger_score: score,
            source,
            caption,
            clip_caption,
            answers,
            error,
            latency,
            snapshot,
        })?;
        seq += 1;
        std::thread::sleep(Duration::from_millis(cfg.tick_ms).saturating_sub(tick.elapsed()));
    }
    Ok(seq)
}

/// The agent's settings from a device config: state folder, address, token.
pub fn agent_settings(path: &Path) -> anyhow::Result<AgentConfig> {
    let cfg = DeviceConfig::load(path)?;
    let Some(agent) = cfg.agent else {
        anyhow::bail!("{}: no [agent] section", path.display());
    };
    Ok(agent)
}

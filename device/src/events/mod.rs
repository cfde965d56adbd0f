//! What the device reports: one JSON event per capture (caption, answers, stage
//! latencies or the error), delivered to every configured sink: stdout or a file
//! as JSON lines, a serial port, and an MQTT broker; with snapshots on, the frame
//! too (a JPEG file named in the event, and an MQTT camera).

mod mqtt;
mod serial;
pub mod snapshot;

pub use mqtt::{
    read_packet, MqttConfig, MqttError, MqttSink, MqttTls, Packet, PacketError, ASKED, MAX_INCOMING,
    MAX_QUESTION,
};
pub use serial::SerialSink;
pub use snapshot::SnapshotConfig;

use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize)]
pub struct QaResult {
    pub question: String,
    pub answer: String,
    pub probability: f32,
}

/// Milliseconds per stage of one capture.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Latency {
    /// Capture, plus the trigger's own work (a text trigger encodes the frame).
    pub capture_ms: f64,
    pub encode_ms: f64,
    pub caption_ms: f64,
    pub questions_ms: f64,
    /// The clip caption's temporal encoder and decoding (`clip_frames`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_ms: Option<f64>,
    pub total_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub device: String,
    pub seq: u64,
    /// Unix time, milliseconds.
    pub time_ms: u128,
    pub trigger: String,
    /// The trigger's measurement when it has one (a text trigger's similarity).
    pub trigger_score: Option<f32>,
    pub source: Option<String>,
    pub caption: Option<String>,
    /// What happened over the last frames (`clip_frames`), when the loop keeps them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_caption: Option<String>,
    pub answers: Vec<QaResult>,
    pub error: Option<String>,
    pub latency: Latency,
    /// The frame's JPEG file, when snapshots are on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<PathBuf>,
}

/// The answer to a question asked over MQTT, from the first frame after it came.
#[derive(Debug, Clone, Serialize)]
pub struct Answered {
    pub device: String,
    pub question: String,
    pub answer: Option<String>,
    pub probability: Option<f32>,
    /// Unix time of the frame, milliseconds.
    pub time_ms: u128,
    pub source: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// JSON lines on stdout (the default when no other sink is configured).
    pub stdout: Option<bool>,
    /// JSON lines appended to this file.
    pub file: Option<PathBuf>,
    pub serial: Option<SerialConfig>,
    pub mqtt: Option<MqttConfig>,
    /// Each event's frame as a JPEG (a file, and over MQTT a camera): off unless
    /// this section is present, for privacy.
    pub snapshot: Option<SnapshotConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialConfig {
    pub port: String,
    #[serde(default = "default_baud")]
    pub baud: u32,
}

fn default_baud() -> u32 {
    115_200
}

/// Every configured destination. A sink that fails is reported on stderr and
/// the others still get the event: reporting must never stop the loop.
pub struct Sinks {
    lines: Vec<(String, Box<dyn Write>)>,
    serial: Option<(String, SerialSink<linux_embedded_hal::Serial>)>,
    mqtt: Option<MqttSink>,
}

impl Sinks {
    pub fn open(cfg: &EventsConfig, device: &str, questions: &[String]) -> anyhow::Result<Self> {
        let mut lines: Vec<(String, Box<dyn Write>)> = Vec::new();
        if let Some(path) = &cfg.file {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("events file {}: {e}", path.display()))?;
            lines.push((path.display().to_string(), Box::new(file)));
        }
        let others = cfg.file.is_some() || cfg.serial.is_some() || cfg.mqtt.is_some();
        if cfg.stdout.unwrap_or(!others) {
            lines.push(("stdout".into(), Box::new(std::io::stdout())));
        }
        let serial = match &cfg.serial {
            Some(s) => {
                let uart = linux_embedded_hal::Serial::open(s.port.clone(), s.baud)
                    .map_err(|e| anyhow::anyhow!("serial port {}: {e}", s.port))?;
                Some((s.port.clone(), SerialSink::new(uart)))
            }
            None => None,
        };
        let mqtt = cfg
            .mqtt
            .as_ref()
            .map(|m| MqttSink::start(m, device, questions, cfg.snapshot.is_some()))
            .transpose()?;
        Ok(Self { lines, serial, mqtt })
    }

    /// Questions asked over MQTT since the last call.
    pub fn asked(&mut self) -> Vec<String> {
        self.mqtt.as_mut().map(MqttSink::take_asked).unwrap_or_default()
    }

    /// An answer goes back where its question came from: the broker.
    pub fn answer(&mut self, answered: &Answered) -> anyhow::Result<()> {
        let json = serde_json::to_string(answered)?;
        if let Some(mqtt) = &mut self.mqtt {
            if let Err(e) = mqtt.publish_answer(&json) {
                eprintln!("events: {e}");
            }
        }
        Ok(())
    }

    /// An event's frame: to the broker, retained, for the camera entity.
    pub fn snapshot(&mut self, jpeg: Vec<u8>) {
        if let Some(mqtt) = &mut self.mqtt {
            if let Err(e) = mqtt.publish_snapshot(jpeg) {
                eprintln!("events: {e}");
            }
        }
    }

    pub fn send(&mut self, event: &Event) -> anyhow::Result<()> {
        let json = serde_json::to_string(event)?;
        for (name, sink) in &mut self.lines {
            if let Err(e) = writeln!(sink, "{json}").and_then(|()| sink.flush()) {
                eprintln!("events: {name}: {e}");
            }
        }
        if let Some((port, sink)) = &mut self.serial {
            if let Err(e) = sink.write_line(&json) {
                eprintln!("events: serial port {port}: {e}");
            }
        }
        if let Some(mqtt) = &mut self.mqtt {
            if let Err(e) = mqtt.publish_event(&json) {
                eprintln!("events: {e}");
            }
        }
        Ok(())
    }
}

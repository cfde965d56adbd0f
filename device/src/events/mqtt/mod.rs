//! A small MQTT 3.1.1 client (no async runtime on the board): connect with a
//! last will, publish at QoS 0 or 1, keep-alive pings. Events go to
//! `PREFIX/DEVICE/event` (the device name with anything but letters and digits
//! made `_`); Home Assistant finds the device through retained discovery
//! messages under `homeassistant/`. Questions published to `PREFIX/DEVICE/ask`
//! reach the camera loop, which answers them on its next frame to
//! `PREFIX/DEVICE/answer`.
//!
//! The connection lives on its own thread behind a bounded queue: a broker that
//! is down, slow or hostile never holds up the camera loop or the other sinks.
//! While it is unreachable the thread retries with a growing pause and keeps the
//! newest [`QUEUE`] events; older ones are dropped and counted.

mod client;
mod discovery;
mod packet;
mod tls;

use std::collections::VecDeque;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Deserialize;

use client::Connection;
pub use packet::{read_packet, Packet, PacketError, MAX_INCOMING};
pub use tls::MqttTls;
use tls::Tls;

/// Events kept while the broker is unreachable.
pub const QUEUE: usize = 64;
/// Questions waiting for a frame; more are dropped until the loop catches up.
pub const ASKED: usize = 8;
/// Longest question taken from the ask topic, in bytes.
pub const MAX_QUESTION: usize = 256;
/// How often the connection's thread looks for questions from the broker.
const ASK_POLL: Duration = Duration::from_millis(50);
/// Longest pause between two connection attempts.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(60);
/// Longest wait at shutdown for the last events and the offline status.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("MQTT broker {broker}: {source}")]
    Io {
        broker: String,
        #[source]
        source: std::io::Error,
    },
    #[error("MQTT broker {broker}: {source}")]
    Packet {
        broker: String,
        #[source]
        source: PacketError,
    },
    #[error("MQTT broker {broker} refused the connection: {reason}")]
    Refused { broker: String, reason: &'static str },
    #[error("MQTT broker {broker}: sent {found} (expected {expected})")]
    Protocol {
        broker: String,
        found: &'static str,
        expected: &'static str,
    },
    #[error("MQTT: {0}")]
    Config(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// Topics are `PREFIX/DEVICE/{event,status}`.
    #[serde(default = "default_prefix")]
    pub topic_prefix: String,
    /// Home Assistant's discovery prefix; empty turns discovery off.
    #[serde(default = "default_discovery")]
    pub discovery_prefix: String,
    pub username: Option<String>,
    pub password: Option<String>,
    #[serde(default = "default_qos")]
    pub qos: u8,
    #[serde(default = "default_keep_alive")]
    pub keep_alive_s: u16,
    /// TLS to the broker (set `port`, usually 8883).
    pub tls: Option<MqttTls>,
    /// Answer questions published to `PREFIX/DEVICE/ask` (and offer Home
    /// Assistant a text entity to ask from).
    #[serde(default = "default_ask")]
    pub ask: bool,
    /// Seconds after an answer in which a further question continues the
    /// conversation about the same frame, read with the earlier rounds (for bundles
    /// fine-tuned with `edgevlm finetune dialog`); 0: each question is asked alone of
    /// a fresh frame. A new frame taken by the loop ends a conversation too.
    #[serde(default)]
    pub conversation_s: u16,
}

impl MqttConfig {
    /// The conversation window, if conversations are on.
    pub fn conversation(&self) -> Option<Duration> {
        (self.conversation_s > 0).then(|| Duration::from_secs(u64::from(self.conversation_s)))
    }
}

fn default_port() -> u16 {
    1883
}
fn default_prefix() -> String {
    "edgevlm".into()
}
fn default_discovery() -> String {
    "homeassistant".into()
}
fn default_qos() -> u8 {
    1
}
fn default_keep_alive() -> u16 {
    60
}
fn default_ask() -> bool {
    true
}

/// What the camera loop hands the connection's thread.
enum Outgoing {
    Event(String),
    Answer(String),
    /// A JPEG: only the newest waits (the topic is retained), so at most one
    /// frame's bytes are held for an absent broker.
    Snapshot(Vec<u8>),
}

/// What the device publishes, and where.
struct Publisher {
    cfg: MqttConfig,
    device: String,
    questions: Vec<String>,
    /// Announce a camera entity reading the snapshot topic.
    snapshots: bool,
    tls: Option<Tls>,
    /// Where questions from the ask topic go, for the camera loop.
    asked: SyncSender<String>,
}

/// The camera loop's end of the publisher: events go into a bounded queue that
/// the connection's thread drains.
pub struct MqttSink {
    queue: Option<SyncSender<Outgoing>>,
    asked: mpsc::Receiver<String>,
    worker: Option<JoinHandle<()>>,
    finished: mpsc::Receiver<()>,
    event_topic: String,
    dropped: u64,
}

impl MqttSink {
    /// Starts the publisher; it connects (and reconnects) on its own thread, so
    /// a broker that is down at start delays nothing. Only unreadable TLS files
    /// fail here.
    pub fn start(
        cfg: &MqttConfig,
        device: &str,
        questions: &[String],
        snapshots: bool,
    ) -> Result<Self, MqttError> {
        let tls = cfg.tls.as_ref().map(|t| Tls::load(t, &cfg.host)).transpose()?;
        let (asked_tx, asked) = mpsc::sync_channel(ASKED);
        let publisher = Publisher {
            cfg: cfg.clone(),
            device: device.to_string(),
            questions: questions.to_vec(),
            snapshots,
            tls,
            asked: asked_tx,
        };
        let event_topic = publisher.event_topic();
        let (queue, events) = mpsc::sync_channel(QUEUE);
        let (done, finished) = mpsc::channel();
        let worker = std::thread::Builder::new()
            .name("mqtt".into())
            .spawn(move || {
                publisher.serve(events);
                let _ = done.send(());
            })
            .ok();
        Ok(Self {
            queue: Some(queue),
            asked,
            worker,
            finished,
            event_topic,
            dropped: 0,
        })
    }

    pub fn event_topic(&self) -> String {
        self.event_topic.clone()
    }

    /// Queues one event; a full queue (the broker away for a long time) drops it.
    pub fn publish_event(&mut self, json: &str) -> Result<(), MqttError> {
        self.queue(Outgoing::Event(json.to_string()))
    }

    /// Queues the answer to a question from the ask topic.
    pub fn publish_answer(&mut self, json: &str) -> Result<(), MqttError> {
        self.queue(Outgoing::Answer(json.to_string()))
    }

    /// Queues an event's frame for the snapshot topic.
    pub fn publish_snapshot(&mut self, jpeg: Vec<u8>) -> Result<(), MqttError> {
        self.queue(Outgoing::Snapshot(jpeg))
    }

    /// Questions that arrived on the ask topic since the last call.
    pub fn take_asked(&mut self) -> Vec<String> {
        self.asked.try_iter().collect()
    }

    fn queue(&mut self, outgoing: Outgoing) -> Result<(), MqttError> {
        let Some(queue) = &self.queue else {
            return Err(MqttError::Config("the publisher is closed".into()));
        };
        match queue.try_send(outgoing) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.dropped += 1;
                Err(MqttError::Config(format!(
                    "{} events waiting for the broker; dropped this one ({} so far)",
                    QUEUE, self.dropped
                )))
            }
            Err(TrySendError::Disconnected(_)) => {
                Err(MqttError::Config("the publisher's thread stopped".into()))
            }
        }
    }

    /// Sends what is queued, marks the device offline and disconnects, waiting
    /// at most [`CLOSE_WAIT`].
    pub fn close(&mut self) {
        self.queue = None;
        if self.finished.recv_timeout(CLOSE_WAIT).is_ok() {
            if let Some(worker) = self.worker.take() {
                let _ = worker.join();
            }
        }
    }
}

impl Drop for MqttSink {
    fn drop(&mut self) {
        if self.queue.is_some() {
            self.close();
        }
    }
}

impl Publisher {
    fn event_topic(&self) -> String {
        format!("{}/{}/event", self.cfg.topic_prefix, sanitize(&self.device))
    }

    fn answer_topic(&self) -> String {
        format!("{}/{}/answer", self.cfg.topic_prefix, sanitize(&self.device))
    }

    fn snapshot_topic(&self) -> String {
        format!("{}/{}/snapshot", self.cfg.topic_prefix, sanitize(&self.device))
    }

    fn ask_topic(&self) -> String {
        format!("{}/{}/ask", self.cfg.topic_prefix, sanitize(&self.device))
    }

    fn status_topic(&self) -> String {
        format!("{}/{}/status", self.cfg.topic_prefix, sanitize(&self.device))
    }

    fn broker(&self) -> String {
        format!("{}:{}", self.cfg.host, self.cfg.port)
    }

    /// Connects, subscribes to the ask topic, marks the device online and
    /// publishes the discovery messages.
    fn connect(&self) -> Result<Connection, MqttError> {
        let broker = self.broker();
        let io = |source| MqttError::Io {
            broker: broker.clone(),
            source,
        };
        let socket = client::dial(&self.cfg.host, self.cfg.port).map_err(io)?;
        let stream = match &self.tls {
            Some(tls) => tls.wrap(socket, &broker)?,
            None => Box::new(socket),
        };
        let packet = packet::connect_packet(
            &format!("edgevlm-{}", sanitize(&self.device)),
            self.cfg.keep_alive_s,
            (&self.status_topic(), b"offline"),
            self.cfg.username.as_deref(),
            self.cfg.password.as_deref(),
        )
        .map_err(|source| MqttError::Packet {
            broker: broker.clone(),
            source,
        })?;
        let mut conn = Connection::handshake(broker.clone(), stream, &packet)?;
        // Subscribed before it says online: a question asked once the device is
        // online is never missed.
        if self.cfg.ask {
            conn.subscribe(&self.ask_topic())?;
        }
        conn.publish(&self.status_topic(), b"online", 1, true)?;
        if !self.cfg.discovery_prefix.is_empty() {
            for (topic, payload) in self.discovery() {
                conn.publish(&topic, payload.as_bytes(), 1, true)?;
            }
        }
        Ok(conn)
    }

    /// The connection's thread: publishes queued events in order, pings between
    /// them, reconnects with a growing pause; once the queue is closed, sends
    /// what is left (one more attempt to connect if needed) and says offline.
    fn serve(&self, events: mpsc::Receiver<Outgoing>) {
        let keep_alive = Duration::from_secs(u64::from(self.cfg.keep_alive_s));
        let tick = if keep_alive.is_zero() {
            Duration::from_secs(30)
        } else {
            keep_alive / 2
        };
        let mut pending: VecDeque<Outgoing> = VecDeque::new();
        let mut conn: Option<Connection> = None;
        let mut pause = Duration::from_secs(1);
        let mut next_try = Instant::now();
        loop {
            if conn.is_none() && Instant::now() >= next_try {
                match self.connect() {
                    Ok(c) => {
                        conn = Some(c);
                        pause = Duration::from_secs(1);
                    }
                    Err(e) => {
                        eprintln!("events: {e}; trying again in {} s", pause.as_secs());
                        next_try = Instant::now() + pause;
                        pause = (pause * 2).min(MAX_RETRY_PAUSE);
                    }
                }
            }
            if let Some(c) = conn.as_mut() {
                if let Err(e) = self.flush(c, &mut pending) {
                    eprintln!("events: {e}; reconnecting");
                    conn = None;
                    next_try = Instant::now();
                    continue;
                }
            }
            let wait = match conn {
                Some(_) if self.cfg.ask => tick.min(ASK_POLL),
                Some(_) => tick,
                None => next_try.saturating_duration_since(Instant::now()),
            };
            if let (Some(c), true) = (conn.as_mut(), self.cfg.ask) {
                match c.poll(ASK_POLL) {
                    Ok(()) => self.hand_over(c.take_inbox()),
                    Err(e) => {
                        eprintln!("events: {e}; reconnecting");
                        conn = None;
                        next_try = Instant::now();
                        continue;
                    }
                }
            }
            match events.recv_timeout(wait) {
                Ok(event) => {
                    if matches!(event, Outgoing::Snapshot(_)) {
                        pending.retain(|o| !matches!(o, Outgoing::Snapshot(_)));
                    }
                    if pending.len() == QUEUE {
                        pending.pop_front();
                        eprintln!("events: the broker is away; dropped the oldest waiting event");
                    }
                    pending.push_back(event);
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(c) = conn.as_mut() {
                        if let Err(e) = c.keep_alive(keep_alive) {
                            eprintln!("events: {e}; reconnecting");
                            conn = None;
                        }
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let conn = match conn {
            Some(c) => Some(c),
            None if !pending.is_empty() => self.connect().ok(),
            None => None,
        };
        if let Some(mut c) = conn {
            if self.flush(&mut c, &mut pending).is_ok() {
                let _ = c.publish(&self.status_topic(), b"offline", 0, true);
            }
            c.disconnect();
        }
        if !pending.is_empty() {
            eprintln!("events: {} events never reached the broker", pending.len());
        }
    }

    /// Publishes the waiting events and answers in order, each removed once
    /// acknowledged; questions that arrive meanwhile go to the loop.
    fn flush(&self, conn: &mut Connection, pending: &mut VecDeque<Outgoing>) -> Result<(), MqttError> {
        let (events, answers, snapshots) = (self.event_topic(), self.answer_topic(), self.snapshot_topic());
        while let Some(outgoing) = pending.front() {
            let (topic, payload, retain) = match outgoing {
                Outgoing::Event(json) => (&events, json.as_bytes(), false),
                Outgoing::Answer(json) => (&answers, json.as_bytes(), false),
                Outgoing::Snapshot(jpeg) => (&snapshots, jpeg.as_slice(), true),
            };
            conn.publish(topic, payload, self.cfg.qos.min(1), retain)?;
            pending.pop_front();
        }
        self.hand_over(conn.take_inbox());
        Ok(())
    }

    /// Questions from the ask topic to the camera loop: text of at most
    /// [`MAX_QUESTION`] bytes, at most [`ASKED`] waiting; anything else is
    /// reported and dropped.
    fn hand_over(&self, messages: Vec<(String, Vec<u8>)>) {
        let ask = self.ask_topic();
        for (topic, payload) in messages {
            if topic != ask {
                continue;
            }
            let question = match std::str::from_utf8(&payload) {
                Ok(q) if !q.trim().is_empty() && payload.len() <= MAX_QUESTION => q.trim(),
                _ => {
                    eprintln!(
                        "events: ignored a message on {ask}: expected a question of 1 to \
                         {MAX_QUESTION} bytes of UTF-8 text, got {} bytes",
                        payload.len()
                    );
                    continue;
                }
            };
            if self.asked.try_send(question.to_string()).is_err() {
                eprintln!("events: {ASKED} questions wait for a frame already; dropped {question:?}");
            }
        }
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

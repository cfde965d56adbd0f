//! A small MQTT 3.1.1 publisher (no async runtime on the board): connect with a
//! last will, publish at QoS 0 or 1, keep-alive pings, and one reconnect per
//! failed publish. Events go to `PREFIX/DEVICE/event` (the device name with
//! anything but letters and digits made `_`); Home Assistant finds the
//! device through retained discovery messages under `homeassistant/`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("MQTT broker {broker}: {source}")]
    Io {
        broker: String,
        #[source]
        source: std::io::Error,
    },
    #[error("MQTT broker {broker} refused the connection: {reason}")]
    Refused { broker: String, reason: &'static str },
    #[error("MQTT broker {broker}: unexpected packet type {packet_type:#x} (expected {expected})")]
    Protocol {
        broker: String,
        packet_type: u8,
        expected: &'static str,
    },
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

const CONNECT: u8 = 0x10;
const CONNACK: u8 = 0x20;
const PUBLISH: u8 = 0x30;
const PUBACK: u8 = 0x40;
const PINGREQ: u8 = 0xc0;
const PINGRESP: u8 = 0xd0;
const DISCONNECT: u8 = 0xe0;

/// A connected publisher for one device.
pub struct MqttSink {
    cfg: MqttConfig,
    device: String,
    questions: Vec<String>,
    stream: Option<TcpStream>,
    next_packet_id: u16,
    last_sent: Instant,
}

impl MqttSink {
    /// Connects, marks the device online and publishes the discovery messages.
    pub fn connect(cfg: &MqttConfig, device: &str, questions: &[String]) -> Result<Self, MqttError> {
        let mut sink = Self {
            cfg: cfg.clone(),
            device: device.to_string(),
            questions: questions.to_vec(),
            stream: None,
            next_packet_id: 1,
            last_sent: Instant::now(),
        };
        sink.reconnect()?;
        Ok(sink)
    }

    pub fn event_topic(&self) -> String {
        format!("{}/{}/event", self.cfg.topic_prefix, sanitize(&self.device))
    }

    fn status_topic(&self) -> String {
        format!("{}/{}/status", self.cfg.topic_prefix, sanitize(&self.device))
    }

    fn broker(&self) -> String {
        format!("{}:{}", self.cfg.host, self.cfg.port)
    }

    fn io(&self, source: std::io::Error) -> MqttError {
        MqttError::Io {
            broker: self.broker(),
            source,
        }
    }

    fn reconnect(&mut self) -> Result<(), MqttError> {
        let stream = TcpStream::connect((self.cfg.host.as_str(), self.cfg.port)).map_err(|e| self.io(e))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| self.io(e))?;
        stream.set_nodelay(true).map_err(|e| self.io(e))?;
        self.stream = Some(stream);
        let packet = connect_packet(
            &format!("edgevlm-{}", sanitize(&self.device)),
            self.cfg.keep_alive_s,
            (&self.status_topic(), b"offline"),
            self.cfg.username.as_deref(),
            self.cfg.password.as_deref(),
        );
        self.send(&packet)?;
        let (kind, body) = self.read_packet()?;
        if kind & 0xf0 != CONNACK || body.len() != 2 {
            return Err(MqttError::Protocol {
                broker: self.broker(),
                packet_type: kind,
                expected: "CONNACK",
            });
        }
        if body[1] != 0 {
            return Err(MqttError::Refused {
                broker: self.broker(),
                reason: connack_reason(body[1]),
            });
        }
        self.publish_raw(&self.status_topic(), b"online", 1, true)?;
        if !self.cfg.discovery_prefix.is_empty() {
            for (topic, payload) in self.discovery() {
                self.publish_raw(&topic, payload.as_bytes(), 1, true)?;
            }
        }
        Ok(())
    }

    /// Home Assistant discovery: the caption, each configured question's answer and
    /// the total latency as sensors of one device, all reading the event topic.
    fn discovery(&self) -> Vec<(String, String)> {
        let id = sanitize(&self.device);
        let device = json!({
            "identifiers": [format!("edgevlm_{id}")],
            "name": self.device,
            "manufacturer": "edgevlm",
            "model": "edgevlm-device",
            "sw_version": env!("CARGO_PKG_VERSION"),
        });
        let sensor = |object: &str, name: &str, template: String, unit: Option<&str>| {
            let mut config = json!({
                "name": name,
                "unique_id": format!("edgevlm_{id}_{object}"),
                "state_topic": self.event_topic(),
                "value_template": template,
                "availability_topic": self.status_topic(),
                "device": device,
            });
            if object == "caption" {
                config["json_attributes_topic"] = json!(self.event_topic());
            }
            if let Some(unit) = unit {
                config["unit_of_measurement"] = json!(unit);
            }
            let topic = format!("{}/sensor/{id}/{object}/config", self.cfg.discovery_prefix);
            (topic, config.to_string())
        };
        let mut messages = vec![
            sensor("caption", "Caption", "{{ value_json.caption }}".into(), None),
            sensor(
                "latency",
                "Latency",
                "{{ value_json.latency.total_ms | round(1) }}".into(),
                Some("ms"),
            ),
        ];
        for (i, question) in self.questions.iter().enumerate() {
            messages.push(sensor(
                &format!("answer_{i}"),
                question,
                format!("{{{{ value_json.answers[{i}].answer }}}}"),
                None,
            ));
        }
        messages
    }

    /// Publishes one event; on a broken connection reconnects once and retries.
    pub fn publish_event(&mut self, json: &str) -> Result<(), MqttError> {
        let topic = self.event_topic();
        let qos = self.cfg.qos.min(1);
        if self.publish_raw(&topic, json.as_bytes(), qos, false).is_ok() {
            return Ok(());
        }
        self.reconnect()?;
        self.publish_raw(&topic, json.as_bytes(), qos, false)
    }

    /// Keeps the connection alive between rare events (called every loop tick).
    pub fn idle(&mut self) -> Result<(), MqttError> {
        let keep_alive = Duration::from_secs(u64::from(self.cfg.keep_alive_s));
        if keep_alive.is_zero() || self.last_sent.elapsed() < keep_alive / 2 {
            return Ok(());
        }
        if self.send(&[PINGREQ, 0]).is_err() {
            self.reconnect()?;
        }
        Ok(())
    }

    /// Marks the device offline and closes the connection cleanly.
    pub fn close(&mut self) {
        let _ = self.publish_raw(&self.status_topic(), b"offline", 0, true);
        let _ = self.send(&[DISCONNECT, 0]);
        self.stream = None;
    }

    fn publish_raw(&mut self, topic: &str, payload: &[u8], qos: u8, retain: bool) -> Result<(), MqttError> {
        let packet_id = (qos > 0).then(|| {
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            id
        });
        self.send(&publish_packet(topic, payload, packet_id, retain))?;
        if let Some(id) = packet_id {
            // Skip keep-alive answers until our acknowledgement arrives.
            loop {
                let (kind, body) = self.read_packet()?;
                match kind & 0xf0 {
                    PUBACK if body.len() == 2 && u16::from_be_bytes([body[0], body[1]]) == id => break,
                    PUBACK | PINGRESP => {}
                    _ => {
                        return Err(MqttError::Protocol {
                            broker: self.broker(),
                            packet_type: kind,
                            expected: "PUBACK",
                        })
                    }
                }
            }
        }
        Ok(())
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), MqttError> {
        let result = match self.stream.as_mut() {
            Some(s) => s.write_all(bytes).and_then(|()| s.flush()),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "not connected",
            )),
        };
        result.map_err(|e| self.io(e))?;
        self.last_sent = Instant::now();
        Ok(())
    }

    fn read_packet(&mut self) -> Result<(u8, Vec<u8>), MqttError> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(self.io(std::io::ErrorKind::NotConnected.into()));
        };
        let result = (|| {
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte)?;
            let kind = byte[0];
            let mut len = 0usize;
            for shift in (0..28).step_by(7) {
                stream.read_exact(&mut byte)?;
                len |= usize::from(byte[0] & 0x7f) << shift;
                if byte[0] & 0x80 == 0 {
                    break;
                }
            }
            let mut body = vec![0u8; len];
            stream.read_exact(&mut body)?;
            Ok((kind, body))
        })();
        result.map_err(|e| self.io(e))
    }
}

impl Drop for MqttSink {
    fn drop(&mut self) {
        if self.stream.is_some() {
            self.close();
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

fn connack_reason(code: u8) -> &'static str {
    match code {
        1 => "unacceptable protocol version",
        2 => "client identifier rejected",
        3 => "server unavailable",
        4 => "bad user name or password",
        5 => "not authorised",
        _ => "unknown return code",
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// Fixed header: the packet type and the variable-length remaining length.
fn frame(kind: u8, body: Vec<u8>) -> Vec<u8> {
    let mut out = vec![kind];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend(body);
    out
}

fn connect_packet(
    client_id: &str,
    keep_alive_s: u16,
    will: (&str, &[u8]),
    username: Option<&str>,
    password: Option<&str>,
) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, b"MQTT");
    body.push(4); // protocol level 3.1.1
                  // Clean session, a retained QoS 1 will, then the credentials present.
    let mut flags = 0b0010_0000 | 0b0000_1000 | 0b0000_0100 | 0b0000_0010;
    if username.is_some() {
        flags |= 0x80;
    }
    if password.is_some() {
        flags |= 0x40;
    }
    body.push(flags);
    body.extend_from_slice(&keep_alive_s.to_be_bytes());
    put_str(&mut body, client_id.as_bytes());
    put_str(&mut body, will.0.as_bytes());
    put_str(&mut body, will.1);
    if let Some(u) = username {
        put_str(&mut body, u.as_bytes());
    }
    if let Some(p) = password {
        put_str(&mut body, p.as_bytes());
    }
    frame(CONNECT, body)
}

fn publish_packet(topic: &str, payload: &[u8], packet_id: Option<u16>, retain: bool) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, topic.as_bytes());
    let mut kind = PUBLISH | u8::from(retain);
    if let Some(id) = packet_id {
        kind |= 0b10; // QoS 1
        body.extend_from_slice(&id.to_be_bytes());
    }
    body.extend_from_slice(payload);
    frame(kind, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_length_uses_the_variable_length_encoding() {
        // Examples from the MQTT 3.1.1 specification, section 2.2.3.
        for (len, encoded) in [
            (0usize, vec![0x00]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (16_383, vec![0xff, 0x7f]),
            (16_384, vec![0x80, 0x80, 0x01]),
        ] {
            let packet = frame(PUBLISH, vec![0; len]);
            assert_eq!(&packet[1..1 + encoded.len()], &encoded[..], "length {len}");
            assert_eq!(packet.len(), 1 + encoded.len() + len);
        }
    }

    #[test]
    fn publish_packet_layout() {
        let p = publish_packet("a/b", b"hi", Some(0x0102), true);
        assert_eq!(p, vec![0x33, 9, 0, 3, b'a', b'/', b'b', 1, 2, b'h', b'i']);
        let p = publish_packet("a", b"x", None, false);
        assert_eq!(p, vec![0x30, 4, 0, 1, b'a', b'x']);
    }

    #[test]
    fn connect_packet_carries_will_and_credentials() {
        let p = connect_packet("c", 60, ("w", b"off"), Some("u"), Some("p"));
        // header, "MQTT", level 4, flags: user, password, will retain, will QoS 1, will, clean
        assert_eq!(&p[2..10], &[0, 4, b'M', b'Q', b'T', b'T', 4, 0b1110_1110]);
        assert_eq!(&p[10..12], &60u16.to_be_bytes());
        assert_eq!(p[1] as usize, p.len() - 2);
    }
}

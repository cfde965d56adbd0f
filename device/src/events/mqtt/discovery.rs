//! Home Assistant MQTT discovery: the entities one device announces (retained), all
//! under one HA device.

use serde_json::json;

use super::{sanitize, Publisher, MAX_QUESTION};

impl Publisher {
    /// The caption, each configured question's answer and the total latency as
    /// sensors reading the event topic; with snapshots, a camera on the snapshot
    /// topic; with asks, a text box to ask from and the answer as a sensor.
    pub(super) fn discovery(&self) -> Vec<(String, String)> {
        let id = sanitize(&self.device);
        let device = json!({
            "identifiers": [format!("edgevlm_{id}")],
            "name": self.device,
            "manufacturer": "edgevlm",
            "model": "edgevlm-device",
            "sw_version": env!("CARGO_PKG_VERSION"),
        });
        let sensor_of = |state: String, object: &str, name: &str, template: String, unit: Option<&str>| {
            let mut config = json!({
                "name": name,
                "unique_id": format!("edgevlm_{id}_{object}"),
                "state_topic": state,
                "value_template": template,
                "availability_topic": self.status_topic(),
                "device": device,
            });
            if object == "caption" || object == "answer" {
                config["json_attributes_topic"] = config["state_topic"].clone();
            }
            if let Some(unit) = unit {
                config["unit_of_measurement"] = json!(unit);
            }
            let topic = format!("{}/sensor/{id}/{object}/config", self.cfg.discovery_prefix);
            (topic, config.to_string())
        };
        let sensor = |object: &str, name: &str, template: String, unit: Option<&str>| {
            sensor_of(self.event_topic(), object, name, template, unit)
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
        if self.snapshots {
            // The last event's frame, beside the caption sensor.
            let camera = json!({
                "name": "Snapshot",
                "unique_id": format!("edgevlm_{id}_snapshot"),
                "topic": self.snapshot_topic(),
                "availability_topic": self.status_topic(),
                "device": device,
            });
            let topic = format!("{}/camera/{id}/snapshot/config", self.cfg.discovery_prefix);
            messages.push((topic, camera.to_string()));
        }
        if self.cfg.ask {
            // A text box to ask from, and the answer as a sensor with the
            // question and the frame's time as attributes.
            let ask = json!({
                "name": "Ask",
                "unique_id": format!("edgevlm_{id}_ask"),
                "command_topic": self.ask_topic(),
                "max": MAX_QUESTION,
                "availability_topic": self.status_topic(),
                "device": device,
            });
            let topic = format!("{}/text/{id}/ask/config", self.cfg.discovery_prefix);
            messages.push((topic, ask.to_string()));
            messages.push(sensor_of(
                self.answer_topic(),
                "answer",
                "Answer",
                "{{ value_json.answer }}".into(),
                None,
            ));
        }
        messages
    }
}

//! The device loop's outputs and triggers end to end: events to a real mosquitto
//! broker (with Home Assistant discovery and an online/offline status), over a
//! serial line, a text trigger that fires exactly on the frames above its
//! threshold, and the agent configured by the same device.toml the loop reads.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use edgevlm_device::camera::{Camera, SyntheticCamera};
use edgevlm_device::runtime::Runtime;
use edgevlm_shared::search::DecodeOptions;
use edgevlm_tests::broker::{broker, broker_on, next_on, run_ok_cmd, subscribe, wait_for_port, Guard};
use edgevlm_tests::{binary, free_port, run_ok, tiny_bundle};

/// One tiny trained model for every test of this file.
fn bundle() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let bundle = tiny_bundle(dir.path(), 1);
        (dir, bundle)
    })
    .1
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn caption_of(runtime: &Runtime, image: &image::RgbImage) -> String {
    let encoded = runtime.encode_image(image).unwrap();
    runtime.caption(&encoded, DecodeOptions::default()).unwrap()
}

#[test]
fn mqtt_broker_receives_the_event_of_a_button_press_with_discovery_status_and_snapshot() {
    let bundle = bundle();
    let tmp = tempfile::tempdir().unwrap();
    let (_broker, port) = broker();
    let image = tmp.path().join("frame.png");
    image::RgbImage::from_fn(32, 32, |x, y| image::Rgb([(x * 8) as u8, (y * 8) as u8, 90]))
        .save(&image)
        .unwrap();
    let pin = tmp.path().join("gpio-value");
    std::fs::write(&pin, "0\n").unwrap();
    let config = tmp.path().join("device.toml");
    std::fs::write(
        &config,
        format!(
            "device = \"test board\"\nbundle = {:?}\nunsigned_bundle = true\ntick_ms = 5\nquestions = [\"how many objects are there?\"]\n\
             [camera]\nkind = \"still\"\npath = \"frame.png\"\n\
             [trigger]\nkind = \"button\"\nfile = \"gpio-value\"\nactive_low = false\ndebounce_ms = 10\n\
             [events]\nfile = \"events.jsonl\"\n\
             [events.snapshot]\nmax_bytes = 8000\n\
             [events.mqtt]\nhost = \"127.0.0.1\"\nport = {port}\n",
            bundle
        ),
    )
    .unwrap();
    let device = Guard(
        Command::new(binary("edgevlm-device"))
            .args(["run", "--max-events", "1", "--config", s(&config)])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (_sub, rx) = subscribe(
        port,
        &[
            "edgevlm/test_board/#",
            "homeassistant/sensor/test_board/#",
            "probe",
        ],
    );
    // The device is connected once its retained status says so.
    assert_eq!(next_on(&rx, "edgevlm/test_board/status"), "online");
    // The subscriber is live once it sees its own probe.
    let probe = || {
        run_ok_cmd(
            "mosquitto_pub",
            &["-p", &port.to_string(), "-t", "probe", "-m", "x"],
        )
    };
    probe();
    assert_eq!(next_on(&rx, "probe"), "x");

    // Renamed into place: the loop must never read a half-written value file.
    let pressed = tmp.path().join("gpio-value.new");
    std::fs::write(&pressed, "1\n").unwrap();
    std::fs::rename(&pressed, &pin).unwrap();
    let event: serde_json::Value = serde_json::from_str(&next_on(&rx, "edgevlm/test_board/event")).unwrap();
    let runtime = Runtime::load(bundle).unwrap();
    let frame = image::open(&image).unwrap().to_rgb8();
    assert_eq!(event["caption"], caption_of(&runtime, &frame).as_str());
    assert_eq!(event["trigger"], "button");
    assert_eq!(event["device"], "test board");
    assert_eq!(event["answers"][0]["question"], "how many objects are there?");
    assert!(event["latency"]["caption_ms"].as_f64().unwrap() > 0.0);

    let (status, stderr) = device.finish();
    assert!(status.success(), "{stderr}");
    // A clean exit says offline (the broker's last will says the same on a crash).
    assert_eq!(next_on(&rx, "edgevlm/test_board/status"), "offline");

    // Home Assistant discovery, retained: a new subscriber still gets it.
    let (_late, late) = subscribe(port, &["homeassistant/#"]);
    let caption: serde_json::Value =
        serde_json::from_str(&next_on(&late, "homeassistant/sensor/test_board/caption/config")).unwrap();
    assert_eq!(caption["state_topic"], "edgevlm/test_board/event");
    assert_eq!(caption["value_template"], "{{ value_json.caption }}");
    assert_eq!(caption["availability_topic"], "edgevlm/test_board/status");
    assert_eq!(caption["device"]["identifiers"][0], "edgevlm_test_board");
    let answer: serde_json::Value =
        serde_json::from_str(&next_on(&late, "homeassistant/sensor/test_board/answer_0/config")).unwrap();
    assert_eq!(answer["name"], "how many objects are there?");
    assert_eq!(answer["value_template"], "{{ value_json.answers[0].answer }}");
    let camera: serde_json::Value =
        serde_json::from_str(&next_on(&late, "homeassistant/camera/test_board/snapshot/config")).unwrap();
    assert_eq!(camera["topic"], "edgevlm/test_board/snapshot");
    assert_eq!(camera["device"]["identifiers"][0], "edgevlm_test_board");

    // The snapshot, retained on its topic, is the captured frame; the event line
    // names the same bytes in a file.
    let jpeg = Command::new("mosquitto_sub")
        .args([
            "-p",
            &port.to_string(),
            "-t",
            "edgevlm/test_board/snapshot",
            "-C",
            "1",
            "-N",
            "-W",
            "20",
        ])
        .output()
        .unwrap()
        .stdout;
    assert!(!jpeg.is_empty() && jpeg.len() <= 8000, "{} bytes", jpeg.len());
    let seen = image::load_from_memory(&jpeg).unwrap().to_rgb8();
    assert_eq!(seen.dimensions(), frame.dimensions());
    let error: f64 = seen
        .as_raw()
        .iter()
        .zip(frame.as_raw())
        .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs())
        .sum::<f64>()
        / frame.as_raw().len() as f64;
    assert!(error < 6.0, "mean error {error} per channel");
    let line = std::fs::read_to_string(tmp.path().join("events.jsonl")).unwrap();
    let logged: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    assert_eq!(std::fs::read(logged["snapshot"].as_str().unwrap()).unwrap(), jpeg);
}

#[test]
fn a_question_published_to_the_ask_topic_is_answered_on_the_next_frame_and_follow_ups_converse() {
    let bundle = bundle();
    let tmp = tempfile::tempdir().unwrap();
    let (_broker, port) = broker();
    let image = tmp.path().join("frame.png");
    image::RgbImage::from_fn(32, 32, |x, y| image::Rgb([200, (x * 8) as u8, (y * 4) as u8]))
        .save(&image)
        .unwrap();
    // A button nobody presses: no event, so the one frame taken is the answer's.
    let pin = tmp.path().join("gpio-value");
    std::fs::write(&pin, "0\n").unwrap();
    let config = tmp.path().join("device.toml");
    std::fs::write(
        &config,
        format!(
            "device = \"porch\"\nbundle = {bundle:?}\nunsigned_bundle = true\ntick_ms = 5\n\
             [camera]\nkind = \"still\"\npath = \"frame.png\"\n\
             [trigger]\nkind = \"button\"\nfile = \"gpio-value\"\nactive_low = false\n\
             [events.mqtt]\nhost = \"127.0.0.1\"\nport = {port}\nconversation_s = 600\n"
        ),
    )
    .unwrap();
    let (_sub, rx) = subscribe(port, &["edgevlm/porch/#", "homeassistant/text/porch/#", "probe"]);
    // The subscriber is live once it sees its own probe (sent until it does).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        run_ok_cmd(
            "mosquitto_pub",
            &["-p", &port.to_string(), "-t", "probe", "-m", "x"],
        );
        if let Ok((topic, _)) = rx.recv_timeout(Duration::from_millis(500)) {
            assert_eq!(topic, "probe");
            break;
        }
        assert!(Instant::now() < deadline, "the subscriber never came up");
    }
    let device = Guard(
        Command::new(binary("edgevlm-device"))
            .args(["run", "--max-frames", "2", "--config", s(&config)])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Online means subscribed: a question asked from now on is heard.
    assert_eq!(next_on(&rx, "edgevlm/porch/status"), "online");
    // Home Assistant gets a text box that publishes to the ask topic.
    let text: serde_json::Value =
        serde_json::from_str(&next_on(&rx, "homeassistant/text/porch/ask/config")).unwrap();
    assert_eq!(text["command_topic"], "edgevlm/porch/ask");
    assert_eq!(text["availability_topic"], "edgevlm/porch/status");
    let ask = |question: &str| {
        run_ok_cmd(
            "mosquitto_pub",
            &["-p", &port.to_string(), "-t", "edgevlm/porch/ask", "-m", question],
        )
    };
    // Too long to be a question: refused, not answered.
    ask(&"why ".repeat(100));
    let question = "how many objects are there?";
    ask(question);
    let answered: serde_json::Value = serde_json::from_str(&next_on(&rx, "edgevlm/porch/answer")).unwrap();
    assert_eq!(answered["question"], question);
    assert_eq!(answered["device"], "porch");
    assert!(answered["time_ms"].as_u64().unwrap() > 0);
    let runtime = Runtime::load(bundle).unwrap();
    let frame = image::open(&image).unwrap().to_rgb8();
    let expected = runtime
        .answer(&runtime.encode_image(&frame).unwrap(), question)
        .unwrap();
    assert_eq!(answered["answer"], expected.answer.as_str());

    // A follow-up within the conversation window: the same frame, read with the
    // first round as its history.
    let follow_up = "what shape is it?";
    ask(follow_up);
    let second: serde_json::Value = serde_json::from_str(&next_on(&rx, "edgevlm/porch/answer")).unwrap();
    assert_eq!(second["question"], follow_up);
    assert_eq!(
        second["time_ms"], answered["time_ms"],
        "not the conversation's frame"
    );
    let composed = edgevlm_shared::dialog::compose(follow_up, &[(question, expected.answer.as_str())]);
    let expected = runtime
        .answer(&runtime.encode_image(&frame).unwrap(), &composed)
        .unwrap();
    assert_eq!(second["answer"], expected.answer.as_str());
    // The button takes the second frame, which ends the run.
    std::fs::write(&pin, "1\n").unwrap();

    let (status, stderr) = device.finish();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("ignored a message on edgevlm/porch/ask"),
        "{stderr}"
    );
}

#[test]
fn a_broker_down_at_start_delays_no_event_and_gets_them_once_it_is_up() {
    let bundle = bundle();
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = tmp.path().join("device.toml");
    std::fs::write(
        &config,
        format!(
            "device = \"late\"\nbundle = {bundle:?}\nunsigned_bundle = true\ntick_ms = 400\n\
             [camera]\nkind = \"synthetic\"\nseed = 3\nsize = 32\n\
             [trigger]\nkind = \"interval\"\nevery_ticks = 1\n\
             [events]\nfile = \"events.jsonl\"\nmqtt = {{ host = \"127.0.0.1\", port = {port} }}\n"
        ),
    )
    .unwrap();
    let device = Guard(
        Command::new(binary("edgevlm-device"))
            .args(["run", "--max-events", "20", "--config", s(&config)])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Nobody listens on the port, yet the file sink gets its events at once.
    let events = tmp.path().join("events.jsonl");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&events).map_or(true, |t| t.lines().count() < 2) {
        assert!(
            Instant::now() < deadline,
            "no event reached the file while the broker was down"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _broker = broker_on(port);
    let (_sub, rx) = subscribe(port, &["edgevlm/late/event"]);
    // The publisher reconnects on its own and sends what waited, in order; the
    // last event is published long after the subscriber is live.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = -1i64;
    while last < 19 {
        let left = deadline.saturating_duration_since(Instant::now());
        let (_, payload) = rx.recv_timeout(left).expect("events after the broker came up");
        let event: serde_json::Value = serde_json::from_str(&payload).unwrap();
        let seq = event["seq"].as_i64().unwrap();
        assert!(seq > last, "out of order: {seq} after {last}");
        last = seq;
    }
    let (status, stderr) = device.finish();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("trying again"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&events).unwrap().lines().count(), 20);
}

#[test]
fn events_arrive_as_json_lines_on_a_serial_port() {
    use serialport::SerialPort;
    let bundle = bundle();
    let tmp = tempfile::tempdir().unwrap();
    let (mut board_side, host_side) = serialport::TTYPort::pair().unwrap();
    let port_name = host_side.name().unwrap();
    board_side.set_timeout(Duration::from_secs(120)).unwrap();
    let config = tmp.path().join("device.toml");
    std::fs::write(
        &config,
        format!(
            "bundle = {bundle:?}\nunsigned_bundle = true\ntick_ms = 1\n[camera]\nkind = \"synthetic\"\nseed = 4\nsize = 32\n\
             [trigger]\nkind = \"interval\"\nevery_ticks = 1\n\
             [events.serial]\nport = {port_name:?}\nbaud = 115200\n"
        ),
    )
    .unwrap();
    let out = Command::new(binary("edgevlm-device"))
        .args(["run", "--max-events", "2", "--config", s(&config)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Serial only: stdout stays quiet unless asked for.
    assert!(out.stdout.is_empty());
    let mut reader = BufReader::new(board_side);
    let runtime = Runtime::load(bundle).unwrap();
    let mut camera = SyntheticCamera::new(4, 32);
    for seq in 0..2 {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(event["seq"], seq);
        let frame = camera.capture().unwrap().unwrap();
        assert_eq!(event["source"], frame.source.as_str());
        assert_eq!(event["caption"], caption_of(&runtime, &frame.image).as_str());
    }
    drop(host_side);
}

#[test]
fn text_trigger_fires_exactly_on_the_frames_above_its_threshold() {
    let bundle = bundle();
    let tmp = tempfile::tempdir().unwrap();
    let phrase = "a red circle";
    // The similarity of each of the first frames, as the device computes it.
    let runtime = Runtime::load(bundle).unwrap();
    let mut camera = SyntheticCamera::new(9, 32);
    let scores: Vec<(String, f32)> = (0..12)
        .map(|_| {
            let frame = camera.capture().unwrap().unwrap();
            let encoded = runtime.encode_image(&frame.image).unwrap();
            (frame.source, runtime.match_texts(&encoded, &[phrase]).unwrap()[0])
        })
        .collect();
    let mut sorted: Vec<f32> = scores.iter().map(|s| s.1).collect();
    sorted.sort_by(f32::total_cmp);
    // Halfway between two neighbouring scores: no frame sits on the threshold.
    let threshold = (sorted[7] + sorted[8]) / 2.0;
    let expected: Vec<&(String, f32)> = scores.iter().filter(|s| s.1 >= threshold).collect();
    assert_eq!(expected.len(), 4);
    let config = tmp.path().join("device.toml");
    std::fs::write(
        &config,
        format!(
            "bundle = {bundle:?}\nunsigned_bundle = true\ntick_ms = 1\nevents.file = \"events.jsonl\"\n\
             [camera]\nkind = \"synthetic\"\nseed = 9\nsize = 32\n\
             [trigger]\nkind = \"text\"\nphrase = {phrase:?}\nmin_similarity = {threshold}\n"
        ),
    )
    .unwrap();
    run_ok(
        "edgevlm-device",
        &["run", "--max-events", "4", "--config", s(&config)],
    );
    let events: Vec<serde_json::Value> = std::fs::read_to_string(tmp.path().join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 4);
    for (event, (source, score)) in events.iter().zip(expected) {
        assert_eq!(event["source"], source.as_str());
        assert_eq!(event["trigger"], "text");
        let got = event["trigger_score"].as_f64().unwrap() as f32;
        assert!((got - score).abs() < 1e-5, "{got} vs {score}");
    }
}

#[test]
fn agent_and_loop_share_one_device_config() {
    let bundle = bundle();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let keys = dir.join("keys");
    run_ok("edgevlm", &["keygen", "--out", s(&keys), "--name", "fleet"]);
    run_ok(
        "edgevlm",
        &["sign", s(bundle), "--key", s(&keys.join("fleet.key"))],
    );
    let signed = dir.join("model.bundle");
    std::fs::copy(bundle, &signed).unwrap();
    std::fs::copy(format!("{}.sig", s(bundle)), dir.join("model.bundle.sig")).unwrap();
    std::fs::create_dir_all(dir.join("state/trusted")).unwrap();
    std::fs::copy(keys.join("fleet.pub"), dir.join("state/trusted/fleet.pub")).unwrap();
    // A short token file is refused at start, naming the file and the rule.
    std::fs::write(dir.join("agent.token"), "t0ken\n").unwrap();
    let port = free_port();
    let config = dir.join("device.toml");
    std::fs::write(
        &config,
        format!(
            "tick_ms = 1\nevents.file = \"events.jsonl\"\n\
             [camera]\nkind = \"synthetic\"\nseed = 2\nsize = 32\n\
             [trigger]\nkind = \"interval\"\nevery_ticks = 1\n\
             [agent]\nstate = \"state\"\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"agent.token\"\n"
        ),
    )
    .unwrap();
    // No model installed yet: the loop says so by name.
    let out = Command::new(binary("edgevlm-device"))
        .args(["run", "--max-events", "1", "--config", s(&config)])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("slot"), "{err}");

    let out = Command::new(binary("edgevlm-device"))
        .args(["agent", "--config", s(&config), "--max-installs", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("agent.token") && err.contains("shorter than 16"),
        "{err}"
    );
    std::fs::write(dir.join("agent.token"), "a-token-of-at-least-16-bytes\n").unwrap();
    let agent = Guard(
        Command::new(binary("edgevlm-device"))
            .args(["agent", "--config", s(&config), "--max-installs", "1"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port, "the agent");
    let to = format!("tcp://127.0.0.1:{port}");
    let token = dir.join("agent.token");
    let said = run_ok(
        "edgevlm",
        &["flash", s(&signed), "--to", &to, "--token-file", s(&token)],
    );
    assert!(said.contains("version 1"), "{said}");
    let mut agent = agent;
    assert!(agent.0.wait().unwrap().success());

    run_ok(
        "edgevlm-device",
        &["run", "--max-events", "1", "--config", s(&config)],
    );
    let event: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(dir.join("events.jsonl")).unwrap().trim()).unwrap();
    let runtime = Runtime::load(bundle).unwrap();
    let frame = SyntheticCamera::new(2, 32).capture().unwrap().unwrap();
    assert_eq!(event["caption"], caption_of(&runtime, &frame.image).as_str());
}

//! MQTT the way fleets run it: mosquitto on loopback with TLS, a password and
//! client certificates (the test makes its own authority and certificates with
//! openssl), and the device's event arriving through it; a board that does not
//! trust the broker's authority refuses it, and its events still reach the file.

use std::path::Path;
use std::process::{Command, Stdio};

use edgevlm_tests::broker::{next_on, run_ok_cmd, subscribe_with, wait_for_port, Guard};
use edgevlm_tests::{binary, free_port, tiny_bundle};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `NAME.key` and `NAME.crt` signed by the authority `ca` (self-signed when
/// `ca` is None), valid for 127.0.0.1.
fn certificate(dir: &Path, name: &str, ca: Option<&str>) {
    let key = dir.join(format!("{name}.key"));
    let crt = dir.join(format!("{name}.crt"));
    let subject = format!("/CN={name}");
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    match ca {
        None => {
            let mut args = vec!["req", "-x509"];
            args.extend(ec);
            args.extend([
                "-keyout",
                s(&key),
                "-out",
                s(&crt),
                "-days",
                "2",
                "-subj",
                &subject,
            ]);
            run_ok_cmd("openssl", &args);
        }
        Some(ca) => {
            let csr = dir.join(format!("{name}.csr"));
            let mut args = vec!["req"];
            args.extend(ec);
            args.extend(["-keyout", s(&key), "-out", s(&csr), "-subj", &subject]);
            run_ok_cmd("openssl", &args);
            let ext = dir.join("san.ext");
            std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
            let (ca_crt, ca_key) = (dir.join(format!("{ca}.crt")), dir.join(format!("{ca}.key")));
            run_ok_cmd(
                "openssl",
                &[
                    "x509",
                    "-req",
                    "-in",
                    s(&csr),
                    "-CA",
                    s(&ca_crt),
                    "-CAkey",
                    s(&ca_key),
                    "-CAcreateserial",
                    "-out",
                    s(&crt),
                    "-days",
                    "2",
                    "-extfile",
                    s(&ext),
                ],
            );
        }
    }
    // mosquitto started as root reads its files as the `mosquitto` user.
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
}

#[test]
fn events_reach_a_broker_over_tls_with_a_password_and_a_client_certificate() {
    let bundle = tiny_bundle(&tempfile::tempdir().unwrap().keep(), 1);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    certificate(dir, "ca", None);
    certificate(dir, "broker", Some("ca"));
    certificate(dir, "board", Some("ca"));
    certificate(dir, "stranger-ca", None);
    let passwd = dir.join("passwd");
    run_ok_cmd(
        "mosquitto_passwd",
        &["-c", "-b", s(&passwd), "board", "a-long-broker-password"],
    );
    std::fs::set_permissions(&passwd, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let port = free_port();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n\
             password_file {}\nallow_anonymous false\n",
            s(&dir.join("ca.crt")),
            s(&dir.join("broker.crt")),
            s(&dir.join("broker.key")),
            s(&passwd)
        ),
    )
    .unwrap();
    let _broker = Guard(
        Command::new("mosquitto")
            .args(["-c", s(&conf)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto"),
    );
    wait_for_port(port, "mosquitto over TLS");
    let client = [
        "--cafile",
        s(&dir.join("ca.crt")),
        "--cert",
        s(&dir.join("board.crt")),
        "--key",
        s(&dir.join("board.key")),
        "-u",
        "board",
        "-P",
        "a-long-broker-password",
    ]
    .map(String::from);
    let options: Vec<&str> = client.iter().map(String::as_str).collect();
    let (_sub, rx) = subscribe_with(port, &options, &["edgevlm/tls_board/event", "probe"]);
    let mut probe = vec!["-h", "127.0.0.1", "-p"];
    let port_text = port.to_string();
    probe.push(&port_text);
    probe.extend(&options);
    probe.extend(["-t", "probe", "-m", "x"]);
    // The subscriber is live once it sees one of its probes.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        run_ok_cmd("mosquitto_pub", &probe);
        if let Ok((topic, _)) = rx.recv_timeout(std::time::Duration::from_millis(300)) {
            assert_eq!(topic, "probe");
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "the TLS subscriber never saw a probe"
        );
    }

    let run = |ca: &str| {
        let config = dir.join("device.toml");
        std::fs::write(
            &config,
            format!(
                "device = \"tls board\"\nbundle = {bundle:?}\nunsigned_bundle = true\ntick_ms = 1\n\
                 [camera]\nkind = \"synthetic\"\nseed = 5\nsize = 32\n\
                 [trigger]\nkind = \"interval\"\nevery_ticks = 1\n\
                 [events]\nfile = \"events.jsonl\"\n\
                 [events.mqtt]\nhost = \"127.0.0.1\"\nport = {port}\nusername = \"board\"\n\
                 password = \"a-long-broker-password\"\n\
                 tls = {{ ca_file = \"{ca}.crt\", client_cert = \"board.crt\", client_key = \"board.key\" }}\n"
            ),
        )
        .unwrap();
        let _ = std::fs::remove_file(dir.join("events.jsonl"));
        let out = Command::new(binary("edgevlm-device"))
            .args(["run", "--max-events", "1", "--config", s(&config)])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        let lines = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
        assert_eq!(lines.lines().count(), 1, "the file sink lost its event");
        stderr
    };
    run("ca");
    let event: serde_json::Value = serde_json::from_str(&next_on(&rx, "edgevlm/tls_board/event")).unwrap();
    assert_eq!(event["device"], "tls board");
    assert!(
        event["caption"].as_str().is_some_and(|c| !c.is_empty()),
        "{event}"
    );

    // A board that trusts another authority refuses this broker by name.
    let said = run("stranger-ca");
    assert!(said.contains("invalid peer certificate"), "{said}");
    assert!(said.contains("never reached the broker"), "{said}");
}

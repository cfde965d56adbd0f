//! Signed, atomic flashing: over TCP to a running agent (with a resumed transfer),
//! refusals that leave the running model untouched, and kill -9 at random points of
//! an install never leaving the device without a complete, valid model.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edgevlm::data::synth::{self, SynthOptions};
use edgevlm_device::agent::State;
use edgevlm_device::runtime::Runtime;
use edgevlm_shared::bundle::{sha256, signature, Bundle};
use edgevlm_shared::rng::SplitMix64;
use edgevlm_shared::search::DecodeOptions;
use edgevlm_shared::wire::{read_message, write_message, Request, Response};
use edgevlm_tests::{binary, null_modem, wait_for_log};

fn run(bin: &str, args: &[&str]) -> std::process::Output {
    Command::new(binary(bin)).args(args).output().unwrap()
}

fn ok(bin: &str, args: &[&str]) -> String {
    let out = run(bin, args);
    assert!(
        out.status.success(),
        "{bin} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A tiny trained model exported as versions 1 and 2 (2 trained further), signed.
struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    key: PathBuf,
    v1: PathBuf,
    v2: PathBuf,
    state: PathBuf,
    /// The agent's token file (and the host's copy of it).
    token: PathBuf,
}

/// What the test agents' token files hold.
const TOKEN: &str = "s3cret-token-of-24-bytes";

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let data = dir.join("scenes");
    synth::write(
        &data,
        &SynthOptions {
            count: 32,
            seed: 41,
            size: 32,
            questions_per_kind: 2,
            ..SynthOptions::default()
        },
    )
    .unwrap();
    let common = ["--quiet", "--batch-size", "8", "--seed", "2"];
    let mut models = Vec::new();
    for (name, steps) in [("one", "4"), ("two", "12")] {
        let pre = dir.join(format!("pre-{name}"));
        let model = dir.join(format!("model-{name}"));
        let mut a = vec![
            "pretrain",
            "--tiny",
            "--max-steps",
            steps,
            "--data",
            s(&data),
            "--out",
            s(&pre),
        ];
        a.extend(common);
        ok("edgevlm", &a);
        let mut a = vec![
            "finetune",
            "caption",
            "--max-steps",
            steps,
            "--from",
            s(&pre),
            "--data",
            s(&data),
        ];
        a.extend(["--out", s(&model)]);
        a.extend(common);
        ok("edgevlm", &a);
        models.push(model);
    }
    let keys = dir.join("keys");
    ok("edgevlm", &["keygen", "--out", s(&keys), "--name", "fleet"]);
    let key = keys.join("fleet.key");
    let mut bundles = Vec::new();
    for (i, model) in models.iter().enumerate() {
        let b = dir.join(format!("v{}.bundle", i + 1));
        let version = (i + 1).to_string();
        ok(
            "edgevlm",
            &[
                "export",
                "--model",
                s(model),
                "--out",
                s(&b),
                "--model-version",
                &version,
            ],
        );
        ok("edgevlm", &["sign", s(&b), "--key", s(&key)]);
        bundles.push(b);
    }
    let state = dir.join("state");
    std::fs::create_dir_all(state.join("trusted")).unwrap();
    std::fs::copy(keys.join("fleet.pub"), state.join("trusted/fleet.pub")).unwrap();
    let token = dir.join("agent.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    Setup {
        _tmp: tmp,
        dir,
        key,
        v1: bundles[0].clone(),
        v2: bundles[1].clone(),
        state,
        token,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn agent(t: &Setup, port: u16, installs: &str) -> Child {
    let child = Command::new(binary("edgevlm-device"))
        .args([
            "agent",
            "--state",
            s(&t.state),
            "--token-file",
            s(&t.token),
            "--max-installs",
            installs,
        ])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "agent did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn active_bytes(state: &Path) -> Vec<u8> {
    let slot = std::fs::read_to_string(state.join("active")).unwrap_or_else(|_| "a".into());
    std::fs::read(state.join("slots").join(slot.trim()).join("model.bundle")).unwrap()
}

#[test]
fn flash_over_tcp_installs_the_new_model_and_bad_bundles_change_nothing() {
    let t = setup();
    let state = &t.state;
    ok(
        "edgevlm",
        &["flash", s(&t.v1), "--to", &format!("dir:{}", s(state))],
    );
    assert!(ok("edgevlm-device", &["start", "--state", s(state)]).contains("version 1"));

    // A broken first attempt leaves a partial transfer that the next one resumes.
    let port = free_port();
    let mut child = agent(&t, port, "1");
    let v2 = std::fs::read(&t.v2).unwrap();
    let sig = std::fs::read(format!("{}.sig", s(&t.v2))).unwrap();
    {
        let mut link = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let hello = Request::Hello {
            token: TOKEN.into(),
            size: v2.len() as u64,
            sha256: sha256(&v2),
            signature: sig.clone(),
        };
        write_message(&mut link, &hello).unwrap();
        assert_eq!(
            read_message::<Response>(&mut link).unwrap(),
            Response::Resume { offset: 0 }
        );
        let confirm = Request::Continue {
            offset: 0,
            prefix_sha256: sha256(&[]),
        };
        write_message(&mut link, &confirm).unwrap();
        assert_eq!(
            read_message::<Response>(&mut link).unwrap(),
            Response::Ack { offset: 0 }
        );
        let data = v2[..1000].to_vec();
        write_message(&mut link, &Request::Chunk { offset: 0, data }).unwrap();
        assert_eq!(
            read_message::<Response>(&mut link).unwrap(),
            Response::Ack { offset: 1000 }
        );
    } // the link drops here
    let to = format!("tcp://127.0.0.1:{port}");
    let wrong = t.dir.join("wrong.token");
    std::fs::write(&wrong, "not-the-agents-token").unwrap();
    let flash = |token: &Path| ["flash", s(&t.v2), "--to", &to, "--token-file", s(token)].map(String::from);
    let bad_token = run("edgevlm", &flash(&wrong).each_ref().map(String::as_str));
    assert!(String::from_utf8_lossy(&bad_token.stderr).contains("bad token"));
    let said = ok("edgevlm", &flash(&t.token).each_ref().map(String::as_str));
    assert!(
        said.contains("version 2") && said.contains("resumed at byte 1000"),
        "{said}"
    );
    assert!(child.wait().unwrap().success());
    assert!(ok("edgevlm-device", &["start", "--state", s(state)]).contains("version 2"));
    // The next caption comes from the new model.
    let (_, running, _) = State::open(state).unwrap().select().unwrap();
    let fresh = Runtime::load(&t.v2).unwrap();
    let image = image::open(t.dir.join("scenes/images/000003.png"))
        .unwrap()
        .to_rgb8();
    let caption = |r: &Runtime| {
        r.caption(&r.encode_image(&image).unwrap(), DecodeOptions::default())
            .unwrap()
    };
    assert_eq!(caption(&running), caption(&fresh));
    assert_eq!(active_bytes(state), v2);

    // Each bad bundle is refused with its reason; the running model stays.
    let key = signature::load_signing_key(&t.key).unwrap();
    let write_signed = |name: &str, bytes: &[u8], signer: &ed25519_dalek::SigningKey| {
        let p = t.dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        std::fs::write(format!("{}.sig", s(&p)), signature::sign(bytes, signer)).unwrap();
        p
    };
    let v3 = {
        let b = Bundle::read(&t.v2).unwrap();
        let mut m = b.manifest.clone();
        m.model_version = 3;
        Bundle::new(m, b.entries()).to_bytes()
    };
    let truncated = write_signed("cut.bundle", &v3[..v3.len() - 10], &key);
    let mut tampered_bytes = v3.clone();
    let n = tampered_bytes.len();
    tampered_bytes[n - 20] ^= 1;
    let tampered = t.dir.join("tampered.bundle");
    std::fs::write(&tampered, &tampered_bytes).unwrap();
    // Signed after the damage (a buggy writer): the signature holds, the
    // checksums do not. Damage after signing is the stranger's case: the
    // signature is checked before anything is parsed.
    std::fs::write(
        format!("{}.sig", s(&tampered)),
        signature::sign(&tampered_bytes, &key),
    )
    .unwrap();
    let stranger = write_signed("stranger.bundle", &v3, &signature::generate().unwrap());
    let unsigned = t.dir.join("unsigned.bundle");
    std::fs::write(&unsigned, &v3).unwrap();
    for (bundle, expected) in [
        (&truncated, "truncated"),
        (&tampered, "sha256"),
        (&stranger, "does not verify against any trusted key"),
        (&unsigned, "sign the bundle first"),
        (&t.v1, "not newer than the installed 2"),
        (&t.v2, "not newer than the installed 2"),
    ] {
        let out = run(
            "edgevlm",
            &["flash", s(bundle), "--to", &format!("dir:{}", s(state))],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(expected),
            "{}: {err}",
            bundle.display()
        );
        assert_eq!(
            active_bytes(state),
            v2,
            "{} touched the running model",
            bundle.display()
        );
    }
    // A corrupted active slot is abandoned for the other one at start.
    let active = std::fs::read_to_string(state.join("active")).unwrap();
    let path = state.join("slots").join(active.trim()).join("model.bundle");
    let mut broken = v2.clone();
    broken[100] ^= 0xff;
    std::fs::write(&path, broken).unwrap();
    let out = run("edgevlm-device", &["start", "--state", s(state)]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("version 1"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rolled back"));
}

/// kill -9 at random points of installs (transfer is local here: write and switch
/// are what can break): afterwards the device always starts a complete, valid
/// model, the old or the new one, never a mix, and the anti-rollback floor
/// matches it.
#[test]
fn kill_9_during_installs_never_leaves_a_broken_device() {
    let t = setup();
    let state = &t.state;
    ok(
        "edgevlm",
        &["flash", s(&t.v1), "--to", &format!("dir:{}", s(state))],
    );
    let key = signature::load_signing_key(&t.key).unwrap();
    let base = Bundle::read(&t.v1).unwrap();
    let iterations: u64 = std::env::var("EDGEVLM_KILL_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut rng = SplitMix64::new(20261129);
    let mut installed = 1u64;
    let mut completed = 0;
    let mut interrupted = 0;
    // Measure one install to spread the kills over its whole duration.
    let p = t.dir.join("next.bundle");
    // The model of version 1 relabelled `version`, signed, at `p`.
    let write_version = |version: u64| {
        let mut m = base.manifest.clone();
        m.model_version = version;
        let bytes = Bundle::new(m, base.entries()).to_bytes();
        std::fs::write(&p, &bytes).unwrap();
        std::fs::write(format!("{}.sig", s(&p)), signature::sign(&bytes, &key)).unwrap();
    };
    let timed = Instant::now();
    write_version(2);
    ok("edgevlm-device", &["install", "--state", s(state), s(&p)]);
    installed = installed.max(2);
    let span = timed.elapsed().as_micros() as u64;
    for i in 0..iterations {
        let version = installed + 1;
        write_version(version);
        let mut child = Command::new(binary("edgevlm-device"))
            .args(["install", "--state", s(state), s(&p)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(span * 11 / 10 + 1)));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        let (slot, runtime, _) = State::open(state)
            .unwrap()
            .select()
            .unwrap_or_else(|e| panic!("iteration {i}: the device has no valid model: {e}"));
        let now = runtime.manifest.model_version;
        assert!(now == installed || now == version, "iteration {i}: version {now}");
        assert!(runtime.selftest().is_ok());
        // The anti-rollback floor: never below what ran before, and caught up
        // with the running model by the start that just happened.
        let floor = State::open(state).unwrap().min_version().unwrap();
        assert_eq!(floor, now, "iteration {i}: floor {floor}, running {now}");
        let on_disk = std::fs::read(State::open(state).unwrap().bundle_path(slot)).unwrap();
        assert_eq!(
            Bundle::from_bytes(&on_disk, "slot")
                .unwrap()
                .manifest
                .model_version,
            now
        );
        if now == version {
            completed += 1;
        } else {
            interrupted += 1;
        }
        let _ = status;
        installed = now;
    }
    eprintln!("{iterations} kills: {completed} installs completed, {interrupted} interrupted");
    assert!(
        completed > 0 && interrupted > 0,
        "kills must land both before and after the switch"
    );

    // The agent killed mid-transfer over TCP: the device keeps a valid model, and
    // the next agent resumes the partial transfer from its staging file.
    let transfers: u64 = std::env::var("EDGEVLM_KILL_TRANSFER_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let (mut finished, mut cut) = (0, 0);
    for i in 0..transfers {
        let version = installed + 1;
        write_version(version);
        let port = free_port();
        let mut child = agent(&t, port, "1");
        let to = format!("tcp://127.0.0.1:{port}");
        let mut flash = Command::new(binary("edgevlm"))
            .args([
                "flash",
                s(&p),
                "--to",
                &to,
                "--token-file",
                s(&t.token),
                "--retries",
                "0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(span * 2)));
        let _ = child.kill();
        let _ = child.wait();
        let _ = flash.wait();
        let (_, runtime, _) = State::open(state)
            .unwrap()
            .select()
            .unwrap_or_else(|e| panic!("transfer {i}: the device has no valid model: {e}"));
        let now = runtime.manifest.model_version;
        assert!(now == installed || now == version, "transfer {i}: version {now}");
        if now == version {
            finished += 1;
        } else {
            cut += 1;
        }
        installed = now;
    }
    eprintln!("{transfers} agent kills during transfers: {finished} completed, {cut} cut");
}

#[test]
fn flash_over_a_serial_line_installs_the_signed_bundle() {
    let t = setup();
    let state = &t.state;
    let (host_port, board_port, _keep) = null_modem();
    let mut agent = Command::new(binary("edgevlm-device"))
        .args([
            "agent",
            "--state",
            s(state),
            "--serial",
            &board_port,
            "--token-file",
            s(&t.token),
        ])
        .args(["--max-installs", "1"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The agent logs once it listens on the line.
    wait_for_log(&mut agent, "listening on serial port");
    let to = format!("serial:{host_port}");
    let said = ok(
        "edgevlm",
        &["flash", s(&t.v1), "--to", &to, "--token-file", s(&t.token)],
    );
    assert!(said.contains("version 1"), "{said}");
    assert!(agent.wait().unwrap().success());
    assert_eq!(active_bytes(state), std::fs::read(&t.v1).unwrap());
}

#[test]
fn a_bundle_carries_firmware_for_this_board_and_bad_firmware_changes_nothing() {
    let t = setup();
    let state = &t.state;
    let to = format!("dir:{}", s(state));
    ok("edgevlm", &["flash", s(&t.v1), "--to", &to]);
    let firmware = binary("edgevlm-device");
    let with_firmware = |name: &str, version: &str, binary: &Path| {
        let out = t.dir.join(name);
        let model = t.dir.join("model-two");
        ok(
            "edgevlm",
            &[
                "export",
                "--model",
                s(&model),
                "--out",
                s(&out),
                "--model-version",
                version,
                "--firmware",
                s(binary),
            ],
        );
        ok("edgevlm", &["sign", s(&out), "--key", s(&t.key)]);
        out
    };
    let good = with_firmware("fw2.bundle", "2", &firmware);
    // Installed on the board itself (`edgevlm-device install`), where the
    // firmware's own self-test runs; `flash --to dir:` never runs firmware.
    let said = ok("edgevlm-device", &["install", "--state", s(state), s(&good)]);
    assert!(said.contains("version 2"), "{said}");
    let slot = std::fs::read_to_string(state.join("active")).unwrap();
    let installed = state.join("slots").join(slot.trim()).join("edgevlm-device");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(&firmware).unwrap()
    );
    // The launcher runs the slot's own firmware.
    let out = run(
        "edgevlm-device",
        &["start", "--state", s(state), "--", "--version"],
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("edgevlm-device"));
    assert!(String::from_utf8_lossy(&out.stderr).contains(s(&installed)));
    let running = active_bytes(state);

    // Firmware for another architecture, and firmware that cannot run, are refused.
    let mut foreign = std::fs::read(&firmware).unwrap();
    let other: u16 = if std::env::consts::ARCH == "aarch64" {
        62
    } else {
        183
    };
    foreign[18..20].copy_from_slice(&other.to_le_bytes());
    let foreign_path = t.dir.join("foreign-edgevlm-device");
    std::fs::write(&foreign_path, &foreign).unwrap();
    let broken_path = t.dir.join("broken-edgevlm-device");
    std::fs::write(&broken_path, &std::fs::read(&firmware).unwrap()[..4096]).unwrap();
    for (binary, expected) in [
        (&foreign_path, "is built for"),
        (&broken_path, "fails its self-test"),
    ] {
        let bundle = with_firmware("fw3.bundle", "3", binary);
        let out = run("edgevlm-device", &["install", "--state", s(state), s(&bundle)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(expected), "{err}");
        assert_eq!(
            active_bytes(state),
            running,
            "{expected}: touched the running model"
        );
    }
    // The slot that held the broken firmware is never a fallback.
    let active = std::fs::read_to_string(state.join("active")).unwrap();
    let path = state.join("slots").join(active.trim()).join("model.bundle");
    let mut corrupt = running.clone();
    corrupt[100] ^= 0xff;
    std::fs::write(&path, corrupt).unwrap();
    let out = run("edgevlm-device", &["start", "--state", s(state)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no slot holds a valid model"));
}

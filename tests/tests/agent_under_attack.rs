//! The update agent against hostile peers and a tampered state folder: bad
//! transfers over TCP and over a serial line, a status query on a broken slot,
//! downgrades after deleted signatures, planted executables, and firmware for
//! a board whose card is mounted on the host.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use edgevlm_shared::bundle::{sha256, signature, Bundle, FileKind};
use edgevlm_shared::wire::{read_message, write_message, Request, Response, CHUNK};
use edgevlm_tests::{binary, free_port, null_modem, run_ok, tiny_bundle, wait_for_log};

const TOKEN: &str = "a-token-of-at-least-16-bytes";

struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A board's state folder trusting one key, running version 1 of a tiny model.
struct Board {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    state: PathBuf,
    token: PathBuf,
    key: SigningKey,
    base: Bundle,
}

impl Board {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let base = Bundle::read(&tiny_bundle(&dir, 1)).unwrap();
        let key = signature::generate().unwrap();
        let state = dir.join("state");
        signature::save(&key, &state.join("trusted"), "fleet").unwrap();
        std::fs::remove_file(state.join("trusted/fleet.key")).unwrap();
        let token = dir.join("agent.token");
        std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
        let board = Self {
            _tmp: tmp,
            dir,
            state,
            token,
            key,
            base,
        };
        board.install(1, &[]).unwrap();
        board
    }

    /// The tiny model relabelled `version`, with `extra` files.
    fn bundle(&self, version: u64, extra: &[(FileKind, Vec<u8>)]) -> Vec<u8> {
        let mut manifest = self.base.manifest.clone();
        manifest.model_version = version;
        let mut entries = self.base.entries();
        for (kind, bytes) in extra {
            entries.push((edgevlm_shared::bundle::FIRMWARE_FILE.into(), *kind, bytes.clone()));
        }
        Bundle::new(manifest, entries).to_bytes()
    }

    /// Writes `bytes` signed by the fleet key as `DIR/NAME` (+ `.sig`).
    fn signed(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        std::fs::write(format!("{}.sig", s(&path)), signature::sign(bytes, &self.key)).unwrap();
        path
    }

    /// `edgevlm-device install` of version `version`: its stderr on failure.
    fn install(&self, version: u64, extra: &[(FileKind, Vec<u8>)]) -> Result<(), String> {
        let path = self.signed(&format!("v{version}.bundle"), &self.bundle(version, extra));
        let out = Command::new(binary("edgevlm-device"))
            .args(["install", "--state", s(&self.state), s(&path)])
            .output()
            .unwrap();
        match out.status.success() {
            true => Ok(()),
            false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
    }

    fn active(&self) -> String {
        std::fs::read_to_string(self.state.join("active"))
            .unwrap_or_else(|_| "a".into())
            .trim()
            .to_string()
    }

    fn running_bytes(&self) -> Vec<u8> {
        std::fs::read(self.state.join("slots").join(self.active()).join("model.bundle")).unwrap()
    }

    fn agent(&self, link: &[&str]) -> Guard {
        let mut child = Command::new(binary("edgevlm-device"))
            .args(["agent", "--state", s(&self.state), "--token-file", s(&self.token)])
            .args(["--max-bundle-mb", "64", "--idle-timeout", "5"])
            .args(link)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_log(&mut child, "listening on");
        Guard(child)
    }
}

/// One conversation: Hello, confirm the (empty) prefix, `chunks`, Commit; the
/// last answer.
fn transfer(link: &mut (impl Read + Write), hello: Request, chunks: &[(u64, &[u8])]) -> Response {
    let mut say = |request: Request| {
        write_message(link, &request).unwrap();
        read_message::<Response>(link).unwrap()
    };
    match say(hello) {
        Response::Resume { offset: 0 } => {}
        other => return other,
    }
    let confirm = Request::Continue {
        offset: 0,
        prefix_sha256: sha256(&[]),
    };
    assert_eq!(say(confirm), Response::Ack { offset: 0 });
    for (offset, data) in chunks {
        for (i, piece) in data.chunks(CHUNK).enumerate() {
            let offset = offset + (i * CHUNK) as u64;
            match say(Request::Chunk {
                offset,
                data: piece.to_vec(),
            }) {
                Response::Ack { .. } => {}
                other => return other,
            }
        }
    }
    say(Request::Commit)
}

/// A transfer on a new link each time the agent is still `Busy` with the last
/// one (over TCP it may not have seen the previous peer leave yet).
fn answered<L: Read + Write>(
    connect: &mut impl FnMut() -> L,
    hello: Request,
    chunks: &[(u64, &[u8])],
) -> Response {
    for _ in 0..100 {
        match transfer(&mut connect(), hello.clone(), chunks) {
            Response::Busy { .. } => std::thread::sleep(Duration::from_millis(20)),
            other => return other,
        }
    }
    panic!("the agent stayed busy")
}

/// Chunks of a transfer: (offset, bytes).
type Chunks = Vec<(u64, Vec<u8>)>;

/// Every bad transfer over `connect()`'s links: refused for its reason, the
/// running model untouched.
fn refuses_every_bad_transfer<L: Read + Write>(board: &Board, mut connect: impl FnMut() -> L) {
    let running = board.running_bytes();
    let v2 = board.bundle(2, &[]);
    let hello = |bytes: &[u8], size: u64, signature: Vec<u8>| Request::Hello {
        token: TOKEN.into(),
        size,
        sha256: sha256(bytes),
        signature,
    };
    let stranger = signature::generate().unwrap();
    let mut flipped = v2.clone();
    flipped[v2.len() / 2] ^= 1;
    let old = board.bundle(1, &[]);
    let all = |b: &[u8]| vec![(0u64, b.to_vec())];
    let cases: Vec<(&str, Request, Chunks, &str)> = vec![
        (
            "unsigned",
            hello(&v2, v2.len() as u64, vec![0; 64]),
            all(&v2),
            "does not verify",
        ),
        (
            "stranger-signed",
            hello(&v2, v2.len() as u64, signature::sign(&v2, &stranger).to_vec()),
            all(&v2),
            "does not verify",
        ),
        (
            "oversized",
            hello(&v2, 65 << 20, signature::sign(&v2, &board.key).to_vec()),
            vec![],
            "a bundle of 68157440 bytes",
        ),
        (
            "out of order",
            hello(&v2, v2.len() as u64, signature::sign(&v2, &board.key).to_vec()),
            vec![(1000, v2[1000..2000].to_vec())],
            "chunk at 1000 but the agent holds 0",
        ),
        (
            "checksum mismatch",
            hello(&v2, v2.len() as u64, signature::sign(&v2, &board.key).to_vec()),
            all(&flipped),
            "do not match the announced size and sha256",
        ),
        (
            "older",
            hello(&old, old.len() as u64, signature::sign(&old, &board.key).to_vec()),
            all(&old),
            "not newer than the installed 1",
        ),
    ];
    for (name, hello, chunks, expected) in cases {
        let chunks: Vec<(u64, &[u8])> = chunks.iter().map(|(o, d)| (*o, d.as_slice())).collect();
        let answer = answered(&mut connect, hello, &chunks);
        assert!(
            matches!(&answer, Response::Refused { reason } if reason.contains(expected)),
            "{name}: {answer:?}"
        );
        assert_eq!(board.running_bytes(), running, "{name} touched the running model");
    }
    // And the honest transfer still goes through after all that.
    let sig = signature::sign(&v2, &board.key).to_vec();
    let answer = answered(&mut connect, hello(&v2, v2.len() as u64, sig), &[(0, &v2)]);
    assert!(
        matches!(answer, Response::Installed { model_version: 2, .. }),
        "{answer:?}"
    );
}

#[test]
fn bad_transfers_over_tcp_are_refused_and_the_running_model_stays() {
    let board = Board::new();
    let port = free_port();
    let _agent = board.agent(&["--listen", &format!("127.0.0.1:{port}")]);
    refuses_every_bad_transfer(&board, || {
        let link = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        link.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        link
    });
}

#[test]
fn bad_transfers_over_a_serial_line_are_refused_and_the_running_model_stays() {
    let board = Board::new();
    let (host_port, board_port, _keep) = null_modem();
    let _agent = board.agent(&["--serial", &board_port, "--greeting-timeout", "1"]);
    let mut line = serialport::new(&host_port, 115_200)
        .timeout(Duration::from_secs(60))
        .open_native()
        .unwrap();
    // Half a frame, then silence past the greeting deadline, then the rest of
    // it late: the agent drops all of it and the next frame starts clean.
    let frame = edgevlm_shared::wire::encode_frame(&Request::Status { token: TOKEN.into() });
    line.write_all(&frame[..frame.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    line.write_all(&frame[frame.len() / 2..]).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // A line has no connections: each conversation follows the last on it.
    refuses_every_bad_transfer(&board, || line.try_clone_native().unwrap());
}

#[test]
fn a_status_query_never_rolls_back_and_deleted_signatures_reopen_no_downgrade() {
    let board = Board::new();
    board.install(2, &[]).unwrap();
    let floor = || std::fs::read_to_string(board.state.join("min_version")).unwrap();
    assert_eq!(floor(), "2\n");
    let active = board.active();
    let port = free_port();
    let _agent = board.agent(&["--listen", &format!("127.0.0.1:{port}")]);
    // The active slot breaks while the agent runs; a status query reports, and
    // changes nothing.
    let path = board.state.join("slots").join(&active).join("model.bundle");
    let mut broken = std::fs::read(&path).unwrap();
    broken[100] ^= 0xff;
    std::fs::write(&path, broken).unwrap();
    let mut link = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    link.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write_message(&mut link, &Request::Status { token: TOKEN.into() }).unwrap();
    let answer: Response = read_message(&mut link).unwrap();
    assert!(
        matches!(answer, Response::Status { model_version: 1, .. }),
        "{answer:?}"
    );
    assert_eq!(board.active(), active, "a status query switched slots");

    // Both signatures gone: no slot passes, yet version 1 is still old.
    for slot in ["a", "b"] {
        std::fs::remove_file(board.state.join("slots").join(slot).join("model.sig")).unwrap();
    }
    let err = board.install(1, &[]).unwrap_err();
    assert!(err.contains("not newer than the installed 2"), "{err}");
    // A damaged floor file fails closed, naming itself.
    std::fs::write(board.state.join("min_version"), "oops").unwrap();
    let err = board.install(3, &[]).unwrap_err();
    assert!(err.contains("min_version") && err.contains("oops"), "{err}");
    std::fs::write(board.state.join("min_version"), "2\n").unwrap();
    board.install(3, &[]).unwrap();
    assert_eq!(floor(), "3\n");
}

#[test]
fn a_planted_executable_never_runs_and_a_mounted_card_never_runs_firmware() {
    let board = Board::new();
    // A slot whose signed bundle carries no firmware, and an executable planted beside it.
    let marker = board.dir.join("planted-ran");
    let planted = board
        .state
        .join("slots")
        .join(board.active())
        .join("edgevlm-device");
    std::fs::write(&planted, format!("#!/bin/sh\ntouch {}\n", s(&marker))).unwrap();
    std::fs::set_permissions(&planted, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = Command::new(binary("edgevlm-device"))
        .args(["start", "--state", s(&board.state), "--", "--version"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("edgevlm-device"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ignoring"));
    assert!(!marker.exists(), "the planted executable ran");

    // Firmware for an aarch64 board, flashed into its card mounted on this host:
    // checked against the board's architecture, never run here.
    let mut aarch64 = b"\x7fELF\x02\x01".to_vec();
    aarch64.resize(18, 0);
    aarch64.extend(183u16.to_le_bytes());
    aarch64.resize(4096, 0);
    let bundle = board.signed(
        "fw.bundle",
        &board.bundle(2, &[(FileKind::Firmware, aarch64.clone())]),
    );
    let to = format!("dir:{}", s(&board.state));
    let err = Command::new(binary("edgevlm"))
        .args(["flash", s(&bundle), "--to", &to, "--board-arch", "riscv64"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&err.stderr);
    assert!(
        !err.status.success() && said.contains("is built for aarch64"),
        "{said}"
    );
    let said = run_ok(
        "edgevlm",
        &["flash", s(&bundle), "--to", &to, "--board-arch", "aarch64"],
    );
    assert!(said.contains("version 2"), "{said}");
    let installed = board
        .state
        .join("slots")
        .join(board.active())
        .join("edgevlm-device");
    assert_eq!(std::fs::read(installed).unwrap(), aarch64);
}

#[test]
fn a_model_file_on_the_card_runs_only_when_signed() {
    let board = Board::new();
    let bundle = board.signed("loose.bundle", &board.bundle(5, &[]));
    let run = |extra: &str| {
        let config = board.dir.join("device.toml");
        std::fs::write(
            &config,
            format!(
                "bundle = \"loose.bundle\"\n{extra}\ntick_ms = 1\nevents.file = \"events.jsonl\"\n\
                 [camera]\nkind = \"synthetic\"\nseed = 2\nsize = 32\n\
                 [trigger]\nkind = \"interval\"\nevery_ticks = 1\n"
            ),
        )
        .unwrap();
        let out = Command::new(binary("edgevlm-device"))
            .args(["run", "--max-events", "1", "--config", s(&config)])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, said) = run("");
    assert!(
        !ok && said.contains("runs only signed") && said.contains("trusted"),
        "{said}"
    );
    let trusted = format!("trusted = {:?}", s(&board.state.join("trusted")));
    let (ok, said) = run(&trusted);
    assert!(ok, "{said}");
    // One byte changed after signing: refused before it is parsed.
    let mut bytes = std::fs::read(&bundle).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    std::fs::write(&bundle, &bytes).unwrap();
    let (ok, said) = run(&trusted);
    assert!(!ok && said.contains("does not verify"), "{said}");
    std::fs::remove_file(format!("{}.sig", s(&bundle))).unwrap();
    let (ok, said) = run(&trusted);
    assert!(!ok && said.contains("loose.bundle.sig"), "{said}");
    // The bench's explicit way out.
    bytes[n / 2] ^= 1;
    std::fs::write(&bundle, &bytes).unwrap();
    let (ok, said) = run("unsigned_bundle = true");
    assert!(ok && said.contains("runs unsigned"), "{said}");
}

//! Helpers for the end-to-end tests in `tests/tests/`.

pub mod broker;

use std::path::PathBuf;
use std::time::Duration;

/// Path of a workspace binary built next to the running test executable
/// (`cargo build --workspace --bins` puts it there; `.ci/run` does that first).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("target dir");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` before the end-to-end tests",
        path.display()
    );
    path
}

/// The repository's test fixtures folder.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// Runs a workspace binary and returns its stdout; panics with its stderr on failure.
pub fn run_ok(bin: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(binary(bin))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{bin} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a built binary with `args`, then each `(flag, path)`; its output, whatever
/// its status.
pub fn output_with_paths(
    bin: &str,
    args: &[&str],
    paths: &[(&str, &std::path::Path)],
) -> std::process::Output {
    let mut cmd = std::process::Command::new(binary(bin));
    cmd.args(args);
    for (flag, path) in paths {
        cmd.arg(flag).arg(path);
    }
    cmd.output().unwrap()
}

/// The stdout of a run that must have succeeded (else its stderr, named `what`).
pub fn succeeded(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// Synthetic scenes, a tiny model with VQA and caption heads trained a few steps
/// through the CLI, exported as `DIR/model.bundle` (version `version`).
pub fn tiny_bundle(dir: &std::path::Path, version: u64) -> PathBuf {
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    run_ok(
        "edgevlm",
        &[
            "data",
            "synth",
            "--out",
            &p("scenes"),
            "--n",
            "32",
            "--seed",
            "7",
            "--size",
            "32",
        ],
    );
    let common = ["--quiet", "--batch-size", "8", "--max-steps", "6", "--seed", "3"];
    let stages = [
        ("pretrain", None, "pre"),
        ("finetune", Some("vqa"), "vqa"),
        ("finetune", Some("caption"), "model"),
    ];
    let mut from: Option<String> = None;
    for (job, kind, out) in stages {
        let mut args: Vec<String> = vec![job.into()];
        args.extend(kind.map(String::from));
        match &from {
            Some(f) => args.extend(["--from".into(), f.clone()]),
            None => args.push("--tiny".into()),
        }
        args.extend(["--data".into(), p("scenes"), "--out".into(), p(out)]);
        args.extend(common.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run_ok("edgevlm", &refs);
        from = Some(p(out));
    }
    let bundle = dir.join("model.bundle");
    run_ok(
        "edgevlm",
        &[
            "export",
            "--model",
            &p("model"),
            "--out",
            bundle.to_str().unwrap(),
            "--model-version",
            &version.to_string(),
        ],
    );
    bundle
}

/// Copies bytes both ways between two pseudo-terminal masters: a null-modem cable
/// between the host's and the board's serial ports.
pub fn null_modem() -> (String, String, Vec<serialport::TTYPort>) {
    use serialport::SerialPort;
    let (mut host_master, host_slave) = serialport::TTYPort::pair().unwrap();
    let (mut board_master, board_slave) = serialport::TTYPort::pair().unwrap();
    let names = (host_slave.name().unwrap(), board_slave.name().unwrap());
    for m in [&mut host_master, &mut board_master] {
        m.set_timeout(Duration::from_millis(50)).unwrap();
    }
    let pump = |mut from: serialport::TTYPort, mut to: serialport::TTYPort| {
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match std::io::Read::read(&mut from, &mut buf) {
                    Ok(0) => std::thread::sleep(Duration::from_millis(5)),
                    Ok(n) => {
                        if std::io::Write::write_all(&mut to, &buf[..n]).is_err() {
                            return;
                        }
                    }
                    // Timeouts, and EIO while no process holds the other end open.
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
    };
    pump(
        host_master.try_clone_native().unwrap(),
        board_master.try_clone_native().unwrap(),
    );
    pump(board_master, host_master);
    // The slaves stay open here so the masters never see a hang-up between runs.
    (names.0, names.1, vec![host_slave, board_slave])
}

/// Reads `child`'s piped stderr until a line contains `needle` (it has started
/// listening, say); the rest of the log is drained on a thread so the child
/// never blocks on a full pipe. Panics if the child exits first.
pub fn wait_for_log(child: &mut std::process::Child, needle: &str) {
    use std::io::BufRead;
    let mut log = std::io::BufReader::new(child.stderr.take().expect("stderr piped"));
    let mut line = String::new();
    while !line.contains(needle) {
        line.clear();
        assert!(
            log.read_line(&mut line).unwrap() > 0,
            "exited before logging {needle:?}"
        );
    }
    std::thread::spawn(move || std::io::copy(&mut log, &mut std::io::sink()));
}

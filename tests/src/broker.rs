//! A real mosquitto broker on loopback for the event tests, and its clients.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::free_port;

/// Kills the child when the test ends, whatever happens.
pub struct Guard(pub Child);

impl Guard {
    /// Waits for the child to exit: its status and what it wrote to its piped stderr.
    pub fn finish(mut self) -> (std::process::ExitStatus, String) {
        let mut stderr = String::new();
        if let Some(mut pipe) = self.0.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        }
        (self.0.wait().unwrap(), stderr)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn wait_for_port(port: u16, what: &str) {
    wait_for_port_unless(port, what, || false);
}

/// [`wait_for_port`], giving up (false) as soon as `gave_up` says nothing will listen.
fn wait_for_port_unless(port: u16, what: &str, mut gave_up: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if gave_up() {
            return false;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not start listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// A broker on a free port. A port found free can be taken by another test's
/// server before mosquitto binds it; mosquitto then exits, and the port may even
/// answer for a while (the other server): so the broker must be seen alive after
/// its port answers, and another port is tried when it is not.
pub fn broker() -> (Guard, u16) {
    for _ in 0..5 {
        let port = free_port();
        if let Some(guard) = try_broker_on(port) {
            return (guard, port);
        }
    }
    panic!("mosquitto did not stay up on any of five free ports");
}

/// A broker on `port`, which must be free.
pub fn broker_on(port: u16) -> Guard {
    try_broker_on(port).unwrap_or_else(|| panic!("mosquitto exited instead of listening on {port}"))
}

/// A broker on `port` once it listens there and is still running; `None` when it
/// exited (the port was taken).
fn try_broker_on(port: u16) -> Option<Guard> {
    let child = Command::new("mosquitto")
        .args(["-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto is needed for this test: scripts/setup.sh installs it");
    let mut guard = Guard(child);
    let exited = |guard: &mut Guard| !matches!(guard.0.try_wait(), Ok(None));
    if !wait_for_port_unless(port, "mosquitto", || exited(&mut guard)) {
        return None;
    }
    // A failed bind ends mosquitto within milliseconds of its start.
    std::thread::sleep(Duration::from_millis(200));
    (!exited(&mut guard)).then_some(guard)
}

/// `mosquitto_sub -v` on `topics`; each received "topic payload" line arrives on the channel.
pub fn subscribe(port: u16, topics: &[&str]) -> (Guard, mpsc::Receiver<(String, String)>) {
    subscribe_with(port, &[], topics)
}

/// `subscribe` with more `mosquitto_sub` options (TLS files, credentials).
pub fn subscribe_with(
    port: u16,
    options: &[&str],
    topics: &[&str],
) -> (Guard, mpsc::Receiver<(String, String)>) {
    let mut cmd = Command::new("mosquitto_sub");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-v"]);
    cmd.args(options);
    for t in topics {
        cmd.args(["-t", t]);
    }
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("mosquitto_sub");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Lossy: a binary payload (a snapshot) must not end the reading.
        for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
            let line = String::from_utf8_lossy(&line);
            if let Some((topic, payload)) = line.split_once(' ') {
                let _ = tx.send((topic.to_string(), payload.to_string()));
            }
        }
    });
    (Guard(child), rx)
}

pub fn next_on(rx: &mpsc::Receiver<(String, String)>, topic: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (t, payload) = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("nothing on {topic} in time"));
        if t == topic {
            return payload;
        }
    }
}

pub fn run_ok_cmd(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

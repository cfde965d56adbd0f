//! The agent's listeners, TCP or a serial line. Every wait is bounded: a
//! stranger has [`Limits::greeting`] to show the token in one small frame, then
//! each read or write has [`Limits::idle`] and the whole conversation
//! [`Limits::session`]; at most [`Limits::connections`] peers are served at once
//! and the next is told `Busy`. The same CRC-checked frames travel over both links.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use edgevlm_shared::wire::{write_message, Response, Token, WireError};

use super::gate::Gate;
use super::session::{Admitted, Agent, Outcome};
use super::slots::{AgentError, State};
use super::staging::Staging;

/// Every bound on a peer's time.
#[derive(Debug, Clone)]
pub struct Limits {
    /// From connecting to showing the token.
    pub greeting: Duration,
    /// Longest single wait for the peer's next bytes, or for it to take ours.
    pub idle: Duration,
    /// A whole conversation; a longer transfer resumes in the next one.
    pub session: Duration,
    /// Peers served at once.
    pub connections: usize,
    /// Delay before the first wrong token is answered (doubling after).
    pub bad_token_delay: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            greeting: Duration::from_secs(10),
            idle: Duration::from_secs(30),
            session: Duration::from_secs(3600),
            connections: 4,
            bad_token_delay: Duration::from_secs(1),
        }
    }
}

pub struct ServerConfig {
    /// Loopback unless configured otherwise.
    pub listen: String,
    pub token: Token,
    /// Largest bundle accepted.
    pub max_bundle: u64,
    /// Stop after this many installs (tests); 0 = serve forever.
    pub max_installs: usize,
    pub limits: Limits,
}

/// A stream whose timeouts can be set (a socket, a serial port).
pub trait Timeouts {
    fn set_timeouts(&mut self, wait: Duration) -> std::io::Result<()>;
}

impl Timeouts for TcpStream {
    fn set_timeouts(&mut self, wait: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(wait))?;
        self.set_write_timeout(Some(wait))
    }
}

impl Timeouts for serialport::TTYPort {
    fn set_timeouts(&mut self, wait: Duration) -> std::io::Result<()> {
        serialport::SerialPort::set_timeout(self, wait).map_err(std::io::Error::from)
    }
}

/// A link with a deadline for the whole conversation and an idle bound for
/// each wait: a peer trickling a byte at a time still runs out of time.
pub struct Timed<S> {
    inner: S,
    limits: Limits,
    start: Instant,
    until: Instant,
    /// Bytes read in this conversation.
    received: u64,
}

impl<S: Timeouts> Timed<S> {
    pub fn new(inner: S, limits: &Limits) -> Self {
        let start = Instant::now();
        Self {
            inner,
            limits: limits.clone(),
            start,
            until: start + limits.greeting,
            received: 0,
        }
    }

    fn arm(&mut self) -> std::io::Result<()> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the conversation ran out of time",
            ));
        }
        self.inner.set_timeouts(left.min(self.limits.idle))
    }
}

impl<S: Timeouts> Admitted for Timed<S> {
    fn admitted(&mut self) {
        self.until = self.start + self.limits.session;
    }
}

impl<S: Timeouts + Read> Read for Timed<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.arm()?;
        let n = self.inner.read(buf)?;
        self.received += n as u64;
        Ok(n)
    }
}

impl<S: Timeouts + Write> Write for Timed<S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.arm()?;
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<'a> Agent<'a> {
    pub fn new(state: &'a State, cfg: &ServerConfig) -> Result<Self, AgentError> {
        Ok(Self {
            state,
            gate: Gate::new(cfg.token.clone(), cfg.limits.bad_token_delay),
            staging: Staging::open(&state.dir.join("staging"))?,
            max_bundle: cfg.max_bundle,
        })
    }
}

fn is_timeout(e: &WireError) -> bool {
    matches!(e, WireError::Io(e) if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock))
}

/// Serves until `max_installs` installs (forever when 0). A broken or timed-out
/// connection or a refused bundle is logged; the running model is never touched
/// by either.
pub fn serve(state: &State, cfg: &ServerConfig) -> Result<(), AgentError> {
    let listener = TcpListener::bind(&cfg.listen).map_err(|source| AgentError::Io {
        path: PathBuf::from(&cfg.listen),
        source,
    })?;
    eprintln!("agent: listening on {}", cfg.listen);
    serve_on(listener, state, cfg)
}

/// [`serve`] on a listener already bound (`cfg.listen` is not read): whoever bound
/// it knows the address before the agent starts, and no one else can take it.
pub fn serve_on(listener: TcpListener, state: &State, cfg: &ServerConfig) -> Result<(), AgentError> {
    let address = listener.local_addr().map_err(|source| AgentError::Io {
        path: PathBuf::from(&cfg.listen),
        source,
    })?;
    let agent = Agent::new(state, cfg)?;
    let serving = AtomicUsize::new(0);
    let installs = AtomicUsize::new(0);
    let done = || cfg.max_installs > 0 && installs.load(Ordering::SeqCst) >= cfg.max_installs;
    std::thread::scope(|scope| {
        for stream in listener.incoming() {
            if done() {
                break;
            }
            let Ok(mut stream) = stream else { continue };
            if serving.load(Ordering::SeqCst) >= cfg.limits.connections {
                // Told at once, never read from: a full agent costs a peer nothing to learn.
                let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                let retry_after_ms = cfg.limits.bad_token_delay.as_millis() as u64;
                let _ = write_message(&mut stream, &Response::Busy { retry_after_ms });
                continue;
            }
            serving.fetch_add(1, Ordering::SeqCst);
            let (agent, serving, installs) = (&agent, &serving, &installs);
            scope.spawn(move || {
                let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
                let mut link = Timed::new(stream, &cfg.limits);
                match agent.converse(&mut link) {
                    Ok(Outcome::Installed) => {
                        installs.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(Outcome::Closed) => {}
                    Err(e) if is_timeout(&e) => eprintln!("agent: {peer}: timed out; closed"),
                    Err(e) => {
                        eprintln!("agent: {peer}: {e}");
                        let reason = e.to_string();
                        let _ = write_message(&mut link, &Response::Refused { reason });
                    }
                }
                serving.fetch_sub(1, Ordering::SeqCst);
                if done() {
                    // Wakes the accept loop so it sees it is done.
                    let _ = TcpStream::connect(address);
                }
            });
        }
    });
    Ok(())
}

/// How long a line must stay silent after a broken frame before the next
/// frame may start, and the longest the agent waits for that.
const QUIET: Duration = Duration::from_millis(200);
const MAX_DRAIN: Duration = Duration::from_secs(5);

/// Drops what is left of a broken frame, including bytes still on their way:
/// reads until the line has been quiet for [`QUIET`] (at most [`MAX_DRAIN`]).
fn drain_until_quiet(mut line: serialport::TTYPort) -> std::io::Result<serialport::TTYPort> {
    serialport::SerialPort::set_timeout(&mut line, QUIET)?;
    let until = Instant::now() + MAX_DRAIN;
    let mut junk = [0u8; 512];
    while Instant::now() < until {
        match line.read(&mut junk) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                ) =>
            {
                break
            }
            Err(e) => return Err(e),
        }
    }
    Ok(line)
}

/// Serves on a serial line (a UART between host and board) until `max_installs`
/// installs. A line has no connections: each conversation gets the same
/// deadlines as one over TCP, and after any failure, a timeout mid-frame
/// included, the rest of the broken frame is drained so the next frame
/// starts clean.
pub fn serve_serial(state: &State, cfg: &ServerConfig, port: &str, baud: u32) -> Result<(), AgentError> {
    let io = |source: std::io::Error| AgentError::Io {
        path: PathBuf::from(port),
        source,
    };
    let line = serialport::new(port, baud)
        .timeout(cfg.limits.idle)
        .open_native()
        .map_err(|e| io(e.into()))?;
    eprintln!("agent: listening on serial port {port} at {baud} baud");
    let agent = Agent::new(state, cfg)?;
    let mut installs = 0;
    let mut link = Timed::new(line, &cfg.limits);
    while cfg.max_installs == 0 || installs < cfg.max_installs {
        let outcome = agent.converse(&mut link);
        let received = link.received;
        let mut line = link.inner;
        match outcome {
            Ok(Outcome::Installed) => installs += 1,
            Ok(Outcome::Closed) => {}
            // A quiet line: nothing to drop.
            Err(e) if is_timeout(&e) && received == 0 => {}
            Err(e) => {
                eprintln!("agent: serial link: {e}");
                line = drain_until_quiet(line).map_err(io)?;
            }
        }
        link = Timed::new(line, &cfg.limits);
    }
    Ok(())
}

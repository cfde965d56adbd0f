//! The agent against hostile peers: strangers, slow and silent links, floods of
//! wrong tokens, and someone else's bytes in `staging/`.

use std::io::{Cursor, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use edgevlm_shared::bundle::{sha256, signature};
use edgevlm_shared::wire::{encode_frame, read_message, write_message, Request, Response, Token, WireError};

use super::*;

const TOKEN: &str = "the-real-token-of-16+";

fn state() -> (tempfile::TempDir, State) {
    let dir = tempfile::tempdir().unwrap();
    let key = signature::generate().unwrap();
    signature::save(&key, &dir.path().join("trusted"), "k").unwrap();
    let state = State::open(dir.path()).unwrap();
    (dir, state)
}

fn config(limits: Limits) -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".into(),
        token: Token::new(TOKEN).unwrap(),
        max_bundle: 1 << 20,
        max_installs: 0,
        limits,
    }
}

fn quick() -> Limits {
    Limits {
        greeting: Duration::from_millis(500),
        idle: Duration::from_millis(300),
        session: Duration::from_secs(5),
        connections: 2,
        bad_token_delay: Duration::from_millis(50),
    }
}

/// A link whose peer has already sent `input`.
struct Link {
    input: Cursor<Vec<u8>>,
    output: Vec<u8>,
}
impl Link {
    fn sending(frames: &[Request]) -> Self {
        Self {
            input: Cursor::new(frames.iter().flat_map(encode_frame).collect()),
            output: Vec::new(),
        }
    }
    fn answers(&self) -> Vec<Response> {
        let mut out = self.output.as_slice();
        std::iter::from_fn(|| read_message(&mut out).ok()).collect()
    }
}
impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.input.read(buf)
    }
}
impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.output.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
impl Admitted for Link {
    fn admitted(&mut self) {}
}

fn hello(token: &str, bytes: &[u8]) -> Request {
    Request::Hello {
        token: token.into(),
        size: bytes.len() as u64,
        sha256: sha256(bytes),
        signature: vec![0; 64],
    }
}

#[test]
fn a_stranger_gets_one_small_greeting_and_nothing_else() {
    let (_dir, state) = state();
    let cfg = config(quick());
    let agent = Agent::new(&state, &cfg).unwrap();
    // Anything but a greeting first is turned away unread beyond its frame.
    let mut link = Link::sending(&[Request::Commit]);
    assert_eq!(agent.converse(&mut link).unwrap(), Outcome::Closed);
    assert!(
        matches!(&link.answers()[..], [Response::Refused { reason }] if reason.contains("Hello or Status"))
    );
    // A big first frame is refused from its header: no megabyte buffered for a stranger.
    let mut link = Link::sending(&[Request::Chunk {
        offset: 0,
        data: vec![0; 64 << 10],
    }]);
    let err = agent.converse(&mut link).unwrap_err();
    assert!(matches!(err, WireError::TooLarge { .. }), "{err}");
    assert_eq!(link.input.position(), 4, "read past the header");
    // A wrong token costs the backoff and ends the conversation.
    let start = Instant::now();
    let mut link = Link::sending(&[
        Request::Status {
            token: "guess".into(),
        },
        Request::Commit,
    ]);
    assert_eq!(agent.converse(&mut link).unwrap(), Outcome::Closed);
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert_eq!(
        link.answers(),
        vec![Response::Refused {
            reason: "bad token".into()
        }]
    );
}

#[test]
fn someone_elses_bytes_in_staging_are_dropped_not_completed() {
    let (dir, state) = state();
    let cfg = config(quick());
    let agent = Agent::new(&state, &cfg).unwrap();
    let bundle = b"the bytes the honest host sends".to_vec();
    // A first peer (with the token) left 8 bytes of garbage under this sha256.
    let part = dir.path().join(format!(
        "staging/{}.part",
        sha256(&bundle)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ));
    std::fs::write(&part, b"GARBAGE!").unwrap();
    let mut link = Link::sending(&[
        hello(TOKEN, &bundle),
        Request::Continue {
            offset: 8,
            prefix_sha256: sha256(&bundle[..8]),
        },
        // Chunks before the confirmation are refused: checked in the next link.
    ]);
    assert_eq!(agent.converse(&mut link).unwrap(), Outcome::Closed);
    assert_eq!(
        link.answers(),
        vec![Response::Resume { offset: 8 }, Response::Resume { offset: 0 }]
    );
    assert_eq!(std::fs::metadata(&part).unwrap().len(), 0, "garbage kept");

    let mut link = Link::sending(&[
        hello(TOKEN, &bundle),
        Request::Chunk {
            offset: 0,
            data: bundle.clone(),
        },
    ]);
    assert_eq!(agent.converse(&mut link).unwrap(), Outcome::Closed);
    assert!(
        matches!(&link.answers()[1], Response::Refused { reason } if reason.contains("before hello and continue"))
    );
}

fn serving(limits: Limits) -> (tempfile::TempDir, std::net::SocketAddr) {
    let (dir, state) = state();
    // Bound here and handed over: a port looked up, freed and bound again by the
    // agent could meanwhile be taken by another test's agent, and this test would
    // talk to that one, with its limits.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap();
    let cfg = config(limits);
    std::thread::spawn(move || serve_on(listener, &state, &cfg));
    (dir, port)
}

/// The status, asked again while the agent says `Busy`, for at most `within`.
fn served(port: std::net::SocketAddr, within: Duration) -> Response {
    let until = Instant::now() + within;
    loop {
        match status(port, TOKEN).unwrap() {
            Response::Busy { .. } if Instant::now() < until => std::thread::sleep(Duration::from_millis(20)),
            other => return other,
        }
    }
}

/// Asks for the status with `token`; the answer, or why none came.
fn status(port: std::net::SocketAddr, token: &str) -> Result<Response, WireError> {
    let mut link = TcpStream::connect(port)?;
    link.set_read_timeout(Some(Duration::from_secs(10)))?;
    write_message(&mut link, &Request::Status { token: token.into() })?;
    read_message(&mut link)
}

/// Whether the agent hung up on `link` within `within`.
fn closed_within(link: &mut TcpStream, within: Duration) -> bool {
    link.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 64];
    loop {
        match link.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn silent_and_trickling_peers_neither_block_others_nor_stay() {
    let (_dir, port) = serving(quick());
    // A length, then nothing: the old agent waited for the rest forever.
    let mut silent = TcpStream::connect(port).unwrap();
    silent.write_all(&100u32.to_le_bytes()).unwrap();
    let start = Instant::now();
    let answer = served(port, Duration::from_secs(5));
    assert!(
        matches!(answer, Response::Refused { ref reason } if reason.contains("no slot")),
        "{answer:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(
        closed_within(&mut silent, Duration::from_secs(8)),
        "the silent peer stayed"
    );

    // One byte of a greeting every 100 ms: each wait is short, the whole is not.
    let mut trickle = TcpStream::connect(port).unwrap();
    let frame = encode_frame(&Request::Status { token: TOKEN.into() });
    let start = Instant::now();
    let mut cut = false;
    for byte in frame.iter().cycle().take(200) {
        if trickle.write_all(&[*byte]).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if closed_within(&mut trickle, Duration::from_millis(1)) {
            cut = true;
            break;
        }
    }
    assert!(cut, "a trickling peer was served for {:?}", start.elapsed());
    assert!(start.elapsed() < Duration::from_secs(8), "{:?}", start.elapsed());
}

#[test]
fn peers_beyond_the_cap_are_told_busy_and_served_once_a_place_frees() {
    let limits = Limits {
        greeting: Duration::from_secs(10),
        ..quick()
    };
    let (_dir, port) = serving(limits);
    let held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(port).unwrap()).collect();
    // Once the agent has taken both (at once here, later on a loaded machine),
    // the next peer is told Busy.
    let until = Instant::now() + Duration::from_secs(8);
    let busy = loop {
        match status(port, TOKEN).unwrap() {
            Response::Busy { .. } => break true,
            _ if Instant::now() > until => break false,
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    assert!(busy, "two silent peers did not fill the agent's two places");
    drop(held);
    let answer = served(port, Duration::from_secs(5));
    assert!(
        matches!(answer, Response::Refused { ref reason } if reason.contains("no slot")),
        "{answer:?}"
    );
}

#[test]
fn a_flood_of_wrong_tokens_gets_a_handful_of_answers() {
    let limits = Limits {
        connections: 4,
        session: Duration::from_secs(30),
        greeting: Duration::from_secs(30),
        ..quick()
    };
    let (_dir, port) = serving(limits);
    let until = Instant::now() + Duration::from_secs(2);
    let guessers: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || {
                let mut refused = 0;
                while Instant::now() < until {
                    match status(port, &format!("guess-number-{i}-of-many")) {
                        Ok(Response::Refused { reason }) if reason == "bad token" => refused += 1,
                        Ok(Response::Busy { .. }) => std::thread::sleep(Duration::from_millis(5)),
                        other => panic!("{other:?}"),
                    }
                }
                refused
            })
        })
        .collect();
    let refused: usize = guessers.into_iter().map(|g| g.join().unwrap()).sum();
    // Without backoff: 8 guessers x 2 s / 50 ms = 320 answers. Doubling from
    // 50 ms caps them near a dozen, whatever the number of connections.
    eprintln!("{refused} wrong tokens answered in 2 s");
    assert!((1..=16).contains(&refused), "{refused} guesses answered");
}

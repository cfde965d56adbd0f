//! The agent's endpoints, TCP or a serial line: resumable chunked transfers into
//! `staging/`, then an install on `Commit`. Every request carries or follows a
//! token check. The same CRC-checked frames travel over both links.

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::path::PathBuf;

use edgevlm_shared::bundle::sha256;
use edgevlm_shared::wire::{read_message, write_message, Request, Response, WireError};

use super::slots::{AgentError, State};

pub struct ServerConfig {
    /// Loopback unless configured otherwise.
    pub listen: String,
    pub token: String,
    /// Largest bundle accepted.
    pub max_bundle: u64,
    /// Stop after this many installs (tests); 0 = serve forever.
    pub max_installs: usize,
}

struct Transfer {
    size: u64,
    sha256: [u8; 32],
    signature: Vec<u8>,
    part: PathBuf,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn refuse(stream: &mut impl Write, reason: impl Into<String>) -> Result<(), WireError> {
    write_message(
        stream,
        &Response::Refused {
            reason: reason.into(),
        },
    )
}

/// Handles one connection; returns whether a bundle was installed.
fn handle<L: Read + Write>(state: &State, cfg: &ServerConfig, stream: &mut L) -> Result<bool, WireError> {
    let mut transfer: Option<Transfer> = None;
    loop {
        let request: Request = match read_message(stream) {
            Ok(r) => r,
            Err(WireError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => {
                refuse(stream, e.to_string())?;
                return Err(e);
            }
        };
        let token_ok = match &request {
            Request::Status { token } | Request::Hello { token, .. } => !token_mismatch(token, cfg),
            Request::Chunk { .. } | Request::Commit => true,
        };
        if !token_ok {
            // Before answering, so a guesser cannot pipeline: one guess per
            // delay instead of thousands a second.
            std::thread::sleep(BAD_TOKEN_DELAY);
            refuse(stream, "bad token")?;
            return Ok(false);
        }
        match request {
            Request::Status { .. } => {
                let response = match state.select() {
                    Ok((slot, runtime, _)) => Response::Status {
                        name: runtime.manifest.name.clone(),
                        model_version: runtime.manifest.model_version,
                        slot: slot.name().into(),
                    },
                    Err(e) => Response::Refused {
                        reason: e.to_string(),
                    },
                };
                write_message(stream, &response)?;
            }
            Request::Hello {
                size,
                sha256,
                signature,
                ..
            } => {
                if size > cfg.max_bundle {
                    refuse(
                        stream,
                        format!("bundle of {size} bytes exceeds the limit of {}", cfg.max_bundle),
                    )?;
                    return Ok(false);
                }
                let part = state.dir.join("staging").join(format!("{}.part", hex(&sha256)));
                let mut held = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
                if held > size {
                    held = 0;
                    let _ = std::fs::remove_file(&part);
                }
                transfer = Some(Transfer {
                    size,
                    sha256,
                    signature,
                    part,
                });
                write_message(stream, &Response::Resume { offset: held })?;
            }
            Request::Chunk { offset, data } => {
                let Some(t) = &transfer else {
                    refuse(stream, "chunk before hello")?;
                    return Ok(false);
                };
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&t.part)?;
                let held = f.seek(SeekFrom::End(0))?;
                if offset != held || offset + data.len() as u64 > t.size {
                    refuse(
                        stream,
                        format!("chunk at {offset} but the agent holds {held} of {} bytes", t.size),
                    )?;
                    return Ok(false);
                }
                f.write_all(&data)?;
                f.sync_data()?;
                write_message(
                    stream,
                    &Response::Ack {
                        offset: held + data.len() as u64,
                    },
                )?;
            }
            Request::Commit => {
                let Some(t) = transfer.take() else {
                    refuse(stream, "commit before hello")?;
                    return Ok(false);
                };
                let bytes = std::fs::read(&t.part)?;
                if bytes.len() as u64 != t.size || sha256(&bytes) != t.sha256 {
                    let _ = std::fs::remove_file(&t.part);
                    refuse(
                        stream,
                        "received bytes do not match the announced size and sha256",
                    )?;
                    return Ok(false);
                }
                let result = state.install(&bytes, &t.signature);
                let _ = std::fs::remove_file(&t.part);
                match result {
                    Ok(r) => {
                        eprintln!(
                            "agent: installed {} version {} into slot {}",
                            r.name,
                            r.model_version,
                            r.slot.name()
                        );
                        write_message(
                            stream,
                            &Response::Installed {
                                name: r.name,
                                model_version: r.model_version,
                                slot: r.slot.name().into(),
                                selftest_caption: r.selftest_caption,
                            },
                        )?;
                        return Ok(true);
                    }
                    Err(e) => {
                        eprintln!("agent: {e}");
                        refuse(stream, e.to_string())?;
                        return Ok(false);
                    }
                }
            }
        }
    }
}

/// How long a peer waits for the answer to a wrong token.
const BAD_TOKEN_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

fn token_mismatch(token: &str, cfg: &ServerConfig) -> bool {
    // Fixed-size digests compared in full: the time taken tells neither how
    // much matched nor how long the expected token is.
    let (a, b) = (sha256(token.as_bytes()), sha256(cfg.token.as_bytes()));
    a.iter().zip(&b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) != 0
}

/// Serves until `max_installs` installs (forever when 0). A broken connection or
/// a refused bundle is logged; the running model is never touched by either.
pub fn serve(state: &State, cfg: &ServerConfig) -> Result<(), AgentError> {
    let listener = TcpListener::bind(&cfg.listen).map_err(|source| AgentError::Io {
        path: PathBuf::from(&cfg.listen),
        source,
    })?;
    eprintln!("agent: listening on {}", cfg.listen);
    let mut installs = 0;
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        match handle(state, cfg, &mut stream) {
            Ok(true) => installs += 1,
            Ok(false) => {}
            Err(e) => eprintln!("agent: connection: {e}"),
        }
        if cfg.max_installs > 0 && installs >= cfg.max_installs {
            break;
        }
    }
    Ok(())
}

/// Serves on a serial line (a UART between host and board) until `max_installs`
/// installs. A line has no connections: silence and garbage between frames are
/// skipped, and the host's next `Hello` resumes its transfer.
pub fn serve_serial(state: &State, cfg: &ServerConfig, port: &str, baud: u32) -> Result<(), AgentError> {
    let io = |source: std::io::Error| AgentError::Io {
        path: PathBuf::from(port),
        source,
    };
    let mut line = serialport::new(port, baud)
        .timeout(std::time::Duration::from_secs(5))
        .open_native()
        .map_err(|e| io(e.into()))?;
    eprintln!("agent: listening on serial port {port} at {baud} baud");
    let mut installs = 0;
    while cfg.max_installs == 0 || installs < cfg.max_installs {
        match handle(state, cfg, &mut line) {
            Ok(true) => installs += 1,
            Ok(false) => {}
            Err(WireError::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => {
                eprintln!("agent: serial link: {e}");
                // Drop whatever is left of the broken frame before listening again.
                std::thread::sleep(std::time::Duration::from_millis(100));
                serialport::SerialPort::clear(&line, serialport::ClearBuffer::Input)
                    .map_err(|e| io(e.into()))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A link whose peer has already sent `input`.
    struct Link {
        input: Cursor<Vec<u8>>,
        output: Vec<u8>,
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

    fn config(token: &str) -> ServerConfig {
        ServerConfig {
            listen: "127.0.0.1:0".into(),
            token: token.into(),
            max_bundle: 1 << 20,
            max_installs: 0,
        }
    }

    #[test]
    fn tokens_compare_by_digest_whatever_their_length() {
        let cfg = config("a-long-enough-secret-token");
        assert!(!token_mismatch("a-long-enough-secret-token", &cfg));
        for guess in [
            "",
            "a",
            "a-long-enough-secret-toke",
            "a-long-enough-secret-tokenX",
        ] {
            assert!(token_mismatch(guess, &cfg), "{guess:?}");
        }
    }

    #[test]
    fn a_wrong_token_is_answered_only_after_a_delay() {
        let dir = tempfile::tempdir().unwrap();
        let key = edgevlm_shared::bundle::signature::generate().unwrap();
        edgevlm_shared::bundle::signature::save(&key, &dir.path().join("trusted"), "k").unwrap();
        let state = State::open(dir.path()).unwrap();
        let mut link = Link {
            input: Cursor::new(edgevlm_shared::wire::encode_frame(&Request::Status {
                token: "guess".into(),
            })),
            output: Vec::new(),
        };
        let start = std::time::Instant::now();
        assert!(!handle(&state, &config("the-real-token-of-16+"), &mut link).unwrap());
        assert!(start.elapsed() >= BAD_TOKEN_DELAY);
        let answer: Response = read_message(&mut link.output.as_slice()).unwrap();
        assert_eq!(
            answer,
            Response::Refused {
                reason: "bad token".into()
            }
        );
    }
}

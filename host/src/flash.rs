//! `edgevlm flash`: sends a signed bundle to a device agent over TCP or a serial
//! line (chunked, CRC-framed, resumable after a broken link), or installs it into a
//! mounted state folder.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use edgevlm_device::agent::{Board, State, Timeouts};
use edgevlm_shared::bundle::sha256;
use edgevlm_shared::wire::{read_message, write_message, Request, Response, Token, CHUNK};

/// Longest wait to connect, and for any one answer but the install's.
const LINK_WAIT: Duration = Duration::from_secs(60);
/// Longest wait for `Installed`: the board self-tests the model (and firmware).
const INSTALL_WAIT: Duration = Duration::from_secs(600);
/// Longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum FlashError {
    #[error("{0}")]
    Link(#[from] edgevlm_shared::wire::WireError),
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the device refused: {0}")]
    Refused(String),
    #[error("the device stayed busy with other connections")]
    Busy { retry_after: Duration },
    #[error("unexpected answer from the device: {0}")]
    Protocol(String),
    #[error(transparent)]
    Agent(#[from] edgevlm_device::agent::AgentError),
    #[error("unknown target {0:?}: expected tcp://HOST:PORT, serial:/dev/ttyX or dir:/path/to/state")]
    Target(String),
}

/// Where `--to` points.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Tcp(String),
    Serial(String),
    Dir(std::path::PathBuf),
}

impl Target {
    pub fn parse(to: &str) -> Result<Self, FlashError> {
        if let Some(addr) = to.strip_prefix("tcp://") {
            Ok(Self::Tcp(addr.into()))
        } else if let Some(port) = to.strip_prefix("serial:") {
            Ok(Self::Serial(port.into()))
        } else if let Some(dir) = to.strip_prefix("dir:") {
            Ok(Self::Dir(dir.into()))
        } else {
            Err(FlashError::Target(to.into()))
        }
    }
}

/// A byte link to an agent, with a bound on each wait (the agent's own
/// `Timeouts`: a socket or a serial port).
pub trait Link: Read + Write + Timeouts {}
impl<T: Read + Write + Timeouts> Link for T {}

fn connect(target: &Target, baud: u32) -> Result<Box<dyn Link>, FlashError> {
    let failed = |addr: &str, source: std::io::Error| FlashError::Connect {
        addr: addr.into(),
        source,
    };
    let mut link: Box<dyn Link> = match target {
        Target::Tcp(addr) => {
            let resolved = addr
                .to_socket_addrs()
                .map_err(|e| failed(addr, e))?
                .next()
                .ok_or_else(|| failed(addr, std::io::Error::other("no address")))?;
            Box::new(TcpStream::connect_timeout(&resolved, LINK_WAIT).map_err(|e| failed(addr, e))?)
        }
        Target::Serial(port) => Box::new(
            serialport::new(port, baud)
                .timeout(LINK_WAIT)
                .open_native()
                .map_err(|e| failed(port, e.into()))?,
        ),
        Target::Dir(dir) => return Err(FlashError::Target(format!("dir:{}", dir.display()))),
    };
    link.set_timeouts(LINK_WAIT)
        .map_err(|e| failed(&format!("{target:?}"), e))?;
    Ok(link)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Flashed {
    pub name: String,
    pub model_version: u64,
    pub slot: String,
    pub selftest_caption: String,
    /// Bytes that were already on the device from an earlier, broken attempt.
    pub resumed_from: u64,
}

/// Sends to an agent over TCP or a serial line; `progress(sent, total)` after
/// every chunk. Reconnects and resumes up to `retries` times, with a growing
/// pause, when the link breaks, cannot be made, or the agent is busy.
pub fn flash_link(
    target: &Target,
    baud: u32,
    token: &Token,
    bundle: &[u8],
    signature: &[u8],
    retries: usize,
    mut progress: impl FnMut(u64, u64),
) -> Result<Flashed, FlashError> {
    let mut attempt = 0;
    loop {
        let sent = connect(target, baud)
            .and_then(|mut link| send_once(link.as_mut(), token, bundle, signature, &mut progress));
        let pause = Duration::from_millis(200 << attempt.min(6)).min(MAX_BACKOFF);
        let pause = match &sent {
            Err(FlashError::Busy { retry_after }) => pause.max(*retry_after),
            _ => pause,
        };
        match sent {
            Err(e @ (FlashError::Link(_) | FlashError::Connect { .. } | FlashError::Busy { .. }))
                if attempt < retries =>
            {
                attempt += 1;
                eprintln!(
                    "flash: {e}; trying again in {:.1} s (attempt {attempt} of {retries})",
                    pause.as_secs_f32()
                );
                std::thread::sleep(pause);
            }
            other => return other,
        }
    }
}

fn send_once(
    mut stream: &mut dyn Link,
    token: &Token,
    bundle: &[u8],
    signature: &[u8],
    progress: &mut impl FnMut(u64, u64),
) -> Result<Flashed, FlashError> {
    let total = bundle.len() as u64;
    write_message(
        &mut stream,
        &Request::Hello {
            token: token.as_str().into(),
            size: total,
            sha256: sha256(bundle),
            signature: signature.to_vec(),
        },
    )?;
    let held = expect_resume(read_message(&mut stream)?, total)?;
    // The agent appends only after the bytes it holds are confirmed as ours.
    write_message(
        &mut stream,
        &Request::Continue {
            offset: held,
            prefix_sha256: sha256(&bundle[..held as usize]),
        },
    )?;
    let mut offset = match read_message(&mut stream)? {
        Response::Ack { offset } if offset == held => offset,
        // It held someone else's bytes and dropped them.
        other => expect_resume(other, 0)?,
    };
    let resumed_from = offset;
    progress(offset, total);
    while offset < total {
        let end = (offset as usize + CHUNK).min(bundle.len());
        let data = bundle[offset as usize..end].to_vec();
        write_message(&mut stream, &Request::Chunk { offset, data })?;
        match read_message(&mut stream)? {
            Response::Ack { offset: acked } if acked == end as u64 => offset = acked,
            Response::Refused { reason } => return Err(FlashError::Refused(reason)),
            other => return Err(FlashError::Protocol(format!("{other:?}"))),
        }
        progress(offset, total);
    }
    write_message(&mut stream, &Request::Commit)?;
    stream
        .set_timeouts(INSTALL_WAIT)
        .map_err(edgevlm_shared::wire::WireError::Io)?;
    match read_message(&mut stream)? {
        Response::Installed {
            name,
            model_version,
            slot,
            selftest_caption,
        } => Ok(Flashed {
            name,
            model_version,
            slot,
            selftest_caption,
            resumed_from,
        }),
        Response::Refused { reason } => Err(FlashError::Refused(reason)),
        other => Err(FlashError::Protocol(format!("{other:?}"))),
    }
}

/// An answer to `Hello`: where to resume, at most `limit`.
fn expect_resume(answer: Response, limit: u64) -> Result<u64, FlashError> {
    match answer {
        Response::Resume { offset } if offset <= limit => Ok(offset),
        Response::Refused { reason } => Err(FlashError::Refused(reason)),
        Response::Busy { retry_after_ms } => Err(FlashError::Busy {
            retry_after: Duration::from_millis(retry_after_ms).min(MAX_BACKOFF),
        }),
        other => Err(FlashError::Protocol(format!("{other:?}"))),
    }
}

/// Installs into the state folder of a board of architecture `board_arch`,
/// mounted here (an SD card): the same checks and atomic slot switch the agent
/// performs, except that firmware is never run here; the board self-tests it
/// at its next `start` and falls back to the other slot if it fails.
pub fn flash_dir(
    state: &Path,
    bundle: &[u8],
    signature: &[u8],
    board_arch: &str,
) -> Result<Flashed, FlashError> {
    let r = State::open_for(state, Board::offline(board_arch))?.install(bundle, signature)?;
    Ok(Flashed {
        name: r.name,
        model_version: r.model_version,
        slot: r.slot.name().into(),
        selftest_caption: r.selftest_caption,
        resumed_from: 0,
    })
}

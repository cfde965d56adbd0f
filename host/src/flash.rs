//! `edgevlm flash`: sends a signed bundle to a device agent over TCP or a serial
//! line (chunked, CRC-framed, resumable after a broken link), or installs it into a
//! mounted state folder.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use edgevlm_device::agent::State;
use edgevlm_shared::bundle::sha256;
use edgevlm_shared::wire::{read_message, write_message, Request, Response, CHUNK};

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

/// A byte link to an agent.
pub trait Link: Read + Write {}
impl<T: Read + Write> Link for T {}

fn connect(target: &Target, baud: u32) -> Result<Box<dyn Link>, FlashError> {
    let failed = |addr: &str, source: std::io::Error| FlashError::Connect {
        addr: addr.into(),
        source,
    };
    match target {
        Target::Tcp(addr) => Ok(Box::new(TcpStream::connect(addr).map_err(|e| failed(addr, e))?)),
        Target::Serial(port) => {
            let line = serialport::new(port, baud)
                .timeout(Duration::from_secs(30))
                .open_native()
                .map_err(|e| failed(port, e.into()))?;
            Ok(Box::new(line))
        }
        Target::Dir(dir) => Err(FlashError::Target(format!("dir:{}", dir.display()))),
    }
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
/// every chunk. Reconnects and resumes up to `retries` times when the link breaks.
pub fn flash_link(
    target: &Target,
    baud: u32,
    token: &str,
    bundle: &[u8],
    signature: &[u8],
    retries: usize,
    mut progress: impl FnMut(u64, u64),
) -> Result<Flashed, FlashError> {
    let mut attempt = 0;
    loop {
        let sent = connect(target, baud)
            .and_then(|mut link| send_once(link.as_mut(), token, bundle, signature, &mut progress));
        match sent {
            Err(FlashError::Link(e)) if attempt < retries => {
                attempt += 1;
                eprintln!("flash: link broke ({e}); resuming (attempt {attempt})");
                std::thread::sleep(Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

fn send_once(
    mut stream: &mut dyn Link,
    token: &str,
    bundle: &[u8],
    signature: &[u8],
    progress: &mut impl FnMut(u64, u64),
) -> Result<Flashed, FlashError> {
    let total = bundle.len() as u64;
    write_message(
        &mut stream,
        &Request::Hello {
            token: token.into(),
            size: total,
            sha256: sha256(bundle),
            signature: signature.to_vec(),
        },
    )?;
    let mut offset = match read_message(&mut stream)? {
        Response::Resume { offset } => offset,
        Response::Refused { reason } => return Err(FlashError::Refused(reason)),
        other => return Err(FlashError::Protocol(format!("{other:?}"))),
    };
    let resumed_from = offset;
    progress(offset, total);
    while offset < total {
        let end = (offset as usize + CHUNK).min(bundle.len());
        let data = bundle[offset as usize..end].to_vec();
        write_message(&mut stream, &Request::Chunk { offset, data })?;
        match read_message(&mut stream)? {
            Response::Ack { offset: acked } => offset = acked,
            Response::Refused { reason } => return Err(FlashError::Refused(reason)),
            other => return Err(FlashError::Protocol(format!("{other:?}"))),
        }
        progress(offset, total);
    }
    write_message(&mut stream, &Request::Commit)?;
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

/// Installs into a device's state folder mounted here (an SD card): the same
/// checks and atomic slot switch the agent performs.
pub fn flash_dir(state: &Path, bundle: &[u8], signature: &[u8]) -> Result<Flashed, FlashError> {
    let r = State::open(state)?.install(bundle, signature)?;
    Ok(Flashed {
        name: r.name,
        model_version: r.model_version,
        slot: r.slot.name().into(),
        selftest_caption: r.selftest_caption,
        resumed_from: 0,
    })
}

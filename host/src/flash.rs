//! `edgevlm flash`: sends a signed bundle to a device agent over TCP (chunked,
//! resumable after a broken link), or installs it into a mounted state folder.

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
    #[error("unknown target {0:?}: expected tcp://HOST:PORT or dir:/path/to/state")]
    Target(String),
    #[error("serial links are not supported by this build: use tcp:// or dir:")]
    Serial,
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

/// Sends over TCP; `progress(sent, total)` after every chunk. Reconnects and
/// resumes up to `retries` times when the link breaks.
pub fn flash_tcp(
    addr: &str,
    token: &str,
    bundle: &[u8],
    signature: &[u8],
    retries: usize,
    mut progress: impl FnMut(u64, u64),
) -> Result<Flashed, FlashError> {
    let mut attempt = 0;
    loop {
        match send_once(addr, token, bundle, signature, &mut progress) {
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
    addr: &str,
    token: &str,
    bundle: &[u8],
    signature: &[u8],
    progress: &mut impl FnMut(u64, u64),
) -> Result<Flashed, FlashError> {
    let mut stream = TcpStream::connect(addr).map_err(|source| FlashError::Connect {
        addr: addr.into(),
        source,
    })?;
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

//! The flashing protocol between `edgevlm flash` and `edgevlm-device agent`:
//! postcard messages in frames of `length (u32 LE) | payload | crc32 (u32 LE)`.
//! A transfer can resume after a broken link: the agent answers `Hello` with how
//! many bytes of that very bundle (by sha256) it already holds, and the sender
//! confirms those bytes by their hash before more are appended.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

mod token;
pub use token::{Token, TokenError, MAX_TOKEN_LEN, MIN_TOKEN_LEN};

/// Largest frame accepted: a chunk plus headroom.
pub const MAX_FRAME: usize = 1 << 20;
/// Largest frame accepted before the peer has shown the token: a `Hello` or
/// `Status` with its token and signature, nothing a stranger can make big.
pub const MAX_GREETING: usize = 4 << 10;
pub const CHUNK: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Starts (or resumes) a transfer.
    Hello {
        token: String,
        size: u64,
        sha256: [u8; 32],
        /// ed25519 signature of the whole bundle.
        signature: Vec<u8>,
    },
    Chunk {
        offset: u64,
        data: Vec<u8>,
    },
    /// All bytes sent: verify, self-test, switch.
    Commit,
    Status {
        token: String,
    },
    /// After `Resume { offset }`: the sha256 of the sender's first `offset`
    /// bytes. The agent appends to what it holds only when its own bytes hash
    /// the same; otherwise it discards them and answers `Resume { offset: 0 }`.
    Continue {
        offset: u64,
        prefix_sha256: [u8; 32],
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Send from this offset.
    Resume {
        offset: u64,
    },
    Ack {
        offset: u64,
    },
    Installed {
        name: String,
        model_version: u64,
        slot: String,
        selftest_caption: String,
    },
    Refused {
        reason: String,
    },
    Status {
        name: String,
        model_version: u64,
        slot: String,
    },
    /// Every connection the agent serves at once is taken: try again later.
    Busy {
        retry_after_ms: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("link: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("frame fails its CRC (sent {sent:08x}, computed {computed:08x})")]
    Crc { sent: u32, computed: u32 },
    #[error("malformed message: {0}")]
    Decode(String),
}

pub fn encode_frame<T: Serialize>(message: &T) -> Vec<u8> {
    let payload = postcard::to_stdvec(message).expect("protocol messages serialize");
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out
}

pub fn decode_payload<T: for<'de> Deserialize<'de>>(frame: &[u8]) -> Result<T, WireError> {
    if frame.len() < 8 {
        return Err(WireError::Decode(format!(
            "frame of {} bytes is shorter than its header",
            frame.len()
        )));
    }
    let len = u32::from_le_bytes(frame[..4].try_into().expect("4 bytes")) as usize;
    if len > MAX_FRAME {
        return Err(WireError::TooLarge {
            size: len,
            limit: MAX_FRAME,
        });
    }
    if frame.len() != len + 8 {
        return Err(WireError::Decode(format!(
            "frame says {len} payload bytes, has {}",
            frame.len() - 8
        )));
    }
    let payload = &frame[4..4 + len];
    let sent = u32::from_le_bytes(frame[4 + len..].try_into().expect("4 bytes"));
    let computed = crc32fast::hash(payload);
    if sent != computed {
        return Err(WireError::Crc { sent, computed });
    }
    postcard::from_bytes(payload).map_err(|e| WireError::Decode(e.to_string()))
}

pub fn write_message<T: Serialize>(w: &mut impl Write, message: &T) -> Result<(), WireError> {
    w.write_all(&encode_frame(message))?;
    w.flush()?;
    Ok(())
}

pub fn read_message<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> Result<T, WireError> {
    read_message_within(r, MAX_FRAME)
}

/// Reads one message whose payload is at most `limit` bytes (and never more
/// than [`MAX_FRAME`]); a longer one is refused from its header, unread.
pub fn read_message_within<T: for<'de> Deserialize<'de>>(
    r: &mut impl Read,
    limit: usize,
) -> Result<T, WireError> {
    let limit = limit.min(MAX_FRAME);
    let mut header = [0u8; 4];
    r.read_exact(&mut header)?;
    let len = u32::from_le_bytes(header) as usize;
    if len > limit {
        return Err(WireError::TooLarge { size: len, limit });
    }
    let mut frame = vec![0u8; len + 8];
    frame[..4].copy_from_slice(&header);
    r.read_exact(&mut frame[4..])?;
    decode_payload(&frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_corruption_is_caught() {
        let msg = Request::Chunk {
            offset: 7,
            data: vec![1, 2, 3],
        };
        let frame = encode_frame(&msg);
        assert_eq!(decode_payload::<Request>(&frame).unwrap(), msg);
        assert_eq!(read_message::<Request>(&mut frame.as_slice()).unwrap(), msg);
        for at in 4..frame.len() {
            let mut bad = frame.clone();
            bad[at] ^= 1;
            assert!(decode_payload::<Request>(&bad).is_err(), "flip at {at}");
        }
        let mut huge = frame.clone();
        huge[3] = 0x7f;
        assert!(matches!(
            read_message::<Request>(&mut huge.as_slice()),
            Err(WireError::TooLarge { .. })
        ));
        assert!(read_message::<Request>(&mut &frame[..5]).is_err());
        let big = encode_frame(&Request::Chunk {
            offset: 0,
            data: vec![0; MAX_GREETING],
        });
        assert!(matches!(
            read_message_within::<Request>(&mut big.as_slice(), MAX_GREETING),
            Err(WireError::TooLarge {
                limit: MAX_GREETING,
                ..
            })
        ));
    }
}

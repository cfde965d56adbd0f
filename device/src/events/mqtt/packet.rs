//! MQTT 3.1.1 packets, the few a publisher sends and reads. What a broker sends
//! is read with a cap on its size: a publisher expects only acknowledgements of
//! a few bytes, so a broker that announces megabytes is refused, not obeyed.

use std::io::Read;

pub const CONNECT: u8 = 0x10;
pub const CONNACK: u8 = 0x20;
pub const PUBLISH: u8 = 0x30;
pub const PUBACK: u8 = 0x40;
pub const PINGREQ: u8 = 0xc0;
pub const PINGRESP: u8 = 0xd0;
pub const DISCONNECT: u8 = 0xe0;

/// Largest packet body read from a broker.
pub const MAX_INCOMING: usize = 1024;
/// Longest string field the protocol can carry.
pub const MAX_STRING: usize = u16::MAX as usize;

#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the broker announced a packet of {0} bytes; a publisher reads at most {MAX_INCOMING}")]
    TooLarge(usize),
    #[error("malformed remaining length (more than four bytes)")]
    Length,
    #[error("{field} is {len} bytes; MQTT strings stop at {MAX_STRING}")]
    StringTooLong { field: &'static str, len: usize },
}

/// Reads one packet: its type byte and its body of at most `max_body` bytes.
pub fn read_packet(r: &mut impl Read, max_body: usize) -> Result<(u8, Vec<u8>), PacketError> {
    let mut byte = [0u8; 1];
    r.read_exact(&mut byte)?;
    let kind = byte[0];
    let mut len = 0usize;
    let mut ended = false;
    for shift in (0..28).step_by(7) {
        r.read_exact(&mut byte)?;
        len |= usize::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            ended = true;
            break;
        }
    }
    if !ended {
        return Err(PacketError::Length);
    }
    if len > max_body {
        return Err(PacketError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok((kind, body))
}

fn put_str(out: &mut Vec<u8>, field: &'static str, s: &[u8]) -> Result<(), PacketError> {
    let len = u16::try_from(s.len()).map_err(|_| PacketError::StringTooLong { field, len: s.len() })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s);
    Ok(())
}

/// Fixed header: the packet type and the variable-length remaining length.
pub fn frame(kind: u8, body: Vec<u8>) -> Vec<u8> {
    let mut out = vec![kind];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend(body);
    out
}

pub fn connect_packet(
    client_id: &str,
    keep_alive_s: u16,
    will: (&str, &[u8]),
    username: Option<&str>,
    password: Option<&str>,
) -> Result<Vec<u8>, PacketError> {
    let mut body = Vec::new();
    put_str(&mut body, "protocol name", b"MQTT")?;
    body.push(4); // protocol level 3.1.1
                  // Clean session, a retained QoS 1 will, then the credentials present.
    let mut flags = 0b0010_0000 | 0b0000_1000 | 0b0000_0100 | 0b0000_0010;
    if username.is_some() {
        flags |= 0x80;
    }
    if password.is_some() {
        flags |= 0x40;
    }
    body.push(flags);
    body.extend_from_slice(&keep_alive_s.to_be_bytes());
    put_str(&mut body, "client id", client_id.as_bytes())?;
    put_str(&mut body, "will topic", will.0.as_bytes())?;
    put_str(&mut body, "will message", will.1)?;
    if let Some(u) = username {
        put_str(&mut body, "username", u.as_bytes())?;
    }
    if let Some(p) = password {
        put_str(&mut body, "password", p.as_bytes())?;
    }
    Ok(frame(CONNECT, body))
}

pub fn publish_packet(
    topic: &str,
    payload: &[u8],
    packet_id: Option<u16>,
    retain: bool,
) -> Result<Vec<u8>, PacketError> {
    let mut body = Vec::new();
    put_str(&mut body, "topic", topic.as_bytes())?;
    let mut kind = PUBLISH | u8::from(retain);
    if let Some(id) = packet_id {
        kind |= 0b10; // QoS 1
        body.extend_from_slice(&id.to_be_bytes());
    }
    body.extend_from_slice(payload);
    Ok(frame(kind, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_length_uses_the_variable_length_encoding() {
        // Examples from the MQTT 3.1.1 specification, section 2.2.3.
        for (len, encoded) in [
            (0usize, vec![0x00]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (16_383, vec![0xff, 0x7f]),
            (16_384, vec![0x80, 0x80, 0x01]),
        ] {
            let packet = frame(PUBLISH, vec![0; len]);
            assert_eq!(&packet[1..1 + encoded.len()], &encoded[..], "length {len}");
            assert_eq!(packet.len(), 1 + encoded.len() + len);
            let (kind, body) = read_packet(&mut packet.as_slice(), usize::MAX).unwrap();
            assert_eq!((kind, body.len()), (PUBLISH, len));
        }
    }

    #[test]
    fn publish_packet_layout() {
        let p = publish_packet("a/b", b"hi", Some(0x0102), true).unwrap();
        assert_eq!(p, vec![0x33, 9, 0, 3, b'a', b'/', b'b', 1, 2, b'h', b'i']);
        let p = publish_packet("a", b"x", None, false).unwrap();
        assert_eq!(p, vec![0x30, 4, 0, 1, b'a', b'x']);
        let long = "t".repeat(MAX_STRING + 1);
        assert!(matches!(
            publish_packet(&long, b"", None, false),
            Err(PacketError::StringTooLong { field: "topic", .. })
        ));
    }

    #[test]
    fn connect_packet_carries_will_and_credentials() {
        let p = connect_packet("c", 60, ("w", b"off"), Some("u"), Some("p")).unwrap();
        // header, "MQTT", level 4, flags: user, password, will retain, will QoS 1, will, clean
        assert_eq!(&p[2..10], &[0, 4, b'M', b'Q', b'T', b'T', 4, 0b1110_1110]);
        assert_eq!(&p[10..12], &60u16.to_be_bytes());
        assert_eq!(p[1] as usize, p.len() - 2);
    }

    #[test]
    fn a_broker_announcing_a_huge_packet_is_refused_before_any_allocation() {
        // 256 MiB announced (the largest remaining length), then nothing.
        let announced = [PUBACK, 0xff, 0xff, 0xff, 0x7f];
        let err = read_packet(&mut announced.as_slice(), MAX_INCOMING).unwrap_err();
        assert!(matches!(err, PacketError::TooLarge(268_435_455)), "{err}");
        let endless = [PUBACK, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(matches!(
            read_packet(&mut endless.as_slice(), MAX_INCOMING),
            Err(PacketError::Length)
        ));
        let cut = [PUBACK, 2, 0];
        assert!(matches!(
            read_packet(&mut cut.as_slice(), MAX_INCOMING),
            Err(PacketError::Io(_))
        ));
    }
}

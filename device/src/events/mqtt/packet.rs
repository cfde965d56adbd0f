//! MQTT 3.1.1 packets through the `mqttbytes` codec, with the two guards a
//! publisher on a hostile network needs around it: what a broker sends is read
//! with a cap on its size (a publisher expects only acknowledgements of a few
//! bytes, so a broker that announces megabytes is refused, not obeyed), and
//! what the device sends is checked against the protocol's 64 KiB strings
//! (the codec would truncate the length silently).

use std::io::Read;

use bytes::BytesMut;
use mqttbytes::v4::{self, Connect, Disconnect, LastWill, Login, PingReq, Publish, Subscribe};
use mqttbytes::QoS;

pub use mqttbytes::v4::Packet;

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
    #[error("malformed packet from the broker ({0:?})")]
    Malformed(mqttbytes::Error),
    #[error("{field} is {len} bytes; MQTT strings stop at {MAX_STRING}")]
    StringTooLong { field: &'static str, len: usize },
    #[error("cannot encode the packet ({0:?})")]
    Encode(mqttbytes::Error),
}

/// Reads the next packet of at most `max_body` bytes; bytes that arrived
/// beyond it stay in `pending` for the next call.
pub fn read_packet(
    r: &mut impl Read,
    pending: &mut BytesMut,
    max_body: usize,
) -> Result<Packet, PacketError> {
    let mut chunk = [0u8; 256];
    loop {
        match v4::read(pending, max_body) {
            Ok(packet) => return Ok(packet),
            // Never more than one frame of `max_body` (and a chunk) is buffered.
            Err(mqttbytes::Error::InsufficientBytes(_)) => {
                let n = r.read(&mut chunk)?;
                if n == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
                }
                pending.extend_from_slice(&chunk[..n]);
            }
            Err(mqttbytes::Error::PayloadSizeLimitExceeded(len)) => return Err(PacketError::TooLarge(len)),
            Err(e) => return Err(PacketError::Malformed(e)),
        }
    }
}

fn check(field: &'static str, s: &[u8]) -> Result<(), PacketError> {
    match s.len() > MAX_STRING {
        true => Err(PacketError::StringTooLong { field, len: s.len() }),
        false => Ok(()),
    }
}

fn encoded(
    write: impl FnOnce(&mut BytesMut) -> Result<usize, mqttbytes::Error>,
) -> Result<Vec<u8>, PacketError> {
    let mut buffer = BytesMut::new();
    write(&mut buffer).map_err(PacketError::Encode)?;
    Ok(buffer.to_vec())
}

/// CONNECT with a clean session, a retained QoS 1 will and the credentials given.
pub fn connect_packet(
    client_id: &str,
    keep_alive_s: u16,
    will: (&str, &[u8]),
    username: Option<&str>,
    password: Option<&str>,
) -> Result<Vec<u8>, PacketError> {
    check("client id", client_id.as_bytes())?;
    check("will topic", will.0.as_bytes())?;
    check("will message", will.1)?;
    check("username", username.unwrap_or_default().as_bytes())?;
    check("password", password.unwrap_or_default().as_bytes())?;
    let mut connect = Connect::new(client_id);
    connect.keep_alive = keep_alive_s;
    connect.clean_session = true;
    connect.last_will = Some(LastWill::new(will.0, will.1, QoS::AtLeastOnce, true));
    if username.is_some() || password.is_some() {
        connect.login = Some(Login::new(
            username.unwrap_or_default(),
            password.unwrap_or_default(),
        ));
    }
    encoded(|b| connect.write(b))
}

/// PUBLISH at QoS 1 when `packet_id` is given, QoS 0 otherwise.
pub fn publish_packet(
    topic: &str,
    payload: &[u8],
    packet_id: Option<u16>,
    retain: bool,
) -> Result<Vec<u8>, PacketError> {
    check("topic", topic.as_bytes())?;
    let qos = match packet_id {
        Some(_) => QoS::AtLeastOnce,
        None => QoS::AtMostOnce,
    };
    let mut publish = Publish::new(topic, qos, payload);
    publish.retain = retain;
    publish.pkid = packet_id.unwrap_or(0);
    encoded(|b| publish.write(b))
}

/// SUBSCRIBE to one topic filter at QoS 0: a question lost with the connection
/// is cheap to ask again, and the device owes the broker no acknowledgements.
pub fn subscribe_packet(filter: &str, packet_id: u16) -> Result<Vec<u8>, PacketError> {
    check("topic filter", filter.as_bytes())?;
    let mut subscribe = Subscribe::new(filter, QoS::AtMostOnce);
    subscribe.pkid = packet_id;
    encoded(|b| subscribe.write(b))
}

pub fn ping_packet() -> Vec<u8> {
    encoded(|b| PingReq.write(b)).unwrap_or_else(|_| vec![0xc0, 0])
}

pub fn disconnect_packet() -> Vec<u8> {
    encoded(|b| Disconnect.write(b)).unwrap_or_else(|_| vec![0xe0, 0])
}

/// A packet's name, for errors.
pub fn name(packet: &Packet) -> &'static str {
    match packet {
        Packet::Connect(_) => "CONNECT",
        Packet::ConnAck(_) => "CONNACK",
        Packet::Publish(_) => "PUBLISH",
        Packet::PubAck(_) => "PUBACK",
        Packet::PubRec(_) => "PUBREC",
        Packet::PubRel(_) => "PUBREL",
        Packet::PubComp(_) => "PUBCOMP",
        Packet::Subscribe(_) => "SUBSCRIBE",
        Packet::SubAck(_) => "SUBACK",
        Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        Packet::UnsubAck(_) => "UNSUBACK",
        Packet::PingReq => "PINGREQ",
        Packet::PingResp => "PINGRESP",
        Packet::Disconnect => "DISCONNECT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<Packet, PacketError> {
        read_packet(&mut &bytes[..], &mut BytesMut::new(), MAX_INCOMING)
    }

    #[test]
    fn remaining_length_uses_the_variable_length_encoding() {
        // Examples from the MQTT 3.1.1 specification, section 2.2.3 (the topic
        // "a" takes 3 of the remaining bytes).
        for (len, encoded) in [
            (127usize, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (16_383, vec![0xff, 0x7f]),
            (16_384, vec![0x80, 0x80, 0x01]),
        ] {
            let packet = publish_packet("a", &vec![7; len - 3], None, false).unwrap();
            assert_eq!(&packet[1..1 + encoded.len()], &encoded[..], "length {len}");
            assert_eq!(packet.len(), 1 + encoded.len() + len);
            let back = read_packet(&mut packet.as_slice(), &mut BytesMut::new(), usize::MAX).unwrap();
            assert!(matches!(back, Packet::Publish(p) if p.payload.len() == len - 3));
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
        assert_eq!(ping_packet(), vec![0xc0, 0]);
        assert_eq!(disconnect_packet(), vec![0xe0, 0]);
    }

    #[test]
    fn connect_packet_carries_will_and_credentials() {
        let p = connect_packet("c", 60, ("w", b"off"), Some("u"), Some("p")).unwrap();
        // header, "MQTT", level 4, flags: user, password, will retain, will QoS 1, will, clean
        assert_eq!(&p[2..10], &[0, 4, b'M', b'Q', b'T', b'T', 4, 0b1110_1110]);
        assert_eq!(&p[10..12], &60u16.to_be_bytes());
        assert_eq!(p[1] as usize, p.len() - 2);
        let anonymous = connect_packet("c", 60, ("w", b"off"), None, None).unwrap();
        assert_eq!(anonymous[9], 0b0010_1110);
    }

    #[test]
    fn a_broker_announcing_a_huge_packet_is_refused_before_any_allocation() {
        // 256 MiB announced (the largest remaining length), then nothing.
        let err = read(&[0x40, 0xff, 0xff, 0xff, 0x7f]).unwrap_err();
        assert!(matches!(err, PacketError::TooLarge(268_435_455)), "{err}");
        assert!(matches!(
            read(&[0x40, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(PacketError::Malformed(_))
        ));
        assert!(matches!(read(&[0x40, 2, 0]), Err(PacketError::Io(_))));
        assert!(matches!(read(&[0x40, 2, 0, 7]), Ok(Packet::PubAck(a)) if a.pkid == 7));
        // Two packets in one read: the second waits for the next call.
        let mut pending = BytesMut::new();
        let both = [0xd0, 0, 0x40, 2, 0, 9];
        let mut link = &both[..];
        assert!(matches!(
            read_packet(&mut link, &mut pending, MAX_INCOMING),
            Ok(Packet::PingResp)
        ));
        assert!(
            matches!(read_packet(&mut link, &mut pending, MAX_INCOMING), Ok(Packet::PubAck(a)) if a.pkid == 9)
        );
    }
}

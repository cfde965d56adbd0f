//! One connection to the broker. Every exchange has a deadline for the whole of
//! it (a broker that trickles bytes or answers pings forever instead of the
//! acknowledgement still runs out of time), and every wait a bound.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use std::collections::VecDeque;

use bytes::BytesMut;
use mqttbytes::v4::{ConnectReturnCode, Publish, SubscribeReasonCode};

use super::packet::{self, Packet, PacketError, MAX_INCOMING};
use super::MqttError;

/// Longest wait to open the TCP connection, per address.
const CONNECT_WAIT: Duration = Duration::from_secs(5);
/// Longest one exchange may take: CONNECT to CONNACK, PUBLISH to PUBACK.
pub const EXCHANGE_WAIT: Duration = Duration::from_secs(10);
/// Messages from subscriptions kept until taken; a broker that sends more
/// between two takes loses the oldest.
pub const INBOX: usize = 16;

/// What the bytes travel over.
pub trait Transport: Read + Write + Send {
    /// The socket underneath, for its timeouts.
    fn socket(&self) -> &TcpStream;
}

impl Transport for TcpStream {
    fn socket(&self) -> &TcpStream {
        self
    }
}

pub struct Connection {
    broker: String,
    stream: Box<dyn Transport>,
    /// Bytes read beyond the last packet.
    pending: BytesMut,
    next_packet_id: u16,
    last_sent: Instant,
    /// Messages on subscribed topics: (topic, payload).
    inbox: VecDeque<(String, Vec<u8>)>,
}

/// Opens a TCP connection to `host:port`, trying each address in turn.
pub fn dial(host: &str, port: u16) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "the name resolves to no address");
    for address in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&address, CONNECT_WAIT) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

impl Connection {
    /// Sends CONNECT over `stream` and waits for the broker's CONNACK.
    pub fn handshake(broker: String, stream: Box<dyn Transport>, connect: &[u8]) -> Result<Self, MqttError> {
        let mut conn = Self {
            broker,
            stream,
            pending: BytesMut::new(),
            next_packet_id: 1,
            last_sent: Instant::now(),
            inbox: VecDeque::new(),
        };
        let until = Instant::now() + EXCHANGE_WAIT;
        conn.send(connect, until)?;
        match conn.read(until)? {
            Packet::ConnAck(ack) if ack.code == ConnectReturnCode::Success => Ok(conn),
            Packet::ConnAck(ack) => Err(MqttError::Refused {
                broker: conn.broker.clone(),
                reason: connack_reason(ack.code),
            }),
            other => Err(conn.unexpected(&other, "CONNACK")),
        }
    }

    fn unexpected(&self, packet: &Packet, expected: &'static str) -> MqttError {
        MqttError::Protocol {
            broker: self.broker.clone(),
            found: packet::name(packet),
            expected,
        }
    }

    fn failed(&self, e: PacketError) -> MqttError {
        // A socket timeout reads as EAGAIN on Linux: say what it means.
        let e = match e {
            PacketError::Io(io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                PacketError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no answer in time",
                ))
            }
            other => other,
        };
        MqttError::Packet {
            broker: self.broker.clone(),
            source: e,
        }
    }

    /// Bounds the next wait by what is left until `until`.
    fn arm(&self, until: Instant) -> Result<(), MqttError> {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time");
            return Err(self.failed(e.into()));
        }
        let socket = self.stream.socket();
        socket
            .set_read_timeout(Some(left))
            .and_then(|()| socket.set_write_timeout(Some(left)))
            .map_err(|e| self.failed(e.into()))
    }

    fn send(&mut self, bytes: &[u8], until: Instant) -> Result<(), MqttError> {
        self.arm(until)?;
        let sent = self.stream.write_all(bytes).and_then(|()| self.stream.flush());
        sent.map_err(|e| self.failed(e.into()))?;
        self.last_sent = Instant::now();
        Ok(())
    }

    fn read(&mut self, until: Instant) -> Result<Packet, MqttError> {
        self.arm(until)?;
        // The whole packet is bounded by `until` too: each read re-arms.
        let mut pending = std::mem::take(&mut self.pending);
        let mut reader = Deadline {
            conn: &mut *self,
            until,
        };
        let result = packet::read_packet(&mut reader, &mut pending, MAX_INCOMING);
        self.pending = pending;
        result.map_err(|e| self.failed(e))
    }

    fn packet_id(&mut self) -> u16 {
        let id = self.next_packet_id;
        self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
        id
    }

    /// A message on a subscribed topic, kept for [`Self::take_inbox`].
    fn keep(&mut self, publish: Publish) {
        if self.inbox.len() == INBOX {
            self.inbox.pop_front();
        }
        self.inbox.push_back((publish.topic, publish.payload.to_vec()));
    }

    /// Publishes; at QoS 1, waits for its PUBACK until the exchange's deadline.
    pub fn publish(&mut self, topic: &str, payload: &[u8], qos: u8, retain: bool) -> Result<(), MqttError> {
        let packet_id = (qos > 0).then(|| self.packet_id());
        let packet = packet::publish_packet(topic, payload, packet_id, retain).map_err(|e| self.failed(e))?;
        let until = Instant::now() + EXCHANGE_WAIT;
        self.send(&packet, until)?;
        if let Some(id) = packet_id {
            // Keep-alive answers are skipped, but only until the deadline.
            loop {
                match self.read(until)? {
                    Packet::PubAck(ack) if ack.pkid == id => break,
                    Packet::PubAck(_) | Packet::PingResp => {}
                    Packet::Publish(p) if p.qos == mqttbytes::QoS::AtMostOnce => self.keep(p),
                    other => return Err(self.unexpected(&other, "PUBACK")),
                }
            }
        }
        Ok(())
    }

    /// Subscribes to `filter` at QoS 0 and waits for the broker's SUBACK.
    pub fn subscribe(&mut self, filter: &str) -> Result<(), MqttError> {
        let id = self.packet_id();
        let packet = packet::subscribe_packet(filter, id).map_err(|e| self.failed(e))?;
        let until = Instant::now() + EXCHANGE_WAIT;
        self.send(&packet, until)?;
        loop {
            match self.read(until)? {
                Packet::SubAck(ack) if ack.pkid == id => {
                    return match ack.return_codes.first() {
                        Some(SubscribeReasonCode::Success(_)) => Ok(()),
                        _ => Err(MqttError::Refused {
                            broker: self.broker.clone(),
                            reason: "subscription refused",
                        }),
                    };
                }
                Packet::PubAck(_) | Packet::PingResp => {}
                Packet::Publish(p) if p.qos == mqttbytes::QoS::AtMostOnce => self.keep(p),
                other => return Err(self.unexpected(&other, "SUBACK")),
            }
        }
    }

    /// Reads what the broker sends for at most `wait`: messages on subscribed
    /// topics go to the inbox, ping answers are dropped. Bytes of a packet that
    /// has not fully arrived stay for the next read.
    pub fn poll(&mut self, wait: Duration) -> Result<(), MqttError> {
        let until = Instant::now() + wait;
        loop {
            match self.read(until) {
                Ok(Packet::Publish(p)) if p.qos == mqttbytes::QoS::AtMostOnce => self.keep(p),
                Ok(Packet::PubAck(_) | Packet::PingResp) => {}
                Ok(other) => return Err(self.unexpected(&other, "PUBLISH at QoS 0")),
                Err(MqttError::Packet {
                    source: PacketError::Io(e),
                    ..
                }) if e.kind() == std::io::ErrorKind::TimedOut => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// The messages received since the last take, oldest first.
    pub fn take_inbox(&mut self) -> Vec<(String, Vec<u8>)> {
        self.inbox.drain(..).collect()
    }

    /// Pings when half the keep-alive has passed without sending.
    pub fn keep_alive(&mut self, keep_alive: Duration) -> Result<(), MqttError> {
        if keep_alive.is_zero() || self.last_sent.elapsed() < keep_alive / 2 {
            return Ok(());
        }
        self.send(&packet::ping_packet(), Instant::now() + EXCHANGE_WAIT)
    }

    pub fn disconnect(&mut self) {
        let _ = self.send(
            &packet::disconnect_packet(),
            Instant::now() + Duration::from_secs(1),
        );
    }
}

/// Reads from a connection, each read bounded by what is left of one deadline.
struct Deadline<'a> {
    conn: &'a mut Connection,
    until: Instant,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the broker ran out of time",
            ));
        }
        self.conn.stream.socket().set_read_timeout(Some(left))?;
        self.conn.stream.read(buf)
    }
}

fn connack_reason(code: ConnectReturnCode) -> &'static str {
    match code {
        ConnectReturnCode::Success => "accepted",
        ConnectReturnCode::RefusedProtocolVersion => "unacceptable protocol version",
        ConnectReturnCode::BadClientId => "client identifier rejected",
        ConnectReturnCode::ServiceUnavailable => "server unavailable",
        ConnectReturnCode::BadUserNamePassword => "bad user name or password",
        ConnectReturnCode::NotAuthorized => "not authorised",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A broker on loopback that answers CONNECT with `answer`, byte by byte
    /// every `pace`.
    fn broker(answer: Vec<u8>, pace: Duration) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let _ = packet::read_packet(&mut s, &mut BytesMut::new(), 1 << 16);
            for b in answer {
                if s.write_all(&[b]).is_err() {
                    return;
                }
                std::thread::sleep(pace);
            }
            std::thread::sleep(Duration::from_secs(30));
        });
        port
    }

    fn connect(port: u16) -> Result<Connection, MqttError> {
        let stream = dial("127.0.0.1", port).unwrap();
        let packet = packet::connect_packet("c", 60, ("w", b"off"), None, None).unwrap();
        Connection::handshake("test".into(), Box::new(stream), &packet)
    }

    #[test]
    fn a_trickling_or_boastful_broker_runs_out_of_time_or_is_refused() {
        // CONNACK one byte every 4 s: each read is quick enough, the whole is not.
        let start = Instant::now();
        let err = connect(broker(vec![0x20, 2, 0, 0], Duration::from_secs(4)))
            .err()
            .unwrap();
        assert!(
            start.elapsed() < EXCHANGE_WAIT + Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert!(err.to_string().contains("time"), "{err}");
        // A packet of 256 MiB announced: refused from its header.
        let err = connect(broker(vec![0x20, 0xff, 0xff, 0xff, 0x7f], Duration::ZERO))
            .err()
            .unwrap();
        assert!(err.to_string().contains("at most 1024"), "{err}");
        // The right answer works.
        connect(broker(vec![0x20, 2, 0, 0], Duration::ZERO)).unwrap();
        // Refused by name, and a PUBLISH where the CONNACK belongs is named too.
        let err = connect(broker(vec![0x20, 2, 0, 4], Duration::ZERO))
            .err()
            .unwrap();
        assert!(err.to_string().contains("bad user name or password"), "{err}");
        let err = connect(broker(vec![0x30, 4, 0, 1, b'a', b'x'], Duration::ZERO))
            .err()
            .unwrap();
        assert!(err.to_string().contains("PUBLISH (expected CONNACK)"), "{err}");
    }
}

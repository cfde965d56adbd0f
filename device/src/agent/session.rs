//! One conversation with a flashing host, over whatever link carries it: the
//! greeting (a small frame with the token, nothing else before it), then a
//! resumable transfer into `staging/` whose held prefix the sender confirms by
//! hash, then an install on `Commit`.

use std::io::{Read, Write};

use edgevlm_shared::bundle::sha256;
use edgevlm_shared::wire::{
    read_message_within, write_message, Request, Response, WireError, MAX_FRAME, MAX_GREETING,
};

use super::gate::Gate;
use super::slots::State;
use super::staging::{Part, Staging};

/// What one agent shares between its connections.
pub struct Agent<'a> {
    pub state: &'a State,
    pub gate: Gate,
    pub staging: Staging,
    /// Largest bundle accepted.
    pub max_bundle: u64,
}

/// How a conversation ended when the link did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The peer hung up or was turned away.
    Closed,
    Installed,
}

/// A link that learns when its peer has shown the token (its deadlines widen).
pub trait Admitted {
    fn admitted(&mut self);
}

struct Transfer<'a> {
    size: u64,
    sha256: [u8; 32],
    signature: Vec<u8>,
    part: Part<'a>,
    /// Whether the sender has confirmed the held prefix (chunks only after).
    confirmed: bool,
}

fn refuse(link: &mut impl Write, reason: impl Into<String>) -> Result<Outcome, WireError> {
    write_message(
        link,
        &Response::Refused {
            reason: reason.into(),
        },
    )?;
    Ok(Outcome::Closed)
}

fn agent_failed(e: impl std::fmt::Display) -> WireError {
    WireError::Io(std::io::Error::other(e.to_string()))
}

impl Agent<'_> {
    /// Serves one conversation until the peer hangs up, is refused, or installs.
    pub fn converse<L: Read + Write + Admitted>(&self, link: &mut L) -> Result<Outcome, WireError> {
        // A stranger gets one small frame, and only a greeting passes.
        let first: Request = match read_message_within(link, MAX_GREETING) {
            Ok(r) => r,
            Err(WireError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Ok(Outcome::Closed)
            }
            Err(e) => return Err(e),
        };
        let token = match &first {
            Request::Hello { token, .. } | Request::Status { token } => token,
            _ => return refuse(link, "expected Hello or Status with the token first"),
        };
        if !self.gate.admit(token) {
            return refuse(link, "bad token");
        }
        link.admitted();
        let mut transfer = None;
        let mut request = first;
        loop {
            if let Some(outcome) = self.answer(link, request, &mut transfer)? {
                return Ok(outcome);
            }
            request = match read_message_within(link, MAX_FRAME) {
                Ok(r) => r,
                Err(WireError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Ok(Outcome::Closed)
                }
                Err(e) => return Err(e),
            };
        }
    }

    /// Answers one request; `Some` ends the conversation.
    fn answer<'s>(
        &'s self,
        link: &mut impl Write,
        request: Request,
        transfer: &mut Option<Transfer<'s>>,
    ) -> Result<Option<Outcome>, WireError> {
        match request {
            Request::Status { token } => {
                if !self.gate.admit(&token) {
                    return refuse(link, "bad token").map(Some);
                }
                let response = match self.state.status() {
                    Ok(s) => Response::Status {
                        name: s.name,
                        model_version: s.model_version,
                        slot: s.slot.name().into(),
                    },
                    Err(e) => Response::Refused {
                        reason: e.to_string(),
                    },
                };
                write_message(link, &response)?;
            }
            Request::Hello {
                token,
                size,
                sha256,
                signature,
            } => {
                if !self.gate.admit(&token) {
                    return refuse(link, "bad token").map(Some);
                }
                if size == 0 || size > self.max_bundle {
                    let limit = self.max_bundle;
                    return refuse(link, format!("a bundle of {size} bytes: expected 1 to {limit}"))
                        .map(Some);
                }
                // A transfer this connection had open is set aside first, so its
                // part counts as idle again.
                *transfer = None;
                let Some(part) = self.staging.begin(sha256, size).map_err(agent_failed)? else {
                    // Most often this host's own broken connection, not yet timed out.
                    write_message(link, &Response::Busy { retry_after_ms: 1000 })?;
                    return Ok(Some(Outcome::Closed));
                };
                write_message(link, &Response::Resume { offset: part.held })?;
                *transfer = Some(Transfer {
                    size,
                    sha256,
                    signature,
                    part,
                    confirmed: false,
                });
            }
            Request::Continue {
                offset,
                prefix_sha256,
            } => {
                let Some(t) = transfer.as_mut() else {
                    return refuse(link, "continue before hello").map(Some);
                };
                if offset != t.part.held {
                    let held = t.part.held;
                    // Given back before the answer: a peer that reconnects at
                    // once finds its part free.
                    *transfer = None;
                    return refuse(
                        link,
                        format!("continue at {offset} but the agent holds {held} bytes"),
                    )
                    .map(Some);
                }
                t.confirmed = true;
                if t.part.prefix_sha256().map_err(agent_failed)? == prefix_sha256 {
                    write_message(link, &Response::Ack { offset })?;
                } else {
                    // Not the sender's bytes (another peer's garbage, a torn
                    // write): start this bundle over rather than finish it wrong.
                    t.part.discard().map_err(agent_failed)?;
                    write_message(link, &Response::Resume { offset: 0 })?;
                }
            }
            Request::Chunk { offset, data } => {
                let Some(t) = transfer.as_mut().filter(|t| t.confirmed) else {
                    return refuse(link, "chunk before hello and continue").map(Some);
                };
                let held = t.part.held;
                if offset != held || held + data.len() as u64 > t.size {
                    let size = t.size;
                    *transfer = None;
                    return refuse(
                        link,
                        format!("chunk at {offset} but the agent holds {held} of {size} bytes"),
                    )
                    .map(Some);
                }
                t.part.append(&data).map_err(agent_failed)?;
                write_message(link, &Response::Ack { offset: t.part.held })?;
            }
            Request::Commit => {
                let Some(mut t) = transfer.take().filter(|t| t.confirmed) else {
                    return refuse(link, "commit before hello and continue").map(Some);
                };
                let bytes = t.part.read_all().map_err(agent_failed)?;
                if bytes.len() as u64 != t.size || sha256(&bytes) != t.sha256 {
                    t.part.remove();
                    return refuse(link, "received bytes do not match the announced size and sha256")
                        .map(Some);
                }
                let result = self.state.install(&bytes, &t.signature);
                // Installed, or refused for what the bytes are: either way done.
                t.part.remove();
                return match result {
                    Ok(r) => {
                        eprintln!(
                            "agent: installed {} version {} into slot {}",
                            r.name,
                            r.model_version,
                            r.slot.name()
                        );
                        write_message(
                            link,
                            &Response::Installed {
                                name: r.name,
                                model_version: r.model_version,
                                slot: r.slot.name().into(),
                                selftest_caption: r.selftest_caption,
                            },
                        )?;
                        Ok(Some(Outcome::Installed))
                    }
                    Err(e) => {
                        eprintln!("agent: {e}");
                        refuse(link, e.to_string()).map(Some)
                    }
                };
            }
        }
        Ok(None)
    }
}

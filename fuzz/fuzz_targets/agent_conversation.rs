//! The agent's conversation on arbitrary link bytes, against a real state folder
//! (a trusted key, empty slots, a staging folder): raw bytes as a stranger sends
//! them, and the same bytes after a valid greeting, so transfers, resumes and
//! commits are reached. It must answer or fail, never panic, and never write
//! outside `staging/`.
#![no_main]

use std::io::{Cursor, Read, Write};
use std::sync::OnceLock;
use std::time::Duration;

use edgevlm_device::agent::{Admitted, Agent, Limits, ServerConfig, State};
use edgevlm_shared::bundle::signature;
use edgevlm_shared::wire::{encode_frame, Request, Token};
use libfuzzer_sys::fuzz_target;

const TOKEN: &str = "fuzzing-token-of-16+";

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
        // Answers are not kept: a long run must not grow.
        Ok(buf.len().min(1 << 16))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
impl Admitted for Link {
    fn admitted(&mut self) {}
}

struct Fixture {
    _dir: tempfile::TempDir,
    state: &'static State,
    cfg: &'static ServerConfig,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = signature::generate().expect("key");
        signature::save(&key, &dir.path().join("trusted"), "k").expect("save key");
        let state = Box::leak(Box::new(State::open(dir.path()).expect("state")));
        let cfg = Box::leak(Box::new(ServerConfig {
            listen: String::new(),
            token: Token::new(TOKEN).expect("token"),
            max_bundle: 1 << 16,
            max_installs: 0,
            limits: Limits {
                bad_token_delay: Duration::ZERO,
                ..Limits::default()
            },
        }));
        Fixture {
            _dir: dir,
            state,
            cfg,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let agent = Agent::new(f.state, f.cfg).expect("agent");
    let mut raw = Link {
        input: Cursor::new(data.to_vec()),
        output: Vec::new(),
    };
    let _ = agent.converse(&mut raw);
    // Greeted: a Hello with the token for a bundle of the first bytes' size.
    let size = u64::from(u16::from_le_bytes([
        data.first().copied().unwrap_or(1),
        data.get(1).copied().unwrap_or(0),
    ]));
    let mut greeted = encode_frame(&Request::Hello {
        token: TOKEN.into(),
        size,
        sha256: [data.get(2).copied().unwrap_or(0); 32],
        signature: vec![0; 64],
    });
    greeted.extend_from_slice(data.get(3..).unwrap_or_default());
    let mut link = Link {
        input: Cursor::new(greeted),
        output: Vec::new(),
    };
    let _ = agent.converse(&mut link);
    drop(link.output);
});

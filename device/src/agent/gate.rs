//! Who may talk to the agent: a peer that shows the token. Wrong tokens are
//! answered only after a delay that doubles with every failure since the last
//! success, whichever connection it came from, so a guesser gets a handful of
//! tries a minute however many connections it opens.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use edgevlm_shared::wire::Token;

/// Doublings of the delay before it stops growing (1 s base: 32 s).
const MAX_DOUBLINGS: u32 = 5;

pub struct Gate {
    token: Token,
    /// Delay before the first wrong token is answered.
    base_delay: Duration,
    failures: AtomicU32,
}

impl Gate {
    pub fn new(token: Token, base_delay: Duration) -> Self {
        Self {
            token,
            base_delay,
            failures: AtomicU32::new(0),
        }
    }

    /// Whether `offered` is the token; a wrong one returns only after the
    /// current backoff delay.
    pub fn admit(&self, offered: &str) -> bool {
        if self.token.matches(offered) {
            self.failures.store(0, Ordering::Relaxed);
            return true;
        }
        let before = self.failures.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(self.delay_after(before));
        false
    }

    fn delay_after(&self, failures: u32) -> Duration {
        self.base_delay * (1u32 << failures.min(MAX_DOUBLINGS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn wrong_tokens_wait_longer_each_time_until_the_right_one() {
        let gate = Gate::new(
            Token::new("the-real-token-of-16+").unwrap(),
            Duration::from_millis(20),
        );
        let timed = |offered: &str| {
            let start = Instant::now();
            (gate.admit(offered), start.elapsed())
        };
        let (ok, first) = timed("guess");
        assert!(!ok && first >= Duration::from_millis(20), "{first:?}");
        let (_, second) = timed("guess");
        let (_, third) = timed("guess");
        assert!(second >= Duration::from_millis(40), "{second:?}");
        assert!(third >= Duration::from_millis(80), "{third:?}");
        assert_eq!(gate.delay_after(50), Duration::from_millis(20 * 32));
        let (ok, right) = timed("the-real-token-of-16+");
        assert!(ok && right < Duration::from_millis(20), "{right:?}");
        let (_, after) = timed("guess");
        assert!(
            after < Duration::from_millis(40),
            "reset by the right token: {after:?}"
        );
    }
}

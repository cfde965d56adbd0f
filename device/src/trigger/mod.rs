//! What starts a capture. Each trigger is generic over the embedded-hal 1.0 traits
//! it needs (a pin, a delay), so the logic never names a board: on a Linux board
//! the pin is linux-embedded-hal's character-device pin, in tests a mock.

mod button;
mod motion;
mod value_file;

pub use button::{Button, ButtonConfig};
pub use motion::{Motion, MotionConfig};
pub use value_file::{ValueFileError, ValueFilePin};

/// A debounced, edge-detected event source polled by the run loop.
pub trait Trigger {
    type Error;
    /// Polls once; `Ok(true)` when the trigger fired since the last poll.
    fn poll(&mut self) -> Result<bool, Self::Error>;
}

/// Fires every `period` polls (the run loop polls at a fixed tick).
pub struct Interval {
    period: u32,
    count: u32,
}

impl Interval {
    pub fn new(period_ticks: u32) -> Self {
        Self {
            period: period_ticks.max(1),
            count: 0,
        }
    }
}

impl Trigger for Interval {
    type Error = core::convert::Infallible;
    fn poll(&mut self) -> Result<bool, Self::Error> {
        self.count += 1;
        if self.count >= self.period {
            self.count = 0;
            return Ok(true);
        }
        Ok(false)
    }
}

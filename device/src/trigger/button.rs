//! A push button on a GPIO input: sampled every `poll_ms`, a level counts only
//! after it held for `debounce_ms`, and only the press edge (released → pressed)
//! fires.

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::InputPin;

use super::Trigger;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ButtonConfig {
    /// Pressed reads low (a pull-up and a switch to ground).
    pub active_low: bool,
    pub debounce_ms: u32,
    pub poll_ms: u32,
}

impl Default for ButtonConfig {
    fn default() -> Self {
        Self {
            active_low: true,
            debounce_ms: 30,
            poll_ms: 5,
        }
    }
}

pub struct Button<P, D> {
    pin: P,
    delay: D,
    cfg: ButtonConfig,
    /// The debounced state: pressed or not.
    pressed: bool,
    /// Consecutive samples that disagree with `pressed`.
    disagreeing: u32,
}

impl<P: InputPin, D: DelayNs> Button<P, D> {
    pub fn new(pin: P, delay: D, cfg: ButtonConfig) -> Self {
        Self {
            pin,
            delay,
            cfg,
            pressed: false,
            disagreeing: 0,
        }
    }

    fn samples_needed(&self) -> u32 {
        self.cfg.debounce_ms.div_ceil(self.cfg.poll_ms.max(1)).max(1)
    }

    /// One sample; true when a debounced press begins.
    pub fn sample(&mut self) -> Result<bool, P::Error> {
        let high = self.pin.is_high()?;
        let now_pressed = high != self.cfg.active_low;
        if now_pressed == self.pressed {
            self.disagreeing = 0;
            return Ok(false);
        }
        self.disagreeing += 1;
        if self.disagreeing < self.samples_needed() {
            return Ok(false);
        }
        self.pressed = now_pressed;
        self.disagreeing = 0;
        Ok(now_pressed)
    }

    /// Blocks (sampling every `poll_ms`) until the next debounced press.
    pub fn wait_for_press(&mut self) -> Result<(), P::Error> {
        loop {
            if self.sample()? {
                return Ok(());
            }
            self.delay.delay_ms(self.cfg.poll_ms);
        }
    }

    pub fn release(self) -> (P, D) {
        (self.pin, self.delay)
    }
}

impl<P: InputPin, D: DelayNs> Trigger for Button<P, D> {
    type Error = P::Error;
    fn poll(&mut self) -> Result<bool, P::Error> {
        self.sample()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::delay::NoopDelay;
    use embedded_hal_mock::eh1::digital::{Mock, State, Transaction};

    fn levels(states: &[State]) -> Mock {
        Mock::new(&states.iter().map(|&s| Transaction::get(s)).collect::<Vec<_>>())
    }

    #[test]
    fn bounces_are_ignored_and_one_press_fires_once() {
        use State::{High, Low};
        // Active low, 3 samples to settle: a bounce (Low, High) then a held press,
        // then a release bounce and a held release.
        let seq = [
            High, Low, High, Low, Low, Low, Low, Low, High, Low, High, High, High, High,
        ];
        let mut pin = levels(&seq);
        let cfg = ButtonConfig {
            active_low: true,
            debounce_ms: 15,
            poll_ms: 5,
        };
        let mut button = Button::new(pin.clone(), NoopDelay::new(), cfg);
        let fired: Vec<bool> = seq.iter().map(|_| button.poll().unwrap()).collect();
        assert_eq!(fired.iter().filter(|&&f| f).count(), 1, "{fired:?}");
        // The press is accepted on the third consecutive low sample (index 5).
        assert!(fired[5]);
        pin.done();
    }

    #[test]
    fn wait_for_press_returns_after_a_held_press() {
        use State::{High, Low};
        let seq = [High, High, Low, Low];
        let mut pin = levels(&seq);
        let cfg = ButtonConfig {
            active_low: true,
            debounce_ms: 2,
            poll_ms: 1,
        };
        let mut button = Button::new(pin.clone(), NoopDelay::new(), cfg);
        button.wait_for_press().unwrap();
        pin.done();
    }
}

//! Events as JSON lines over a serial port, written through the embedded-hal
//! serial trait (`embedded_hal_nb::serial::Write`), so any HAL's UART works; on a
//! Linux board that is linux-embedded-hal's tty port.

use embedded_hal_nb::serial::Write;

/// Writes each event as one line, blocking until the UART took every byte.
pub struct SerialSink<W> {
    uart: W,
}

impl<W: Write<u8>> SerialSink<W> {
    pub fn new(uart: W) -> Self {
        Self { uart }
    }

    pub fn write_line(&mut self, line: &str) -> Result<(), W::Error> {
        for &byte in line.as_bytes().iter().chain(b"\n") {
            nb::block!(self.uart.write(byte))?;
        }
        nb::block!(self.uart.flush())
    }

    pub fn release(self) -> W {
        self.uart
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_nb::serial::{ErrorKind, ErrorType};

    /// A UART whose transmit buffer is full on every other poll.
    #[derive(Default)]
    struct BusyUart {
        sent: Vec<u8>,
        busy: bool,
    }

    impl ErrorType for BusyUart {
        type Error = ErrorKind;
    }

    impl Write<u8> for BusyUart {
        fn write(&mut self, byte: u8) -> nb::Result<(), ErrorKind> {
            self.busy = !self.busy;
            if self.busy {
                return Err(nb::Error::WouldBlock);
            }
            self.sent.push(byte);
            Ok(())
        }
        fn flush(&mut self) -> nb::Result<(), ErrorKind> {
            Ok(())
        }
    }

    #[test]
    fn every_byte_reaches_a_busy_uart_followed_by_a_newline() {
        let mut sink = SerialSink::new(BusyUart::default());
        sink.write_line("{\"seq\":1}").unwrap();
        sink.write_line("{\"seq\":2}").unwrap();
        assert_eq!(sink.release().sent, b"{\"seq\":1}\n{\"seq\":2}\n");
    }
}

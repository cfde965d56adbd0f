//! An input pin read from a value file: the kernel's sysfs GPIO interface
//! (`/sys/class/gpio/gpioN/value`) on boards without the character device, or a
//! file a test harness writes to press the button.

use std::path::{Path, PathBuf};

use embedded_hal::digital::{ErrorKind, ErrorType, InputPin};

#[derive(Debug, thiserror::Error)]
#[error("GPIO value file {path}: {reason}")]
pub struct ValueFileError {
    path: PathBuf,
    reason: String,
}

impl embedded_hal::digital::Error for ValueFileError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

pub struct ValueFilePin {
    path: PathBuf,
}

impl ValueFilePin {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
        }
    }

    fn error(&self, reason: impl Into<String>) -> ValueFileError {
        ValueFileError {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }
}

impl ErrorType for ValueFilePin {
    type Error = ValueFileError;
}

impl InputPin for ValueFilePin {
    fn is_high(&mut self) -> Result<bool, ValueFileError> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| self.error(e.to_string()))?;
        match text.trim() {
            "1" => Ok(true),
            "0" => Ok(false),
            other => Err(self.error(format!("expected \"0\" or \"1\", found {other:?}"))),
        }
    }

    fn is_low(&mut self) -> Result<bool, ValueFileError> {
        self.is_high().map(|high| !high)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_levels_and_names_the_file_on_bad_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("value");
        let mut pin = ValueFilePin::new(&path);
        std::fs::write(&path, "1\n").unwrap();
        assert!(pin.is_high().unwrap());
        std::fs::write(&path, "0\n").unwrap();
        assert!(pin.is_low().unwrap());
        std::fs::write(&path, "on").unwrap();
        let err = pin.is_high().unwrap_err().to_string();
        assert!(err.contains("value") && err.contains("\"on\""), "{err}");
    }
}

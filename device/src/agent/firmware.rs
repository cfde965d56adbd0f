//! Firmware carried in a bundle: a new `edgevlm-device` for the board. It must be
//! an ELF executable for this board's architecture, and it must pass the golden
//! self-test on its own bundle before its slot may become active.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a firmware's self-test may run: it loads one bundle and captions one
/// image, seconds on a board; a hung binary must not hold the install forever.
pub const SELFTEST_LIMIT: Duration = Duration::from_secs(180);
/// Most of its complaint kept for the error message.
const MAX_STDERR: u64 = 16 << 10;

#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    #[error("refused: the bundle's firmware is not an ELF executable")]
    NotElf,
    #[error("refused: the bundle's firmware is built for {found}, this board is {board}")]
    WrongArchitecture { found: String, board: String },
    #[error("refused: the bundle's firmware fails its self-test: {0}")]
    SelfTest(String),
}

/// ELF `e_machine` values of the architectures a board may have.
const MACHINES: [(u16, &str); 5] = [
    (3, "x86"),
    (40, "arm"),
    (62, "x86_64"),
    (183, "aarch64"),
    (243, "riscv64"),
];

fn machine_name(machine: u16) -> String {
    MACHINES
        .iter()
        .find(|(m, _)| *m == machine)
        .map(|(_, name)| name.to_string())
        .unwrap_or_else(|| format!("ELF machine {machine}"))
}

/// The architecture an ELF executable is built for.
pub fn elf_architecture(binary: &[u8]) -> Result<String, FirmwareError> {
    if binary.len() < 20 || &binary[..4] != b"\x7fELF" {
        return Err(FirmwareError::NotElf);
    }
    // e_machine follows e_type at offset 18, in the file's byte order.
    let bytes = [binary[18], binary[19]];
    let machine = match binary[5] {
        1 => u16::from_le_bytes(bytes),
        2 => u16::from_be_bytes(bytes),
        _ => return Err(FirmwareError::NotElf),
    };
    Ok(machine_name(machine))
}

/// Refuses firmware a board of architecture `board` cannot run.
pub fn check_architecture(binary: &[u8], board: &str) -> Result<(), FirmwareError> {
    let found = elf_architecture(binary)?;
    if found != board {
        return Err(FirmwareError::WrongArchitecture {
            found,
            board: board.into(),
        });
    }
    Ok(())
}

/// Runs the installed firmware's own self-test on its bundle, killed after
/// [`SELFTEST_LIMIT`].
pub fn selftest(executable: &Path, bundle: &Path) -> Result<(), FirmwareError> {
    selftest_within(executable, bundle, SELFTEST_LIMIT)
}

fn selftest_within(executable: &Path, bundle: &Path, limit: Duration) -> Result<(), FirmwareError> {
    let failed = |what: String| FirmwareError::SelfTest(format!("{}: {what}", executable.display()));
    let mut child = Command::new(executable)
        .arg("selftest")
        .arg("--bundle")
        .arg(bundle)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    // Read on the side, so a chatty child never blocks on a full pipe.
    let stderr = child.stderr.take().map(|pipe| {
        std::thread::spawn(move || {
            let mut said = Vec::new();
            let mut pipe = pipe.take(MAX_STDERR);
            let _ = pipe.read_to_end(&mut said);
            said
        })
    });
    let until = Instant::now() + limit;
    let status = loop {
        match child.try_wait().map_err(|e| failed(e.to_string()))? {
            Some(status) => break status,
            None if Instant::now() >= until => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(format!(
                    "no answer within {} s; killed",
                    limit.as_secs_f32()
                )));
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    if !status.success() {
        let said = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
        return Err(failed(format!(
            "exited with {status}: {}",
            String::from_utf8_lossy(&said).trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(class_data: u8, machine: [u8; 2]) -> Vec<u8> {
        let mut b = b"\x7fELF\x02".to_vec();
        b.push(class_data);
        b.resize(18, 0);
        b.extend(machine);
        b.resize(64, 0);
        b
    }

    #[test]
    fn reads_the_architecture_from_the_elf_header() {
        assert_eq!(elf_architecture(&elf(1, [183, 0])).unwrap(), "aarch64");
        assert_eq!(elf_architecture(&elf(1, [62, 0])).unwrap(), "x86_64");
        assert_eq!(elf_architecture(&elf(2, [0, 40])).unwrap(), "arm");
        assert_eq!(elf_architecture(&elf(1, [9, 9])).unwrap(), "ELF machine 2313");
        assert!(matches!(
            elf_architecture(b"#!/bin/sh\n"),
            Err(FirmwareError::NotElf)
        ));
    }

    #[test]
    fn this_test_binary_fits_this_board_and_others_do_not() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        check_architecture(&me, std::env::consts::ARCH).unwrap();
        let foreign = if std::env::consts::ARCH == "aarch64" {
            [62, 0]
        } else {
            [183, 0]
        };
        let err = check_architecture(&elf(1, foreign), std::env::consts::ARCH)
            .unwrap_err()
            .to_string();
        assert!(err.contains(std::env::consts::ARCH), "{err}");
        check_architecture(&elf(1, [183, 0]), "aarch64").unwrap();
    }

    #[test]
    fn a_hung_firmware_self_test_is_killed_at_its_limit() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("edgevlm-device");
        std::fs::write(&exe, "#!/bin/sh\nsleep 30\n").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let start = Instant::now();
        let err = selftest_within(&exe, Path::new("b"), Duration::from_millis(300))
            .unwrap_err()
            .to_string();
        assert!(err.contains("killed"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(10));

        std::fs::write(&exe, "#!/bin/sh\necho 'golden caption differs' >&2\nexit 3\n").unwrap();
        let err = selftest(&exe, Path::new("b")).unwrap_err().to_string();
        assert!(err.contains("golden caption differs"), "{err}");
    }
}

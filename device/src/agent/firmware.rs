//! Firmware carried in a bundle: a new `edgevlm-device` for the board. It must be
//! an ELF executable for this board's architecture, and it must pass the golden
//! self-test on its own bundle before its slot may become active.

use std::path::Path;
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    #[error("refused: the bundle's firmware is not an ELF executable")]
    NotElf,
    #[error("refused: the bundle's firmware is built for {found}, this board is {board}")]
    WrongArchitecture { found: String, board: &'static str },
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

/// Refuses firmware this board cannot run.
pub fn check_architecture(binary: &[u8]) -> Result<(), FirmwareError> {
    let found = elf_architecture(binary)?;
    let board = std::env::consts::ARCH;
    if found != board {
        return Err(FirmwareError::WrongArchitecture { found, board });
    }
    Ok(())
}

/// Runs the installed firmware's own self-test on its bundle.
pub fn selftest(executable: &Path, bundle: &Path) -> Result<(), FirmwareError> {
    let out = Command::new(executable)
        .arg("selftest")
        .arg("--bundle")
        .arg(bundle)
        .output()
        .map_err(|e| FirmwareError::SelfTest(format!("{}: {e}", executable.display())))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        return Err(FirmwareError::SelfTest(format!(
            "{} exited with {}: {}",
            executable.display(),
            out.status,
            said.trim()
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
        check_architecture(&me).unwrap();
        let foreign = if std::env::consts::ARCH == "aarch64" {
            [62, 0]
        } else {
            [183, 0]
        };
        let err = check_architecture(&elf(1, foreign)).unwrap_err().to_string();
        assert!(err.contains(std::env::consts::ARCH), "{err}");
    }
}

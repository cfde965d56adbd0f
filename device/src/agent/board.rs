//! Which board a state folder belongs to, its two slots, and what an install or
//! a status query reports.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn name(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct InstallReport {
    pub slot: Slot,
    pub name: String,
    pub model_version: u64,
    pub selftest_caption: String,
}

/// The board a state folder belongs to.
#[derive(Debug, Clone)]
pub struct Board {
    /// Architecture its firmware must be built for (`std::env::consts::ARCH` names).
    pub arch: String,
    /// Whether firmware may run here: only on the board itself. An offline install
    /// into a mounted card leaves the firmware's self-test to the board's `start`.
    pub run_firmware: bool,
}

impl Board {
    /// The machine this runs on.
    pub fn this() -> Self {
        Self {
            arch: std::env::consts::ARCH.into(),
            run_firmware: true,
        }
    }

    /// A board of architecture `arch` whose state folder is mounted here.
    pub fn offline(arch: &str) -> Self {
        Self {
            arch: arch.into(),
            run_firmware: false,
        }
    }
}

/// What a slot holds, checked for its signature but not run.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotStatus {
    pub slot: Slot,
    pub name: String,
    pub model_version: u64,
}

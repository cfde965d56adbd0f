//! `edgevlm-device run`: the device loop, configured by `device.toml`.

use std::path::Path;

use anyhow::Result;

pub fn run(config: &Path, limits: edgevlm_device::run::Limits) -> Result<()> {
    let cfg = edgevlm_device::run::DeviceConfig::load(config)?;
    edgevlm_device::run::run(&cfg, limits)?;
    Ok(())
}

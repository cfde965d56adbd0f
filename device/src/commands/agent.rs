//! `edgevlm-device agent`, `install` and `start`: the A/B slots a bundle is
//! installed into and started from.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use edgevlm_device::agent::{ServerConfig, State};

use crate::cli::AgentArgs;

pub fn agent(a: AgentArgs) -> Result<()> {
    let AgentArgs {
        config,
        state,
        listen,
        token,
        serial,
        baud,
        max_bundle_mb,
        max_installs,
    } = a;
    let (from_config, config_token) = match &config {
        Some(path) => {
            let (agent, token) = edgevlm_device::run::agent_settings(path)?;
            (Some(agent), token)
        }
        None => (None, None),
    };
    let state = state
        .or_else(|| from_config.as_ref().map(|a| a.state.clone()))
        .context("--state or a config with an [agent] section is needed")?;
    let token = token
        .or(config_token)
        .context("no agent token: pass --token, set EDGEVLM_AGENT_TOKEN or agent.token_file in the config")?;
    let listen = listen
        .or_else(|| from_config.as_ref().map(|a| a.listen.clone()))
        .unwrap_or_else(|| "127.0.0.1:7878".into());
    let max_bundle_mb = max_bundle_mb
        .or_else(|| from_config.as_ref().map(|a| a.max_bundle_mb))
        .unwrap_or(512);
    let state = State::open(&state)?;
    report_start(&state);
    let cfg = ServerConfig {
        listen,
        token,
        max_bundle: max_bundle_mb << 20,
        max_installs,
    };
    match serial.or_else(|| from_config.as_ref().and_then(|a| a.serial.clone())) {
        Some(port) => edgevlm_device::agent::serve_serial(&state, &cfg, &port, baud)?,
        None => edgevlm_device::agent::serve(&state, &cfg)?,
    }
    Ok(())
}

pub fn install(state: &Path, bundle: PathBuf, sig: Option<PathBuf>) -> Result<()> {
    let state = State::open(state)?;
    let sig_path = sig.unwrap_or_else(|| {
        let mut name = bundle.clone().into_os_string();
        name.push(".sig");
        name.into()
    });
    let bytes = std::fs::read(&bundle).with_context(|| format!("reading {}", bundle.display()))?;
    let sig = std::fs::read(&sig_path).with_context(|| format!("reading {}", sig_path.display()))?;
    let r = state.install(&bytes, &sig)?;
    println!(
        "installed {} version {} into slot {}",
        r.name,
        r.model_version,
        r.slot.name()
    );
    Ok(())
}

pub fn start(state: &Path, command: Vec<String>) -> Result<()> {
    let state = State::open(state)?;
    let (slot, runtime, note) = state.select()?;
    if let Some(note) = note {
        eprintln!("{note}");
    }
    println!(
        "slot {}: {} version {}",
        slot.name(),
        runtime.manifest.name,
        runtime.manifest.model_version
    );
    if !command.is_empty() {
        drop(runtime);
        let exe = match state.executable(slot) {
            Some(exe) => exe,
            None => std::env::current_exe().context("locating edgevlm-device")?,
        };
        eprintln!("start: {} {}", exe.display(), command.join(" "));
        std::io::stdout().flush()?;
        use std::os::unix::process::CommandExt;
        let err = std::process::Command::new(&exe).args(&command).exec();
        return Err(err).with_context(|| format!("starting {}", exe.display()));
    }
    Ok(())
}

fn report_start(state: &State) {
    match state.select() {
        Ok((slot, runtime, note)) => {
            if let Some(note) = note {
                eprintln!("agent: {note}");
            }
            eprintln!(
                "agent: running {} version {} from slot {}",
                runtime.manifest.name,
                runtime.manifest.model_version,
                slot.name()
            );
        }
        Err(e) => eprintln!("agent: {e}"),
    }
}

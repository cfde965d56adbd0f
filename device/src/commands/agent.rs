//! `edgevlm-device agent`, `install` and `start`: the A/B slots a bundle is
//! installed into and started from.

use std::io::Write;
use std::path::{Path, PathBuf};

use std::time::Duration;

use anyhow::{Context, Result};
use edgevlm_device::agent::{Limits, ServerConfig, State};
use edgevlm_shared::wire::Token;

use crate::cli::AgentArgs;

pub fn agent(a: AgentArgs) -> Result<()> {
    let from_config = a
        .config
        .as_deref()
        .map(edgevlm_device::run::agent_settings)
        .transpose()?;
    let state = a
        .state
        .or_else(|| from_config.as_ref().map(|c| c.state.clone()))
        .context("--state or a config with an [agent] section is needed")?;
    let token_file = a
        .token_file
        .or_else(|| from_config.as_ref().and_then(|c| c.token_file.clone()))
        .context("no agent token: pass --token-file or set agent.token_file in the config (one line of at least 16 bytes, e.g. `openssl rand -hex 16`)")?;
    let token = Token::read(&token_file)?;
    let listen = a
        .listen
        .or_else(|| from_config.as_ref().map(|c| c.listen.clone()))
        .unwrap_or_else(|| "127.0.0.1:7878".into());
    let max_bundle_mb = a
        .max_bundle_mb
        .or_else(|| from_config.as_ref().map(|c| c.max_bundle_mb))
        .unwrap_or(512);
    let defaults = Limits::default();
    let seconds =
        |flag: Option<f64>, config: Option<f64>, default: Duration, what: &str| match flag.or(config) {
            None => Ok(default),
            Some(s) => Duration::try_from_secs_f64(s)
                .ok()
                .filter(|d| !d.is_zero())
                .with_context(|| format!("{what}: expected a positive number of seconds, found {s}")),
        };
    let c = from_config.as_ref();
    let limits = Limits {
        greeting: seconds(
            a.greeting_timeout,
            c.and_then(|c| c.greeting_timeout_s),
            defaults.greeting,
            "greeting timeout",
        )?,
        idle: seconds(
            a.idle_timeout,
            c.and_then(|c| c.idle_timeout_s),
            defaults.idle,
            "idle timeout",
        )?,
        session: seconds(
            a.session_timeout,
            c.and_then(|c| c.session_timeout_s),
            defaults.session,
            "session timeout",
        )?,
        connections: a
            .max_connections
            .or(c.and_then(|c| c.max_connections))
            .unwrap_or(defaults.connections)
            .max(1),
        bad_token_delay: defaults.bad_token_delay,
    };
    let state = State::open(&state)?;
    report_start(&state);
    let cfg = ServerConfig {
        listen,
        token,
        max_bundle: max_bundle_mb << 20,
        max_installs: a.max_installs,
        limits,
    };
    match a
        .serial
        .or_else(|| from_config.as_ref().and_then(|c| c.serial.clone()))
    {
        Some(port) => edgevlm_device::agent::serve_serial(&state, &cfg, &port, a.baud)?,
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
        let bundle = state.verified(slot)?;
        // The very file whose bytes were matched against the signed bundle is
        // the one executed (through its descriptor): swapping the path between
        // the check and the launch changes nothing.
        let (exe, shown) = match state.firmware_to_run(slot, &bundle)? {
            Some(file) => {
                use std::os::fd::IntoRawFd;
                let fd = file.into_raw_fd();
                (
                    PathBuf::from(format!("/proc/self/fd/{fd}")),
                    state.firmware_path(slot),
                )
            }
            None => {
                let exe = std::env::current_exe().context("locating edgevlm-device")?;
                (exe.clone(), exe)
            }
        };
        eprintln!("start: {} {}", shown.display(), command.join(" "));
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

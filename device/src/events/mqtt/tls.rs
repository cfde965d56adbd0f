//! TLS to the broker, the way fleets run MQTT: the broker's certificate checked
//! against a CA file (the name checked is the host's, or `server_name`), and a
//! client certificate when the broker asks for one. rustls with the `ring`
//! provider: no OpenSSL on the board.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde::Deserialize;

use super::client::Transport;
use super::MqttError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttTls {
    /// PEM file of the authority that signed the broker's certificate.
    pub ca_file: PathBuf,
    /// PEM certificate (chain) and key of this device, for brokers that ask.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// The name the broker's certificate must carry [default: `host`].
    pub server_name: Option<String>,
}

impl MqttTls {
    /// Paths relative to `dir` (the config file's folder) made absolute.
    pub fn rebase(&mut self, dir: &Path) {
        for path in [
            Some(&mut self.ca_file),
            self.client_cert.as_mut(),
            self.client_key.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            if path.is_relative() {
                *path = dir.join(&*path);
            }
        }
    }
}

/// What opens TLS sessions to one broker, read once at start.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

impl Transport for StreamOwned<ClientConnection, TcpStream> {
    fn socket(&self) -> &TcpStream {
        &self.sock
    }
}

fn bad(path: &Path, what: impl std::fmt::Display) -> MqttError {
    MqttError::Config(format!("{}: {what}", path.display()))
}

impl Tls {
    /// Reads the CA (and client) files: an unreadable or empty one is an error
    /// naming it, at start, not a failed connection later.
    pub fn load(cfg: &MqttTls, host: &str) -> Result<Self, MqttError> {
        let mut roots = RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(&cfg.ca_file).map_err(|e| bad(&cfg.ca_file, e))?;
        for cert in certs {
            let cert = cert.map_err(|e| bad(&cfg.ca_file, e))?;
            roots.add(cert).map_err(|e| bad(&cfg.ca_file, e))?;
        }
        if roots.is_empty() {
            return Err(bad(&cfg.ca_file, "expected at least one PEM certificate"));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| MqttError::Config(format!("TLS: {e}")))?
            .with_root_certificates(roots);
        let config = match (&cfg.client_cert, &cfg.client_key) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| bad(cert, e))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad(cert, e))?;
                let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e))?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| bad(cert, e))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(MqttError::Config(
                    "tls: client_cert and client_key go together".into(),
                ))
            }
        };
        let name = cfg.server_name.as_deref().unwrap_or(host);
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|e| MqttError::Config(format!("tls: server name {name:?}: {e}")))?;
        Ok(Self {
            config: Arc::new(config),
            server_name,
        })
    }

    /// Wraps a connected socket; the handshake happens with the first bytes
    /// sent, under the connection's deadlines.
    pub fn wrap(&self, socket: TcpStream, broker: &str) -> Result<Box<dyn Transport>, MqttError> {
        let session = ClientConnection::new(self.config.clone(), self.server_name.clone())
            .map_err(|e| MqttError::Config(format!("TLS to {broker}: {e}")))?;
        Ok(Box::new(StreamOwned::new(session, socket)))
    }
}

//! TLS identities of the hub and sites, loaded from PEM files written by [`crate::pki`].

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// A node's certificate, key and the network CA, as PEM text.
#[derive(Clone)]
pub struct NodeTls {
    /// This node's certificate chain.
    pub cert_pem: String,
    /// This node's private key (PKCS#8).
    pub key_pem: String,
    /// The network CA certificate that issued every node's certificate.
    pub ca_pem: String,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTls")
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Paths of a node's PEM files, as they appear in `site.toml` / `hub.toml`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsPaths {
    /// Certificate PEM.
    pub cert: PathBuf,
    /// Private key PEM.
    pub key: PathBuf,
    /// Network CA PEM.
    pub ca: PathBuf,
}

/// A PEM file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source} (create the network's certificates with `medfed pki init`)")]
pub struct TlsLoadError {
    /// The file.
    pub path: PathBuf,
    /// The cause.
    pub source: std::io::Error,
}

fn read(path: &Path) -> Result<String, TlsLoadError> {
    std::fs::read_to_string(path).map_err(|source| TlsLoadError {
        path: path.to_path_buf(),
        source,
    })
}

impl NodeTls {
    /// Loads the three PEM files.
    pub fn load(paths: &TlsPaths) -> Result<Self, TlsLoadError> {
        Ok(Self {
            cert_pem: read(&paths.cert)?,
            key_pem: read(&paths.key)?,
            ca_pem: read(&paths.ca)?,
        })
    }

    /// Server side: present our certificate, and *require* a client certificate from the CA.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
            .client_auth_optional(false)
    }

    /// Client side: trust only the network CA, present our certificate, expect `server_name`.
    pub fn client_config(&self, server_name: &str) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .domain_name(server_name)
    }
}

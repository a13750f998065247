//! `hub.toml`: the network as the hub sees it.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! site_deadline_ms = 10000
//!
//! [tls]                      # the hub's client identity towards sites
//! cert = "pki/hub/cert.pem"
//! key = "pki/hub/key.pem"
//! ca = "pki/ca.pem"
//!
//! [[tokens]]                 # researchers' bearer tokens, stored as SHA-256 only
//! name = "researcher"
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//!
//! [[sites]]
//! name = "north"
//! url = "https://127.0.0.1:7001"
//! ```
//! Relative paths are resolved against the config file's directory.

use std::path::Path;

use medfed_core::SiteName;
use medfed_protocol::tls::TlsPaths;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::HubError;

/// The hub's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    /// Address of the researchers' HTTP API.
    pub listen: String,
    /// How long a site may take to answer before it is reported as timed out.
    #[serde(default = "default_deadline_ms")]
    pub site_deadline_ms: u64,
    /// The hub's TLS identity towards sites.
    pub tls: TlsPaths,
    /// API tokens (hashes only).
    #[serde(default)]
    pub tokens: Vec<TokenEntry>,
    /// The network's sites.
    pub sites: Vec<SiteEntry>,
}

fn default_deadline_ms() -> u64 {
    10_000
}

/// A bearer token, by its SHA-256 (tokens are random 256-bit strings, so a fast hash suffices).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Who holds it (for logs).
    pub name: String,
    /// Hex SHA-256 of the token.
    pub sha256: String,
}

impl TokenEntry {
    /// An entry for `token`.
    pub fn for_token(name: &str, token: &str) -> Self {
        Self {
            name: name.into(),
            sha256: hex::encode(Sha256::digest(token.as_bytes())),
        }
    }
}

/// A site the hub fans out to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteEntry {
    /// The site's name (as in its certificate).
    pub name: SiteName,
    /// Its Flight endpoint, `https://host:port`.
    pub url: String,
}

impl HubConfig {
    /// Reads `path`.
    pub fn load(path: &Path) -> Result<Self, HubError> {
        let err = |reason: String| HubError::Config(format!("{}: {reason}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let mut cfg: HubConfig = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut cfg.tls.cert, &mut cfg.tls.key, &mut cfg.tls.ca] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(cfg)
    }

    /// Writes the config as TOML.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(
            path,
            toml::to_string_pretty(self).map_err(std::io::Error::other)?,
        )
    }
}

//! A network's PKI in one call: a CA, a hub certificate (server + client auth) and one server
//! certificate per site, so a deployment needs no openssl incantations.
//!
//! Layout written under `DIR`:
//! ```text
//! ca.pem  ca.key                    the network CA (keep ca.key offline)
//! hub/cert.pem  hub/key.pem         the hub: client of sites, server for researchers
//! hub/signing.key  signing.pub      the hub's Ed25519 key: signs requests and audit checkpoints
//! sites/<name>/cert.pem  key.pem    each site: server only
//! sites/<name>/signing.key  .pub    each site's Ed25519 key: signs its audit checkpoints
//! ```
//! Every leaf also names `localhost` and `127.0.0.1`, so a demo network runs on loopback.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use medfed_core::SiteName;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use crate::tls::TlsPaths;

/// Failure creating the PKI.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// Certificate generation failed.
    #[error("generating certificates: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// Writing a file failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The directory already holds a CA: refusing to overwrite a network's trust root.
    #[error(
        "{0} already exists: refusing to replace a network's CA (remove it or choose another --out)"
    )]
    Exists(PathBuf),
}

/// Where the files of a network's PKI are.
#[derive(Debug, Clone)]
pub struct PkiLayout {
    /// Root directory.
    pub dir: PathBuf,
}

impl PkiLayout {
    /// The CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    /// The hub's TLS files.
    pub fn hub(&self) -> TlsPaths {
        self.node(self.dir.join("hub"))
    }
    /// A site's TLS files.
    pub fn site(&self, site: &SiteName) -> TlsPaths {
        self.node(self.dir.join("sites").join(site.as_str()))
    }
    /// The hub's directory (TLS and signing keys).
    pub fn hub_dir(&self) -> PathBuf {
        self.dir.join("hub")
    }
    /// A site's directory.
    pub fn site_dir(&self, site: &SiteName) -> PathBuf {
        self.dir.join("sites").join(site.as_str())
    }
    fn node(&self, d: PathBuf) -> TlsPaths {
        TlsPaths {
            cert: d.join("cert.pem"),
            key: d.join("key.pem"),
            ca: self.ca(),
        }
    }
}

fn write(path: &Path, text: &str) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(path, text).map_err(io)?;
    #[cfg(unix)]
    if path.extension().is_some_and(|e| e == "key")
        || path.file_name().is_some_and(|n| n == "key.pem")
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    Ok(())
}

fn leaf_params(
    name: &str,
    usages: Vec<ExtendedKeyUsagePurpose>,
) -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::new(vec![name.to_string(), "localhost".to_string()])?;
    p.subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    p.distinguished_name.push(DnType::CommonName, name);
    p.distinguished_name
        .push(DnType::OrganizationName, "medfed network");
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = usages;
    Ok(p)
}

/// Creates a CA, a hub certificate and one certificate per site under `dir`.
pub fn init(dir: &Path, hub: &str, sites: &[SiteName]) -> Result<PkiLayout, PkiError> {
    let layout = PkiLayout {
        dir: dir.to_path_buf(),
    };
    if layout.ca().exists() {
        return Err(PkiError::Exists(layout.ca()));
    }
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "medfed network CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    write(&layout.ca(), &ca.pem())?;
    write(&dir.join("ca.key"), &ca.key().serialize_pem())?;

    let issue = |params: CertificateParams, paths: &TlsPaths| -> Result<(), PkiError> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca)?;
        write(&paths.cert, &cert.pem())?;
        write(&paths.key, &key.serialize_pem())
    };
    issue(
        leaf_params(
            hub,
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )?,
        &layout.hub(),
    )?;
    signing_pair(&layout.hub_dir())?;
    for site in sites {
        issue(
            leaf_params(site.as_str(), vec![ExtendedKeyUsagePurpose::ServerAuth])?,
            &layout.site(site),
        )?;
        signing_pair(&layout.site_dir(site))?;
    }
    Ok(layout)
}

fn signing_pair(dir: &Path) -> Result<(), PkiError> {
    crate::signing::write_pair(dir, &crate::signing::generate())
        .map(|_| ())
        .map_err(|e| PkiError::Io {
            path: e.path,
            source: std::io::Error::other(e.reason),
        })
}

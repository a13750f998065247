//! Each node's Ed25519 signing key: the hub signs every request it sends to a site (naming study,
//! researcher, analysis and the addressed site), and every node signs its audit checkpoints.
//!
//! Files: `signing.key` (PKCS#8 PEM, mode 0600) and `signing.pub` (SPKI PEM) next to the node's
//! TLS files. A site is configured with the hub's `signing.pub`; an auditor with a node's.

use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};

/// A key file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct KeyFileError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

fn err(path: &Path, reason: impl ToString) -> KeyFileError {
    KeyFileError {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// A fresh key from the operating system's CSPRNG.
pub fn generate() -> SigningKey {
    let mut seed = [0u8; 32];
    rand::fill(&mut seed);
    SigningKey::from_bytes(&seed)
}

/// Writes `signing.key` and `signing.pub` into `dir`; returns their paths.
pub fn write_pair(dir: &Path, key: &SigningKey) -> Result<(PathBuf, PathBuf), KeyFileError> {
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    let (private, public) = (dir.join("signing.key"), dir.join("signing.pub"));
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| err(&private, e))?;
    std::fs::write(&private, pem.as_bytes()).map_err(|e| err(&private, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| err(&private, e))?;
    }
    let pub_pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| err(&public, e))?;
    std::fs::write(&public, pub_pem).map_err(|e| err(&public, e))?;
    Ok((private, public))
}

/// Reads a `signing.key`.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyFileError> {
    let pem = std::fs::read_to_string(path).map_err(|e| err(path, e))?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|e| err(path, format!("not an Ed25519 key: {e}")))
}

/// Reads a `signing.pub`.
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey, KeyFileError> {
    let pem = std::fs::read_to_string(path).map_err(|e| err(path, e))?;
    VerifyingKey::from_public_key_pem(&pem)
        .map_err(|e| err(path, format!("not an Ed25519 public key: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_round_trip_and_the_private_one_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let key = generate();
        let (private, public) = write_pair(dir.path(), &key).unwrap();
        assert_eq!(
            load_signing_key(&private).unwrap().to_bytes(),
            key.to_bytes()
        );
        assert_eq!(load_verifying_key(&public).unwrap(), key.verifying_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&private).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(load_verifying_key(&private).is_err());
    }
}

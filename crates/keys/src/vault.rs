//! Sealed files: whole-file AES-256-GCM under a fresh data key wrapped by the site's KEK.
//!
//! Used for what is not a served table: the raw inputs kept in bronze and the silver records.
//! Layout: `MEDFED-SEALED-1\n`, one JSON header line (KEK id, wrapped data key, what the file is),
//! a 12-byte nonce, the ciphertext. The header is authenticated as associated data, so it cannot be
//! swapped onto another file's body. Rotation rewrites only the header.
//!
//! # Example
//! ```
//! use medfed_keys::{keyring::KeyFile, vault};
//! let dir = tempfile::tempdir().unwrap();
//! let kek = KeyFile::create(&dir.path().join("site.key")).unwrap();
//! let sealed = vault::seal(&kek, "bronze/a.json", b"{\"resourceType\":\"Patient\"}").unwrap();
//! assert_eq!(vault::open(&kek, &sealed).unwrap(), b"{\"resourceType\":\"Patient\"}");
//! ```

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use serde::{Deserialize, Serialize};

use crate::keyring::{KeyError, KeyProvider, new_dek};

const MAGIC: &[u8] = b"MEDFED-SEALED-1\n";

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    kek_id: String,
    dek: String,
    what: String,
}

/// Why a sealed file could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    #[error("not a sealed medfed file")]
    NotSealed,
    #[error("{0}")]
    Key(#[from] KeyError),
    #[error("sealed file `{0}` failed authentication: wrong key or tampered")]
    Tampered(String),
}

/// Encrypts `plain`; `what` names the content (kept in clear in the header, e.g. a path).
pub fn seal(kek: &dyn KeyProvider, what: &str, plain: &[u8]) -> Result<Vec<u8>, VaultError> {
    let dek = new_dek();
    let header = Header {
        kek_id: kek.key_id(),
        dek: kek.wrap(&dek, &format!("vault/{what}"))?,
        what: what.to_string(),
    };
    seal_with(&dek, &header, plain)
}

fn seal_with(dek: &[u8; 32], header: &Header, plain: &[u8]) -> Result<Vec<u8>, VaultError> {
    let mut head = serde_json::to_vec(header).expect("header serialises");
    head.push(b'\n');
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(dek));
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let body = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plain,
                aad: &head,
            },
        )
        .map_err(|_| VaultError::Tampered(header.what.clone()))?;
    let mut out = Vec::with_capacity(MAGIC.len() + head.len() + 12 + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&head);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&body);
    Ok(out)
}

/// A sealed file's parts: header, the header's bytes (associated data), nonce, ciphertext.
struct Parts<'a> {
    header: Header,
    head: &'a [u8],
    nonce: &'a [u8],
    ciphertext: &'a [u8],
}

fn split(sealed: &[u8]) -> Result<Parts<'_>, VaultError> {
    let rest = sealed.strip_prefix(MAGIC).ok_or(VaultError::NotSealed)?;
    let end = rest
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(VaultError::NotSealed)?;
    let head = &rest[..=end];
    let header: Header = serde_json::from_slice(&head[..end]).map_err(|_| VaultError::NotSealed)?;
    let body = &rest[end + 1..];
    if body.len() < 12 {
        return Err(VaultError::NotSealed);
    }
    let (nonce, ciphertext) = body.split_at(12);
    Ok(Parts {
        header,
        head,
        nonce,
        ciphertext,
    })
}

/// Decrypts a sealed file.
pub fn open(kek: &dyn KeyProvider, sealed: &[u8]) -> Result<Vec<u8>, VaultError> {
    let Parts {
        header,
        head,
        nonce,
        ciphertext,
    } = split(sealed)?;
    if header.kek_id != kek.key_id() {
        return Err(KeyError::WrongKek {
            expected: header.kek_id,
            found: kek.key_id(),
        }
        .into());
    }
    let dek = kek.unwrap(&header.dek, &format!("vault/{}", header.what))?;
    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&dek[..]))
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: head,
            },
        )
        .map_err(|_| VaultError::Tampered(header.what))
}

/// Re-seals under a new KEK (rotation). The body is re-encrypted with the same data key
/// because the header it authenticates changes.
pub fn reseal(
    old: &dyn KeyProvider,
    new: &dyn KeyProvider,
    sealed: &[u8],
) -> Result<Vec<u8>, VaultError> {
    let plain = zeroize::Zeroizing::new(open(old, sealed)?);
    let header = split(sealed)?.header;
    let dek = old.unwrap(&header.dek, &format!("vault/{}", header.what))?;
    let header = Header {
        kek_id: new.key_id(),
        dek: new.wrap(&dek, &format!("vault/{}", header.what))?,
        what: header.what,
    };
    seal_with(&dek, &header, &plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::KeyFile;

    #[test]
    fn wrong_key_and_tampering_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let kek = KeyFile::create(&dir.path().join("a")).unwrap();
        let other = KeyFile::create(&dir.path().join("b")).unwrap();
        let mut sealed = seal(&kek, "x", b"secret 999-12-3456").unwrap();
        assert!(!sealed.windows(11).any(|w| w == b"999-12-3456"));
        assert!(open(&other, &sealed).is_err());
        let resealed = reseal(&kek, &other, &sealed).unwrap();
        assert_eq!(open(&other, &resealed).unwrap(), b"secret 999-12-3456");
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(matches!(open(&kek, &sealed), Err(VaultError::Tampered(_))));
        assert!(matches!(open(&kek, b"plain"), Err(VaultError::NotSealed)));
    }
}

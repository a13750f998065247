//! Envelope encryption of a site's files: data keys (DEKs) wrapped by a key-encryption key (KEK).
//!
//! Every encrypted Parquet table gets its own footer key and one key per column (Parquet modular
//! encryption, AES-GCM); every sealed blob (bronze inputs, silver records) its own DEK. DEKs are
//! random, used once per file, and stored only *wrapped* (AES-256-GCM under the KEK, with the
//! table and column as associated data so a wrapped key cannot be moved to another column).
//! The KEK comes from a [`KeyProvider`]: a key file by default ([`KeyFile`]); a KMS or HSM
//! implements the same two calls. Rotating the KEK re-wraps the DEKs and rewrites no data,
//! which is how KMS rotation works and why it takes milliseconds.
//!
//! # Example
//! ```
//! use medfed_keys::keyring::{KeyFile, Keyring};
//! let dir = tempfile::tempdir().unwrap();
//! let kek = KeyFile::create(&dir.path().join("site.key")).unwrap();
//! let mut ring = Keyring::new(&kek);
//! let keys = ring.table_keys(&kek, "person", &["person_id", "year_of_birth"]).unwrap();
//! assert_eq!(keys.columns.len(), 2);
//! ring.save(&dir.path().join("keyring.json")).unwrap();
//! let again = Keyring::load(&dir.path().join("keyring.json")).unwrap().expect("saved above");
//! assert_eq!(again.unwrap_table(&kek, "person").unwrap().footer, keys.footer);
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// A 256-bit key that wipes itself from memory when dropped.
pub type SecretKey = Zeroizing<[u8; 32]>;

/// Why a key could not be made, read, wrapped or unwrapped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("key file {0}: {1}")]
    File(PathBuf, String),
    #[error(
        "the data keys were wrapped by key `{expected}` but the key provider holds `{found}`; use the site's key file (or the previous one after an interrupted rotation)"
    )]
    WrongKek { expected: String, found: String },
    #[error("unwrapping the key of {0} failed: wrong key or tampered keyring")]
    Unwrap(String),
    #[error("keyring {0}: {1}")]
    Keyring(PathBuf, String),
    #[error("no keys for table `{0}` in the keyring")]
    NoTable(String),
}

/// Where the key-encryption key lives. Implement this for a KMS: `wrap`/`unwrap` are the only
/// operations that need the KEK, so it never has to leave the KMS.
pub trait KeyProvider: Send + Sync {
    /// A stable, non-secret name of the current KEK (recorded next to what it wrapped).
    fn key_id(&self) -> String;
    /// Encrypts a data key; `context` binds it to its use (e.g. `person/person_id`).
    fn wrap(&self, dek: &[u8; 32], context: &str) -> Result<String, KeyError>;
    /// Reverses [`KeyProvider::wrap`].
    fn unwrap(&self, wrapped: &str, context: &str) -> Result<SecretKey, KeyError>;
}

/// A KEK kept in a local file (64 hex characters, mode 0600).
pub struct KeyFile {
    key: SecretKey,
    id: String,
}

impl KeyFile {
    /// Creates a new random key at `path` (refuses to overwrite one).
    pub fn create(path: &Path) -> Result<Self, KeyError> {
        create_secret(path).map(Self::from_key)
    }

    /// Reads an existing key file.
    pub fn open(path: &Path) -> Result<Self, KeyError> {
        read_secret(path).map(Self::from_key)
    }

    /// Opens the key at `path`, creating it first if there is none.
    pub fn open_or_create(path: &Path) -> Result<Self, KeyError> {
        if path.exists() {
            Self::open(path)
        } else {
            Self::create(path)
        }
    }

    fn from_key(key: SecretKey) -> Self {
        let id =
            hex::encode(&Sha256::digest([b"medfed-kek-id:".as_slice(), &key[..]].concat())[..8]);
        Self { key, id }
    }
}

/// Writes a new random 256-bit secret to `path` as hex, mode 0600, refusing to overwrite.
pub fn create_secret(path: &Path) -> Result<SecretKey, KeyError> {
    let err = |e: std::io::Error| KeyError::File(path.to_path_buf(), e.to_string());
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(err)?;
    }
    let key = new_dek();
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(err)?;
    file.write_all(hex::encode(key.as_slice()).as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(err)?;
    Ok(key)
}

/// Reads a secret written by [`create_secret`].
pub fn read_secret(path: &Path) -> Result<SecretKey, KeyError> {
    let text = Zeroizing::new(fs::read_to_string(path).map_err(|e| {
        KeyError::File(
            path.to_path_buf(),
            format!("{e} (an encrypted site needs its key file)"),
        )
    })?);
    let bytes = Zeroizing::new(
        hex::decode(text.trim())
            .map_err(|_| KeyError::File(path.to_path_buf(), "not 64 hex characters".into()))?,
    );
    let key: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| KeyError::File(path.to_path_buf(), "not a 256-bit key".into()))?;
    Ok(Zeroizing::new(key))
}

impl KeyProvider for KeyFile {
    fn key_id(&self) -> String {
        self.id.clone()
    }

    fn wrap(&self, dek: &[u8; 32], context: &str) -> Result<String, KeyError> {
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.key[..]));
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: dek,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| KeyError::Unwrap(context.into()))?;
        Ok(B64.encode([nonce.as_slice(), &sealed].concat()))
    }

    fn unwrap(&self, wrapped: &str, context: &str) -> Result<SecretKey, KeyError> {
        let bytes = B64
            .decode(wrapped)
            .map_err(|_| KeyError::Unwrap(context.into()))?;
        if bytes.len() < 12 {
            return Err(KeyError::Unwrap(context.into()));
        }
        let (nonce, sealed) = bytes.split_at(12);
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.key[..]));
        let dek = Zeroizing::new(
            cipher
                .decrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: sealed,
                        aad: context.as_bytes(),
                    },
                )
                .map_err(|_| KeyError::Unwrap(context.into()))?,
        );
        let key: [u8; 32] = dek
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::Unwrap(context.into()))?;
        Ok(Zeroizing::new(key))
    }
}

/// A fresh random data key.
pub fn new_dek() -> SecretKey {
    Zeroizing::new(Aes256Gcm::generate_key(&mut OsRng).into())
}

/// The unwrapped keys of one table.
pub struct TableKeys {
    /// Footer (metadata) key.
    pub footer: SecretKey,
    /// One key per column, by column name.
    pub columns: BTreeMap<String, SecretKey>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct WrappedTable {
    footer: String,
    columns: BTreeMap<String, String>,
}

/// The wrapped data keys of a directory of encrypted tables (`keyring.json` beside them).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Keyring {
    /// Id of the KEK that wrapped every key here.
    kek_id: String,
    tables: BTreeMap<String, WrappedTable>,
}

impl Keyring {
    /// An empty keyring for keys wrapped by `kek`.
    pub fn new(kek: &dyn KeyProvider) -> Self {
        Self {
            kek_id: kek.key_id(),
            tables: BTreeMap::new(),
        }
    }

    /// Reads a keyring; `Ok(None)` when there is none (the tables are not encrypted).
    pub fn load(path: &Path) -> Result<Option<Self>, KeyError> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| KeyError::Keyring(path.to_path_buf(), e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(KeyError::Keyring(path.to_path_buf(), e.to_string())),
        }
    }

    /// Writes the keyring atomically (temp file + rename).
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let err = |e: String| KeyError::Keyring(path.to_path_buf(), e);
        let json = serde_json::to_vec_pretty(self).map_err(|e| err(e.to_string()))?;
        let tmp = path.with_extension("json.tmp");
        fs::write(&tmp, json).map_err(|e| err(e.to_string()))?;
        fs::rename(&tmp, path).map_err(|e| err(e.to_string()))
    }

    /// Id of the KEK the keys are wrapped under.
    pub fn kek_id(&self) -> &str {
        &self.kek_id
    }

    /// Names of the tables with keys.
    pub fn tables(&self) -> impl Iterator<Item = &str> {
        self.tables.keys().map(String::as_str)
    }

    /// New keys for `table` (replacing any old ones: a rewritten file gets fresh keys).
    pub fn table_keys(
        &mut self,
        kek: &dyn KeyProvider,
        table: &str,
        columns: &[&str],
    ) -> Result<TableKeys, KeyError> {
        self.check_kek(kek)?;
        let footer = new_dek();
        let mut wrapped = WrappedTable {
            footer: kek.wrap(&footer, &format!("{table}/"))?,
            columns: BTreeMap::new(),
        };
        let mut keys = BTreeMap::new();
        for c in columns {
            let dek = new_dek();
            wrapped
                .columns
                .insert(c.to_string(), kek.wrap(&dek, &format!("{table}/{c}"))?);
            keys.insert(c.to_string(), dek);
        }
        self.tables.insert(table.to_string(), wrapped);
        Ok(TableKeys {
            footer,
            columns: keys,
        })
    }

    /// The keys of `table`, unwrapped.
    pub fn unwrap_table(&self, kek: &dyn KeyProvider, table: &str) -> Result<TableKeys, KeyError> {
        self.check_kek(kek)?;
        let w = self
            .tables
            .get(table)
            .ok_or_else(|| KeyError::NoTable(table.into()))?;
        let footer = kek.unwrap(&w.footer, &format!("{table}/"))?;
        let mut columns = BTreeMap::new();
        for (c, wrapped) in &w.columns {
            columns.insert(c.clone(), kek.unwrap(wrapped, &format!("{table}/{c}"))?);
        }
        Ok(TableKeys { footer, columns })
    }

    /// Re-wraps every key from `old` to `new` (KEK rotation; no data is rewritten).
    pub fn rewrap(&self, old: &dyn KeyProvider, new: &dyn KeyProvider) -> Result<Self, KeyError> {
        self.check_kek(old)?;
        let mut out = Keyring::new(new);
        for (table, w) in &self.tables {
            let mut columns = BTreeMap::new();
            let ctx = format!("{table}/");
            let footer = new.wrap(&*old.unwrap(&w.footer, &ctx)?, &ctx)?;
            for (c, wrapped) in &w.columns {
                let ctx = format!("{table}/{c}");
                columns.insert(c.clone(), new.wrap(&*old.unwrap(wrapped, &ctx)?, &ctx)?);
            }
            out.tables
                .insert(table.clone(), WrappedTable { footer, columns });
        }
        Ok(out)
    }

    fn check_kek(&self, kek: &dyn KeyProvider) -> Result<(), KeyError> {
        if kek.key_id() == self.kek_id {
            Ok(())
        } else {
            Err(KeyError::WrongKek {
                expected: self.kek_id.clone(),
                found: kek.key_id(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_key_is_bound_to_its_column_and_kek() {
        let dir = tempfile::tempdir().unwrap();
        let kek = KeyFile::create(&dir.path().join("a.key")).unwrap();
        let other = KeyFile::create(&dir.path().join("b.key")).unwrap();
        let dek = new_dek();
        let w = kek.wrap(&dek, "person/person_id").unwrap();
        assert_eq!(kek.unwrap(&w, "person/person_id").unwrap()[..], dek[..]);
        assert!(kek.unwrap(&w, "person/year_of_birth").is_err());
        assert!(other.unwrap(&w, "person/person_id").is_err());
        assert!(
            KeyFile::create(&dir.path().join("a.key")).is_err(),
            "never overwrites"
        );
    }

    #[test]
    fn rotation_rewraps_the_same_data_keys() {
        let dir = tempfile::tempdir().unwrap();
        let old = KeyFile::create(&dir.path().join("old.key")).unwrap();
        let new = KeyFile::create(&dir.path().join("new.key")).unwrap();
        let mut ring = Keyring::new(&old);
        let keys = ring.table_keys(&old, "death", &["death_date"]).unwrap();
        let rotated = ring.rewrap(&old, &new).unwrap();
        assert!(matches!(
            rotated.unwrap_table(&old, "death"),
            Err(KeyError::WrongKek { .. })
        ));
        let again = rotated.unwrap_table(&new, "death").unwrap();
        assert_eq!(again.footer[..], keys.footer[..]);
        assert_eq!(
            again.columns["death_date"][..],
            keys.columns["death_date"][..]
        );
    }
}

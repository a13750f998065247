//! Encryption at rest for a site's files, without the query engine.
//!
//! - [`keyring`]: key-encryption keys ([`keyring::KeyProvider`]; a key file by default, a KMS
//!   behind the same trait) and the wrapped data keys of a directory of tables;
//! - [`vault`]: sealed files (bronze inputs, silver records);
//! - [`parquet`]: OMOP tables written with Parquet modular encryption.
//!
//! Ingestion writes with this crate; the site's store reads with it (plus DataFusion). Keeping it
//! apart means the parsers and their fuzz targets build without DataFusion.

pub mod keyring;
pub mod parquet;
pub mod vault;

pub use keyring::{KeyError, KeyFile, KeyProvider, Keyring, SecretKey, TableKeys};
pub use parquet::{KEYRING, WriteError, write_table};

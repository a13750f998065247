//! Writing OMOP tables with Parquet modular encryption (the store reads them back with the same
//! [`TableKeys`]).
//!
//! Each table file has its own footer key and a key per column (so PHI-bearing columns such as
//! dates and source values never share a key with anything else); the keys are wrapped in the
//! directory's [`Keyring`]. The footer is encrypted too, so without the keys not even the
//! column statistics (min/max birth dates) can be read.

use std::fs::File;
use std::path::Path;

use ::parquet::arrow::ArrowWriter;
use ::parquet::basic::Compression;
use ::parquet::encryption::encrypt::FileEncryptionProperties;
use ::parquet::file::properties::WriterProperties;
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::keyring::{KeyError, KeyProvider, Keyring, TableKeys};

/// The name of the keyring file in an encrypted OMOP directory.
pub const KEYRING: &str = "keyring.json";

/// Why a table could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    #[error("{0}")]
    Key(#[from] KeyError),
    #[error("writing {0}: {1}")]
    Parquet(String, ::parquet::errors::ParquetError),
    #[error("creating {0}: {1}")]
    Io(String, std::io::Error),
}

/// Writes `batches` (all of `schema`) to `path`, encrypted when `keys` is given: fresh keys for the
/// table are added to the keyring, which the caller saves after all tables are written.
pub fn write_table(
    path: &Path,
    table: &str,
    schema: SchemaRef,
    batches: &[RecordBatch],
    keys: Option<(&mut Keyring, &dyn KeyProvider)>,
) -> Result<usize, WriteError> {
    let shown = path.display().to_string();
    let mut props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(1 << 20));
    if let Some((ring, kek)) = keys {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let keys = ring.table_keys(kek, table, &names)?;
        props = props.with_file_encryption_properties(
            encryption(&keys).map_err(|e| WriteError::Parquet(shown.clone(), e))?,
        );
    }
    let file = File::create(path).map_err(|e| WriteError::Io(shown.clone(), e))?;
    let parquet = |e| WriteError::Parquet(shown.clone(), e);
    let mut writer = ArrowWriter::try_new(file, schema, Some(props.build())).map_err(parquet)?;
    let mut rows = 0;
    for b in batches {
        rows += b.num_rows();
        writer.write(b).map_err(parquet)?;
    }
    writer.close().map_err(parquet)?;
    Ok(rows)
}

fn encryption(
    keys: &TableKeys,
) -> Result<std::sync::Arc<FileEncryptionProperties>, ::parquet::errors::ParquetError> {
    let mut b = FileEncryptionProperties::builder(keys.footer.to_vec());
    for (column, key) in &keys.columns {
        b = b.with_column_key(column, key.to_vec());
    }
    b.build()
}

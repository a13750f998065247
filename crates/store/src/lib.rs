//! A site's data, registered as tables of one DataFusion [`SessionContext`].
//!
//! Entrypoint is [`SiteStore::open`]: it registers each `DIR/omop/<table>.parquet` (or a
//! directory of Parquet files of that name) under its OMOP name, plus any extra tables the
//! custodian declares (a research extract as CSV or Parquet, e.g. DataSHIELD's CNSIM). Extra
//! tables get normalised column names (trimmed, lowercase, `[a-z0-9_]`) so researchers can write
//! them unquoted, and the columns the custodian lists as identifiers are marked so the query
//! checker treats them like `person_id`.
//!
//! Where the OMOP tables allow, the store also derives the site's feature tables
//! ([`features`], e.g. `readmission`) once at open.
//!
//! Tables written by `medfed ingest` are encrypted (Parquet modular encryption, see
//! `medfed_keys`); when the directory holds a `keyring.json` the store unwraps each table's keys
//! with the site's key file and reads them transparently.
//!
//! Trust boundary: the files are the hospital's own; nothing here leaves the site.
//!
//! # Example
//! ```no_run
//! # async fn f() -> Result<(), medfed_store::StoreError> {
//! use medfed_store::{SiteStore, StoreConfig};
//! let store = SiteStore::open(&StoreConfig::omop_dir("sites/north/omop")).await?;
//! let df = store.context().sql("SELECT COUNT(*) FROM person").await.unwrap();
//! # Ok(()) }
//! ```

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::csv::ReaderBuilder;
use arrow::csv::reader::Format;
use datafusion::catalog::MemTable;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::config::{ColumnDecryptionProperties, ConfigFileDecryptionProperties};
use datafusion::common::metadata::FieldMetadata;
use datafusion::execution::config::SessionConfig;
use datafusion::prelude::{ParquetReadOptions, SessionContext, col};
use serde::{Deserialize, Serialize};

use medfed_keys::{KeyFile, Keyring};

pub mod features;

/// Where a site's data lives.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Directory holding `<table>.parquet` for OMOP CDM tables.
    pub omop_dir: PathBuf,
    /// Extra tables beyond the CDM.
    #[serde(default, rename = "table")]
    pub extra_tables: Vec<ExtraTable>,
    /// Parallelism of one query. Several sites on one machine (tests, the demo) want 1–2.
    #[serde(default)]
    pub target_partitions: Option<usize>,
    /// Key-encryption key of encrypted tables (default: `<omop_dir>/../keys/site.key`).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

impl StoreConfig {
    /// A store of just an OMOP directory.
    pub fn omop_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            omop_dir: dir.into(),
            ..Self::default()
        }
    }

    /// The key file: the configured one, else `keys/site.key` beside the OMOP directory.
    pub fn key_file(&self) -> PathBuf {
        self.key_file.clone().unwrap_or_else(|| {
            self.omop_dir
                .parent()
                .unwrap_or(Path::new("."))
                .join("keys")
                .join("site.key")
        })
    }
}

/// A non-OMOP table a custodian makes available (e.g. a study's research extract).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraTable {
    /// Table name researchers use.
    pub name: String,
    /// A `.csv` or `.parquet` file.
    pub path: PathBuf,
    /// Columns (after name normalisation) that identify a person or event.
    #[serde(default)]
    pub identifiers: Vec<String>,
    /// Regex for missing values in CSV (default: empty or `NA`).
    #[serde(default)]
    pub null_regex: Option<String>,
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error(
        "OMOP directory {0} does not exist or holds no <table>.parquet files; run `medfed synth --out DIR` or `medfed ingest`"
    )]
    NoOmop(PathBuf),
    #[error("extra table `{name}`: {reason}")]
    ExtraTable { name: String, reason: String },
    #[error("encrypted tables: {0}")]
    Key(#[from] medfed_keys::KeyError),
    #[error("registering {path}: {source}")]
    Register {
        path: PathBuf,
        source: datafusion::error::DataFusionError,
    },
}

/// The registered tables of one site.
pub struct SiteStore {
    ctx: SessionContext,
    tables: Vec<String>,
}

impl SiteStore {
    /// Registers every OMOP table found and every extra table.
    pub async fn open(cfg: &StoreConfig) -> Result<Self, StoreError> {
        let mut config = SessionConfig::new().with_information_schema(false);
        if let Some(n) = cfg.target_partitions {
            config = config.with_target_partitions(n.max(1));
        }
        let ctx = SessionContext::new_with_config(config);
        let mut tables = Vec::new();
        let ring = Keyring::load(&cfg.omop_dir.join(medfed_keys::KEYRING))?;
        let kek = match &ring {
            Some(_) => Some(KeyFile::open(&cfg.key_file())?),
            None => None,
        };
        for def in medfed_core::omop::tables() {
            let file = cfg.omop_dir.join(format!("{}.parquet", def.name));
            if !file.exists() {
                continue;
            }
            // Registered with the CDM's own schema: every site serves the same columns and types
            // whatever wrote the file, and identifier marks survive (Parquet inference drops
            // field metadata).
            let schema = def.arrow_schema();
            let mut options = ParquetReadOptions::default().schema(&schema);
            if let (Some(ring), Some(kek)) = (&ring, &kek) {
                let keys = ring.unwrap_table(kek, &def.name)?;
                options = options.file_decryption_properties(decryption(&keys));
            }
            ctx.register_parquet(&def.name, path_str(&file), options)
                .await
                .map_err(|source| StoreError::Register {
                    path: file.clone(),
                    source,
                })?;
            tables.push(def.name.clone());
        }
        if tables.is_empty() {
            return Err(StoreError::NoOmop(cfg.omop_dir.clone()));
        }
        for extra in &cfg.extra_tables {
            register_extra(&ctx, extra).await?;
            tables.push(extra.name.clone());
        }
        if features::READMISSION_NEEDS
            .iter()
            .all(|t| tables.iter().any(|have| have == t))
            && !tables.iter().any(|t| t == "readmission")
        {
            let derive = async {
                let df = ctx.sql(features::READMISSION_SQL).await?;
                let schema = Arc::new(df.schema().as_arrow().clone());
                let batches = df.collect().await?;
                let table = MemTable::try_new(schema, vec![batches])?;
                ctx.register_table("readmission", Arc::new(table))
            };
            derive.await.map_err(|source| StoreError::Register {
                path: cfg.omop_dir.join("readmission (derived)"),
                source,
            })?;
            tables.push("readmission".into());
        }
        tables.sort();
        Ok(Self { ctx, tables })
    }

    /// The context queries run in.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Names of the registered tables, sorted.
    pub fn table_names(&self) -> &[String] {
        &self.tables
    }

    /// Schema of each registered table (metadata only: what the hub may learn).
    pub async fn schemas(&self) -> Vec<(String, SchemaRef)> {
        let mut out = Vec::new();
        for name in &self.tables {
            if let Ok(t) = self.ctx.table_provider(name.as_str()).await {
                out.push((name.clone(), t.schema()));
            }
        }
        out
    }
}

/// DataFusion read options for an encrypted table (the keys are held in memory only).
pub fn decryption(keys: &medfed_keys::TableKeys) -> ConfigFileDecryptionProperties {
    let column_decryption_properties = keys
        .columns
        .iter()
        .map(|(c, k)| {
            let key = ColumnDecryptionProperties {
                column_key_as_hex: hex::encode(&k[..]),
            };
            (c.clone(), key)
        })
        .collect();
    ConfigFileDecryptionProperties {
        footer_key_as_hex: hex::encode(&keys.footer[..]),
        column_decryption_properties,
        ..Default::default()
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// `" LAB_TSC "` → `lab_tsc`; anything not `[a-z0-9_]` becomes `_`.
pub fn normalise_column(name: &str) -> String {
    name.trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Reads a CSV extract into memory with arrow-csv. (DataFusion 55's CSV scan applies `null_regex`
/// only while inferring types, so `NA` cells would fail to parse; extracts are small.)
fn read_csv(path: &Path, null_regex: &str) -> Result<MemTable, String> {
    use std::io::Seek;
    let regex = regex::Regex::new(null_regex).map_err(|e| format!("bad null_regex: {e}"))?;
    let format = Format::default().with_header(true).with_null_regex(regex);
    let mut file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let (schema, _) = format
        .infer_schema(&mut file, None)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.rewind().map_err(|e| e.to_string())?;
    let schema = Arc::new(schema);
    let batches = ReaderBuilder::new(schema.clone())
        .with_format(format)
        .build(file)
        .and_then(|r| r.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    MemTable::try_new(schema, vec![batches]).map_err(|e| e.to_string())
}

async fn register_extra(ctx: &SessionContext, t: &ExtraTable) -> Result<(), StoreError> {
    let err = |reason: String| StoreError::ExtraTable {
        name: t.name.clone(),
        reason,
    };
    let path = path_str(&t.path);
    let ext = t
        .path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let df = match ext.as_str() {
        "csv" => {
            let null_regex = t.null_regex.as_deref().unwrap_or("^(NA)?$");
            let table = read_csv(&t.path, null_regex).map_err(&err)?;
            ctx.read_table(Arc::new(table))
        }
        "parquet" => ctx.read_parquet(path, ParquetReadOptions::default()).await,
        other => {
            return Err(err(format!(
                "unsupported file type `.{other}` (use .csv or .parquet)"
            )));
        }
    }
    .map_err(|e| err(format!("cannot read {}: {e}", t.path.display())))?;

    let mut exprs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for field in df.schema().fields() {
        let name = normalise_column(field.name());
        // A CSV's unnamed leading column is a row index written by R or pandas: row-level and
        // meaningless across sites, so it is not exposed.
        if name.is_empty() || name.starts_with("column_") || name == "unnamed__0" {
            continue;
        }
        if !seen.insert(name.clone()) {
            return Err(err(format!("two columns normalise to `{name}`")));
        }
        let metadata = t.identifiers.contains(&name).then(|| {
            FieldMetadata::from(
                medfed_core::omop::identifier_metadata()
                    .into_iter()
                    .collect::<std::collections::BTreeMap<_, _>>(),
            )
        });
        exprs.push(
            col(datafusion::common::Column::from_name(field.name()))
                .alias_with_metadata(name, metadata),
        );
    }
    for id in &t.identifiers {
        if !seen.contains(id) {
            return Err(err(format!("identifier column `{id}` not found")));
        }
    }
    // Materialised rather than registered as a view: extracts are small, and a view would be
    // inlined into an anonymous scan, hiding from the site's policy which table a query reads.
    let df = df.select(exprs).map_err(|e| err(e.to_string()))?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await.map_err(|e| err(e.to_string()))?;
    let table = MemTable::try_new(schema, vec![batches]).map_err(|e| err(e.to_string()))?;
    ctx.register_table(t.name.as_str(), Arc::new(table))
        .map_err(|e| err(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_names_are_normalised() {
        assert_eq!(normalise_column(" LAB_TSC "), "lab_tsc");
        assert_eq!(normalise_column("PM BMI-cat"), "pm_bmi_cat");
    }

    #[tokio::test]
    async fn missing_omop_dir_says_how_to_make_one() {
        let err = SiteStore::open(&StoreConfig::omop_dir("/nonexistent/omop"))
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("medfed synth"), "{err}");
    }

    #[tokio::test]
    async fn csv_extra_table_is_normalised_and_marks_identifiers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("person.parquet"), b"").unwrap();
        let csv = dir.path().join("x.csv");
        std::fs::write(&csv, ",Patient ID,LAB_TSC \n1,a1,5.5\n2,a2,NA\n3,a3,6.1\n").unwrap();
        let ctx = SessionContext::new();
        let t = ExtraTable {
            name: "extract".into(),
            path: csv,
            identifiers: vec!["patient_id".into()],
            null_regex: None,
        };
        register_extra(&ctx, &t).await.unwrap();
        let schema = ctx.table_provider("extract").await.unwrap().schema();
        let names: Vec<_> = schema.fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["patient_id", "lab_tsc"]);
        assert!(
            schema
                .field(0)
                .metadata()
                .contains_key(medfed_core::IDENTIFIER_METADATA_KEY)
        );
        let n = ctx
            .sql("SELECT COUNT(lab_tsc) AS n FROM extract")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let n = n[0]
            .column(0)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()
            .unwrap()
            .value(0);
        assert_eq!(n, 2, "NA must read as missing");
    }
}

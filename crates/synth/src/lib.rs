//! Synthetic hospitals: a deterministic OMOP CDM v5.4 extract, written as Parquet.
//!
//! Entrypoint is [`synthesize`]. Patients are generated in chunks on all cores (each chunk has its
//! own ChaCha8 stream derived from the seed, so output depends on the seed only, never on thread
//! timing); chunks are put back in order, given dense ids, and streamed to one Parquet writer
//! thread per table. Output: `DIR/omop/<table>.parquet`, the same layout a site node serves and
//! ingestion writes.
//!
//! # Example
//! ```no_run
//! use medfed_synth::{SynthConfig, synthesize};
//! let cfg = SynthConfig { patients: 1000, seed: 7, ..SynthConfig::default() };
//! let summary = synthesize(std::path::Path::new("/tmp/site-a"), &cfg, |_done| {}).unwrap();
//! println!("{} visits", summary.rows["visit_occurrence"]);
//! ```

mod chunk;
pub mod concepts;
mod patient;
mod profile;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use arrow::array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

pub use patient::{RECORD_END, RECORD_START, REFERENCE_YEAR};
pub use profile::{PROFILES, Profile};

/// The OMOP tables the generator writes, in the order [`chunk::Chunk::into_batches`] returns them.
pub const TABLES: [&str; 7] = [
    "person",
    "observation_period",
    "visit_occurrence",
    "condition_occurrence",
    "drug_exposure",
    "measurement",
    "death",
];

/// Patients per chunk: large enough to amortise batch building, small enough for a smooth
/// progress bar and bounded memory (a chunk is ~25 rows per patient).
const CHUNK_PATIENTS: usize = 16_384;

/// What to generate.
#[derive(Debug, Clone)]
pub struct SynthConfig {
    /// Number of patients.
    pub patients: usize,
    /// Seed: the same seed, profile and size give byte-identical tables.
    pub seed: u64,
    /// Profile name (see [`PROFILES`]).
    pub profile: String,
    /// Offset added to every id, so several sites' tables can be pooled without id collisions.
    pub id_base: i32,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            patients: 10_000,
            seed: 1,
            profile: "general".into(),
            id_base: 0,
        }
    }
}

/// What was written.
#[derive(Debug, Clone)]
pub struct SynthSummary {
    /// The `omop/` directory holding the tables.
    pub omop_dir: PathBuf,
    /// Rows written per table.
    pub rows: BTreeMap<String, usize>,
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SynthError {
    #[error("unknown profile `{0}`; choose one of: {1}")]
    UnknownProfile(String, String),
    #[error(
        "{patients} patients with id base {id_base} overflow 32-bit OMOP ids; lower --patients or --id-base"
    )]
    IdOverflow { patients: usize, id_base: i32 },
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("building Arrow batch: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

/// Generates `cfg.patients` patients into `dir/omop/`, calling `progress(patients_done)` as
/// chunks are written.
pub fn synthesize(
    dir: &Path,
    cfg: &SynthConfig,
    progress: impl Fn(usize) + Sync,
) -> Result<SynthSummary, SynthError> {
    let profile = Profile::by_name(&cfg.profile).ok_or_else(|| {
        SynthError::UnknownProfile(cfg.profile.clone(), Profile::names().join(", "))
    })?;
    if cfg.id_base as i64 + cfg.patients as i64 * 40 > i32::MAX as i64 {
        return Err(SynthError::IdOverflow {
            patients: cfg.patients,
            id_base: cfg.id_base,
        });
    }
    let omop_dir = dir.join("omop");
    std::fs::create_dir_all(&omop_dir).map_err(|source| SynthError::Io {
        path: omop_dir.clone(),
        source,
    })?;

    // One writer thread per table, fed in chunk order.
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(1 << 20))
        .build();
    let mut senders = Vec::new();
    let mut writers = Vec::new();
    for table in TABLES {
        let path = omop_dir.join(format!("{table}.parquet"));
        let file = File::create(&path).map_err(|source| SynthError::Io {
            path: path.clone(),
            source,
        })?;
        let schema = medfed_core::omop::table(table)
            .expect("CDM table")
            .arrow_schema();
        let mut writer = ArrowWriter::try_new(file, schema, Some(props.clone()))?;
        let (tx, rx) = mpsc::sync_channel::<RecordBatch>(4);
        senders.push(tx);
        writers.push(thread::spawn(move || -> Result<usize, SynthError> {
            let mut rows = 0;
            for batch in rx {
                rows += batch.num_rows();
                writer.write(&batch)?;
            }
            writer.close()?;
            Ok(rows)
        }));
    }

    let chunks = cfg.patients.div_ceil(CHUNK_PATIENTS);
    let window = rayon::current_num_threads().max(1) * 2;
    let mut counters = chunk::IdCounters {
        visit: cfg.id_base,
        condition: cfg.id_base,
        drug: cfg.id_base,
        measurement: cfg.id_base,
        period: cfg.id_base,
    };
    let mut done = 0;
    let mut send_result = Ok(());
    'outer: for first in (0..chunks).step_by(window) {
        let last = (first + window).min(chunks);
        let generated: Vec<chunk::Chunk> = (first..last)
            .into_par_iter()
            .map(|c| {
                let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
                rng.set_stream(c as u64);
                let begin = c * CHUNK_PATIENTS;
                let end = (begin + CHUNK_PATIENTS).min(cfg.patients);
                let mut out = chunk::Chunk::default();
                for i in begin..end {
                    patient::generate(&mut rng, profile, cfg.id_base + i as i32 + 1, &mut out);
                }
                out
            })
            .collect();
        for mut c in generated {
            let n = c.persons.person_id.len();
            c.shift_ids(&mut counters);
            for (tx, batch) in senders.iter().zip(c.into_batches()?) {
                if tx.send(batch).is_err() {
                    send_result = Err(());
                    break 'outer;
                }
            }
            done += n;
            progress(done);
        }
    }
    drop(senders);
    let mut rows = BTreeMap::new();
    for (table, handle) in TABLES.iter().zip(writers) {
        let n = handle.join().expect("parquet writer thread panicked")?;
        rows.insert(table.to_string(), n);
    }
    debug_assert!(send_result.is_ok(), "a writer stopped without an error");
    Ok(SynthSummary { omop_dir, rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(dir: &Path) -> Vec<Vec<u8>> {
        TABLES
            .iter()
            .map(|t| std::fs::read(dir.join("omop").join(format!("{t}.parquet"))).unwrap())
            .collect()
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_data() {
        let (a, b, c) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let cfg = SynthConfig {
            patients: 3000,
            seed: 42,
            ..Default::default()
        };
        let sa = synthesize(a.path(), &cfg, |_| {}).unwrap();
        synthesize(b.path(), &cfg, |_| {}).unwrap();
        synthesize(
            c.path(),
            &SynthConfig {
                seed: 43,
                ..cfg.clone()
            },
            |_| {},
        )
        .unwrap();
        assert_eq!(digest(a.path()), digest(b.path()));
        assert_ne!(digest(a.path()), digest(c.path()));
        assert_eq!(sa.rows["person"], 3000);
        assert_eq!(sa.rows["observation_period"], 3000);
        assert!(sa.rows["visit_occurrence"] > 3000, "{:?}", sa.rows);
        assert!(sa.rows["measurement"] > sa.rows["visit_occurrence"]);
    }

    #[test]
    fn unknown_profile_names_the_choices() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SynthConfig {
            profile: "mars".into(),
            ..Default::default()
        };
        let err = synthesize(dir.path(), &cfg, |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("rural") && err.contains("mars"), "{err}");
    }
}

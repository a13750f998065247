//! A site's ingestion: FHIR R4, HL7 v2 and CSV into an encrypted OMOP CDM v5.4 store.
//!
//! ```text
//!  inputs ──► bronze (sealed, as received) ──► parse ──► rules ──► de-identify ──► silver
//!                                               │          │                      │
//!                                               └──────────┴──► quarantine         ▼
//!                                                                     gold: OMOP Parquet (encrypted)
//! ```
//!
//! Entrypoint is [`run`]: store new inputs in bronze, rebuild silver and gold from all of bronze,
//! write the quarantine and the quality report. Nothing is dropped: every input record is loaded
//! or quarantined with the rule it broke, and the report's per-table counts balance
//! ([`Report::balanced`]).
//!
//! # Example
//! ```no_run
//! use medfed_ingest::{Inputs, run};
//! let inputs = Inputs { fhir: vec!["exports/bundles".into()], ..Inputs::default() };
//! let today = chrono::Utc::now().date_naive();
//! let report = run("sites/north".as_ref(), &inputs, today, &|_, _, _| {}).unwrap();
//! assert!(report.balanced());
//! ```

pub mod bronze;
pub mod deid;
pub mod gold;
pub mod model;
mod pipeline;
pub mod report;
mod rotate;
pub mod rules;
pub mod source;
pub mod vocab;

pub use pipeline::{IngestError, Inputs, Phase, key_path, run};
pub use report::Report;
pub use rotate::rotate_key;

use std::path::Path;

/// Stores one HL7 message received live (the MLLP listener's handler) in bronze. It is loaded
/// into gold by the next `medfed ingest` run.
pub fn receive_hl7(site: &Path, message: &str) -> Result<(), String> {
    let kek = medfed_keys::keyring::KeyFile::open_or_create(&key_path(site))
        .map_err(|e| e.to_string())?;
    let parsed = source::hl7::Message::parse(message).map_err(|e| e.to_string())?;
    let name = format!("mllp-{}.hl7", parsed.control_id());
    bronze::Bronze::new(site)
        .put(&kek, bronze::Format::Hl7, &name, message.as_bytes())
        .map(|_| ())
        .map_err(|e| format!("storing the message: {e}"))
}

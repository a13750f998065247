//! The quality report (`<site>/report.json`, printed by `medfed ingest`) and the quarantine table.
//!
//! The report holds counts, rule ids, completeness fractions and unmapped *codes* — nothing about
//! a patient — so a custodian may share it with the network's data manager.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::Serialize;

use crate::gold::Coverage;
use crate::model::{Origin, Reject};

/// Counts of one target table (or `(record)` for records rejected whole).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TableReport {
    /// Facts headed for the table.
    #[serde(rename = "in")]
    pub received: usize,
    /// Facts loaded (including mentions merged into an existing row).
    pub loaded: usize,
    /// Facts quarantined.
    pub quarantined: usize,
    /// Of `loaded`, facts merged into a row another fact created (HL7 mentions of a patient).
    pub merged: usize,
    /// Rows in the gold table.
    pub rows: usize,
    /// Quarantined per rule.
    pub rules: BTreeMap<String, usize>,
    /// Share of rows with a value, per populated column.
    pub completeness: BTreeMap<String, f64>,
    /// Concept-mapping coverage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coverage: Option<Coverage>,
}

/// One input object.
#[derive(Debug, Clone, Serialize)]
pub struct InputReport {
    /// Bronze name.
    pub name: String,
    /// Records read from it (resources, messages, rows).
    pub records: usize,
}

/// The quality report of one ingestion run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Inputs stored by this run that bronze did not hold yet.
    pub new_inputs: usize,
    /// Every bronze object the gold tables were built from.
    pub inputs: Vec<InputReport>,
    /// Input records (resources, messages, rows) by kind.
    pub records: BTreeMap<String, usize>,
    /// Per target table.
    pub tables: BTreeMap<String, TableReport>,
    /// Quarantined facts and records per rule.
    pub quarantine: BTreeMap<String, usize>,
    /// Records that were exact duplicates of an earlier one.
    pub duplicates: usize,
    /// Wall time of the run.
    pub seconds: f64,
}

impl Report {
    /// Table name for records rejected before they yielded facts.
    pub const RECORD: &'static str = "(record)";

    pub(crate) fn table(&mut self, name: &str) -> &mut TableReport {
        self.tables.entry(name.to_string()).or_default()
    }

    pub(crate) fn quarantined(&mut self, table: &str, reject: &Reject) {
        let t = self.table(table);
        t.received += 1;
        t.quarantined += 1;
        *t.rules.entry(reject.rule.clone()).or_default() += 1;
        *self.quarantine.entry(reject.rule.clone()).or_default() += 1;
        if reject.rule == "duplicate" {
            self.duplicates += 1;
        }
    }

    pub(crate) fn loaded(&mut self, table: &str) {
        let t = self.table(table);
        t.received += 1;
        t.loaded += 1;
    }

    /// True when every fact and record is accounted for: in = loaded + quarantined everywhere.
    pub fn balanced(&self) -> bool {
        self.tables
            .values()
            .all(|t| t.received == t.loaded + t.quarantined)
    }
}

/// A quarantined record or fact. `raw` is the record as received (it stays at the site,
/// encrypted, for the custodian to fix and re-submit).
#[derive(Debug, Clone)]
pub struct Quarantined {
    pub origin: Origin,
    pub kind: String,
    pub table: String,
    pub reject: Reject,
    pub raw: String,
}

/// Longest raw record kept in the quarantine table.
const MAX_RAW: usize = 64 * 1024;

/// The quarantine as one Arrow batch.
pub fn quarantine_batch(
    rows: &[Quarantined],
) -> Result<(SchemaRef, RecordBatch), arrow::error::ArrowError> {
    let schema = Arc::new(Schema::new(
        ["file", "locator", "kind", "table", "rule", "reason", "raw"]
            .map(|n| Field::new(n, DataType::Utf8, false))
            .to_vec(),
    ));
    let col = |f: &dyn Fn(&Quarantined) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    fn raw(q: &Quarantined) -> &str {
        let mut end = q.raw.len().min(MAX_RAW);
        while !q.raw.is_char_boundary(end) {
            end -= 1;
        }
        &q.raw[..end]
    }
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            col(&|q| &q.origin.file),
            col(&|q| &q.origin.locator),
            col(&|q| &q.kind),
            col(&|q| &q.table),
            col(&|q| &q.reject.rule),
            col(&|q| &q.reject.reason),
            col(&raw),
        ],
    )?;
    Ok((schema, batch))
}

/// Share of non-null values per column of a gold batch (columns entirely null are skipped,
/// except `NOT NULL` ones, which would show a mapping bug).
pub fn completeness(batch: &RecordBatch) -> BTreeMap<String, f64> {
    let n = batch.num_rows();
    let mut out = BTreeMap::new();
    if n == 0 {
        return out;
    }
    for (field, col) in batch.schema().fields().iter().zip(batch.columns()) {
        let present = n - col.null_count();
        if present > 0 || !field.is_nullable() {
            out.insert(field.name().clone(), present as f64 / n as f64);
        }
    }
    out
}

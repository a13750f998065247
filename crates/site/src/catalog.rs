//! What the site tells the hub about its tables before any query: their schemas and, if the
//! custodian allows it (`[privacy.catalog_counts]`), how many people each holds — rounded and
//! floored by the custodian's rule, so a researcher can judge feasibility without a query.
//!
//! Counts are recomputed at most every [`FRESH_FOR`]: a catalogue is listed whenever the hub
//! starts or meets an unknown table, and a distinct count over a large table is not free.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arrow_flight::{FlightDescriptor, FlightInfo};
use datafusion::arrow::array::{Array, Int64Array};
use medfed_core::catalog::CountRule;
use medfed_protocol::wire::TableMeta;
use medfed_store::SiteStore;
use tokio::sync::Mutex;
use tonic::Status;

/// How long counted tables are reused.
pub(crate) const FRESH_FOR: Duration = Duration::from_secs(300);

/// The column that says whose a row is.
const PERSON: &str = "person_id";

/// The site's catalogue and its cached true counts (which never leave: only `rule.publish` does).
pub(crate) struct Catalogue {
    rule: CountRule,
    counted: Mutex<Option<(Instant, BTreeMap<String, u64>)>>,
}

impl Catalogue {
    pub(crate) fn new(rule: CountRule) -> Self {
        Self {
            rule,
            counted: Mutex::new(None),
        }
    }

    /// One `FlightInfo` per table: schema, name and the published person count.
    pub(crate) async fn list(&self, store: &SiteStore) -> Result<Vec<FlightInfo>, Status> {
        let counts = if self.rule.publish {
            self.counts(store).await
        } else {
            BTreeMap::new()
        };
        let mut infos = Vec::new();
        for (name, schema) in store.schemas().await {
            let meta = TableMeta {
                persons: counts.get(&name).map(|&n| self.rule.publish(n)),
            };
            let meta = serde_json::to_vec(&meta).map_err(|e| Status::internal(e.to_string()))?;
            infos.push(
                FlightInfo::new()
                    .try_with_schema(&schema)
                    .map_err(|e| Status::internal(e.to_string()))?
                    .with_descriptor(FlightDescriptor::new_path(vec![name]))
                    .with_app_metadata(meta),
            );
        }
        Ok(infos)
    }

    /// The audit trail's sentence for a listing of `tables` tables.
    pub(crate) fn describe(&self, tables: usize) -> String {
        let r = &self.rule;
        if r.publish {
            format!(
                "{tables} tables listed with person counts rounded to {} and floored at {}",
                r.round_to, r.min
            )
        } else {
            format!("{tables} tables listed, schemas only")
        }
    }

    /// Distinct people per table with a `person_id` column, from the cache while fresh.
    async fn counts(&self, store: &SiteStore) -> BTreeMap<String, u64> {
        let mut counted = self.counted.lock().await;
        if let Some((at, counts)) = counted.as_ref()
            && at.elapsed() < FRESH_FOR
        {
            return counts.clone();
        }
        let mut counts = BTreeMap::new();
        for (name, schema) in store.schemas().await {
            if schema.field_with_name(PERSON).is_err() {
                continue;
            }
            match count_people(store, &name).await {
                Ok(n) => {
                    counts.insert(name, n);
                }
                // The error names the table and DataFusion's reason, never a value.
                Err(e) => tracing::warn!(table = %name, error = %e, "person count failed"),
            }
        }
        *counted = Some((Instant::now(), counts.clone()));
        counts
    }
}

async fn count_people(store: &SiteStore, table: &str) -> datafusion::error::Result<u64> {
    let sql = format!("SELECT COUNT(DISTINCT {PERSON}) FROM \"{table}\"");
    let batches = store.context().sql(&sql).await?.collect().await?;
    let n = batches
        .first()
        .and_then(|b| b.column(0).as_any().downcast_ref::<Int64Array>().cloned())
        .filter(|a| !a.is_empty())
        .map_or(0, |a| a.value(0));
    Ok(u64::try_from(n).unwrap_or(0))
}

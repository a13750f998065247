//! The network's catalogue as the hub knows it: which tables the sites offer, their schemas
//! (to plan queries against) and each site's published person counts (for researchers).
//!
//! The hub reads the sites' catalogues at start, when a query finds it empty or names a table
//! it does not know, and — so a long-running hub does not show yesterday's network — in the
//! background when someone lists it and it is older than `catalog_refresh_s`. A listing never
//! waits for the sites unless the hub knows no table at all.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow::datatypes::SchemaRef;
use datafusion::catalog::MemTable;
use datafusion::execution::SessionState;
use datafusion::prelude::SessionContext;

use crate::Hub;
use crate::api::{Catalog as CatalogView, CatalogColumn, CatalogTable};

/// An invalid query re-reads the sites' catalogues at most this often (a typo should not cost
/// a round trip to every site each time).
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(30);

/// A table as the network offers it.
#[derive(Debug, Clone)]
pub struct OfferedTable {
    /// The first answering site's schema (answers are cast to it at merge time).
    pub schema: SchemaRef,
    /// The sites that have it.
    pub sites: Vec<String>,
    /// People in it at each site that publishes counts (rounded and floored by that site).
    pub persons: BTreeMap<String, medfed_core::catalog::PersonCount>,
}

/// Tables the sites offer, as empty tables with their schemas: enough to plan, nothing to read.
struct Snapshot {
    ctx: SessionContext,
    tables: BTreeMap<String, OfferedTable>,
    built: Instant,
    as_of: SystemTime,
}

impl Snapshot {
    fn new(tables: BTreeMap<String, OfferedTable>) -> Self {
        let ctx = SessionContext::new();
        for (name, offered) in &tables {
            if let Ok(t) = MemTable::try_new(offered.schema.clone(), vec![vec![]]) {
                let _ = ctx.register_table(name.as_str(), Arc::new(t));
            }
        }
        Self {
            ctx,
            tables,
            built: Instant::now(),
            as_of: SystemTime::now(),
        }
    }
}

/// The current snapshot and when to renew it.
pub(crate) struct CatalogCache {
    current: RwLock<Snapshot>,
    refresh_after: Duration,
    refreshing: AtomicBool,
}

impl CatalogCache {
    pub(crate) fn new(refresh_after: Duration) -> Self {
        Self {
            current: RwLock::new(Snapshot::new(BTreeMap::new())),
            refresh_after,
            refreshing: AtomicBool::new(false),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Snapshot> {
        self.current.read().expect("catalog lock")
    }
}

impl Hub {
    /// Asks every site for its tables and rebuilds the planning catalogue. A table offered by
    /// several sites takes the first site's schema; answers are cast to it at merge time. A site
    /// that does not answer keeps what it said last time: a re-read during a brief outage must
    /// not drop its tables (a query then reports the site down instead of the table unknown).
    pub async fn refresh_catalog(&self) -> BTreeMap<String, Result<usize, String>> {
        let answers = futures::future::join_all(self.sites.iter().map(|s| async move {
            let r = tokio::time::timeout(self.deadline, s.catalog()).await;
            (s.name().clone(), r)
        }))
        .await;
        let mut tables: BTreeMap<String, OfferedTable> = BTreeMap::new();
        let mut report = BTreeMap::new();
        for (site, r) in answers {
            let r = match r {
                Ok(Ok(list)) => {
                    let n = list.len();
                    for entry in list {
                        let t = tables.entry(entry.name).or_insert_with(|| OfferedTable {
                            schema: entry.schema,
                            sites: Vec::new(),
                            persons: BTreeMap::new(),
                        });
                        t.sites.push(site.to_string());
                        if let Some(p) = entry.persons {
                            t.persons.insert(site.to_string(), p);
                        }
                    }
                    Ok(n)
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("timed out".into()),
            };
            if let Err(e) = &r {
                tracing::warn!(site = %site, error = %e, "catalogue unavailable");
            }
            report.insert(site.to_string(), r);
        }
        let silent: Vec<&String> = (report.iter())
            .filter_map(|(site, r)| r.is_err().then_some(site))
            .collect();
        if !silent.is_empty() {
            keep_last_word(&mut tables, &self.catalog.read().tables, &silent);
            // In the network's order, as when every site answers.
            let rank = |s: &String| self.sites.iter().position(|c| c.name().as_str() == s);
            tables.values_mut().for_each(|t| t.sites.sort_by_key(rank));
        }
        *self.catalog.current.write().expect("catalog lock") = Snapshot::new(tables);
        report
    }

    /// The catalogue: what each table is, who has it, how many people it holds where.
    pub fn tables(&self) -> BTreeMap<String, OfferedTable> {
        self.catalog.read().tables.clone()
    }

    /// How long ago the sites' catalogues were read.
    pub(crate) fn catalog_age(&self) -> Duration {
        self.catalog.read().built.elapsed()
    }

    /// A session over the sites' catalogue (empty tables: enough to plan, nothing to read),
    /// re-reading the catalogue first if no site has answered yet.
    pub(crate) async fn planning_state(&self) -> SessionState {
        if self.catalog.read().tables.is_empty() {
            self.refresh_catalog().await;
        }
        self.current_planning_state()
    }

    /// The planning session over the catalogue as it is now.
    pub(crate) fn current_planning_state(&self) -> SessionState {
        self.catalog.read().ctx.state()
    }

    /// The catalogue as researchers see it (metadata only), starting a background re-read
    /// if it is older than the hub's `catalog_refresh_s` (one at a time).
    pub(crate) async fn catalog_view(self: &Arc<Self>) -> CatalogView {
        if self.catalog.read().tables.is_empty() {
            self.refresh_catalog().await;
        } else if self.catalog_age() >= self.catalog.refresh_after
            && !self.catalog.refreshing.swap(true, Ordering::AcqRel)
        {
            let hub = self.clone();
            tokio::spawn(async move {
                hub.refresh_catalog().await;
                hub.catalog.refreshing.store(false, Ordering::Release);
            });
        }
        let snapshot = self.catalog.read();
        let tables = snapshot
            .tables
            .iter()
            .map(|(name, t)| (name.clone(), view(t)))
            .collect();
        let as_of_us = snapshot
            .as_of
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        CatalogView { tables, as_of_us }
    }
}

/// Adds to `tables` what the `silent` sites offered in `previous`.
fn keep_last_word(
    tables: &mut BTreeMap<String, OfferedTable>,
    previous: &BTreeMap<String, OfferedTable>,
    silent: &[&String],
) {
    for (name, old) in previous {
        for site in old.sites.iter().filter(|s| silent.contains(s)) {
            let t = tables.entry(name.clone()).or_insert_with(|| OfferedTable {
                schema: old.schema.clone(),
                sites: Vec::new(),
                persons: BTreeMap::new(),
            });
            t.sites.push(site.clone());
            if let Some(p) = old.persons.get(site) {
                t.persons.insert(site.clone(), *p);
            }
        }
    }
}

fn view(t: &OfferedTable) -> CatalogTable {
    let columns = t
        .schema
        .fields()
        .iter()
        .map(|f| CatalogColumn {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
            identifier: f
                .metadata()
                .contains_key(medfed_core::IDENTIFIER_METADATA_KEY),
        })
        .collect();
    CatalogTable {
        columns,
        sites: t.sites.clone(),
        persons: t.persons.clone(),
    }
}

//! The hub: researchers ask here; it plans, fans out to the sites, and merges their partials.
//!
//! Entrypoints: [`Hub`] (the network and its catalogue), [`app`] (the HTTP API as an axum
//! `Router`), [`serve`] (bind and run with graceful shutdown).
//!
//! A query's life:
//! ```text
//!  POST /v1/queries {sql}
//!    │ bearer token ──────────────── 401 if missing or unknown
//!    │ plan against the catalogue ── 400 invalid (unknown table/column)
//!    │ check: aggregates only ────── 422 refused (row output, identifiers, MIN/MAX, ...)
//!    │ split → site SQL + merge plan
//!    ├──► site A ─┐  in parallel over mTLS Flight, each with its own deadline:
//!    ├──► site B ─┤  answered | refused | failed | timed_out
//!    └──► site C ─┘
//!    │ merge the answered partials (SUMs), finish AVG/VAR, HAVING, ORDER BY, LIMIT
//!    ▼
//!  200 {columns, rows, sites: {A: answered, B: timed_out, ...}}   (503 if no site answered)
//! ```
//! Trust boundary: SQL from researchers is untrusted text; site answers are only trusted to be
//! partials of the requested shape (they are cast to the expected schema or the site is marked
//! failed). The hub holds no patient data and cannot open a site's store: it does not link the
//! store crate at all.

pub mod config;
mod http;
mod json;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use datafusion::catalog::MemTable;
use datafusion::prelude::SessionContext;
use medfed_analysis::sql::{FederatedSql, SqlError};
use medfed_core::SiteName;
use medfed_core::result::{QueryResult, SiteOutcome, SiteStatus};
use medfed_protocol::tls::NodeTls;
use medfed_protocol::wire::SiteRequest;
use medfed_protocol::{SiteCallError, SiteClient};

pub use config::HubConfig;
pub use http::{app, serve};

/// Errors of the hub, grouped by cause; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    #[error("config: {0}")]
    Config(String),
    #[error(transparent)]
    Tls(#[from] medfed_protocol::tls::TlsLoadError),
    #[error(transparent)]
    Query(#[from] SqlError),
    #[error("unknown site `{0}`; the network's sites are: {1}")]
    UnknownSite(String, String),
    #[error("no site answered: {}", describe(.0))]
    NoSiteAnswered(BTreeMap<String, SiteOutcome>),
    #[error("{0}")]
    Transport(String),
}

fn describe(sites: &BTreeMap<String, SiteOutcome>) -> String {
    sites
        .iter()
        .map(|(n, o)| format!("{n} {} ({})", o.status, o.message.as_deref().unwrap_or("")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The hub's view of the network.
pub struct Hub {
    sites: Vec<SiteClient>,
    catalog: RwLock<Catalog>,
    deadline: Duration,
    tokens: Vec<config::TokenEntry>,
    next_id: AtomicU64,
}

/// Tables the sites offer, as empty tables with their schemas: enough to plan, nothing to read.
#[derive(Clone)]
struct Catalog {
    ctx: SessionContext,
    tables: BTreeMap<String, (SchemaRef, Vec<String>)>,
    built: Instant,
}

/// An invalid query re-reads the sites' catalogues at most this often (a typo should not cost
/// a round trip to every site each time).
const CATALOG_RETRY_AFTER: Duration = Duration::from_secs(30);

impl Hub {
    /// Connects (lazily) to the configured sites and learns their catalogue. Sites that are down
    /// now are retried when a query finds the catalogue empty.
    pub async fn new(cfg: &HubConfig) -> Result<Arc<Self>, HubError> {
        let tls = NodeTls::load(&cfg.tls)?;
        let sites = cfg
            .sites
            .iter()
            .map(|s| {
                SiteClient::new(s.name.clone(), &s.url, &tls)
                    .map_err(|e| HubError::Config(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let hub = Arc::new(Self {
            sites,
            catalog: RwLock::new(Catalog {
                ctx: SessionContext::new(),
                tables: BTreeMap::new(),
                built: Instant::now(),
            }),
            deadline: Duration::from_millis(cfg.site_deadline_ms),
            tokens: cfg.tokens.clone(),
            next_id: AtomicU64::new(1),
        });
        hub.refresh_catalog().await;
        Ok(hub)
    }

    /// Asks every site for its tables and rebuilds the planning catalogue. A table offered by
    /// several sites takes the first site's schema; answers are cast to it at merge time.
    pub async fn refresh_catalog(&self) -> BTreeMap<String, Result<usize, String>> {
        let answers = futures::future::join_all(self.sites.iter().map(|s| async move {
            let r = tokio::time::timeout(self.deadline, s.catalog()).await;
            (s.name().clone(), r)
        }))
        .await;
        let mut tables: BTreeMap<String, (SchemaRef, Vec<String>)> = BTreeMap::new();
        let mut report = BTreeMap::new();
        for (site, r) in answers {
            let r = match r {
                Ok(Ok(list)) => {
                    let n = list.len();
                    for (name, schema) in list {
                        tables
                            .entry(name)
                            .or_insert_with(|| (schema, Vec::new()))
                            .1
                            .push(site.to_string());
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
        let ctx = SessionContext::new();
        for (name, (schema, _)) in &tables {
            if let Ok(t) = MemTable::try_new(schema.clone(), vec![vec![]]) {
                let _ = ctx.register_table(name.as_str(), Arc::new(t));
            }
        }
        *self.catalog.write().expect("catalog lock") = Catalog {
            ctx,
            tables,
            built: Instant::now(),
        };
        report
    }

    fn catalog_age(&self) -> Duration {
        self.catalog.read().expect("catalog lock").built.elapsed()
    }

    /// The catalogue: table → (schema, sites offering it).
    pub fn tables(&self) -> BTreeMap<String, (SchemaRef, Vec<String>)> {
        self.catalog.read().expect("catalog lock").tables.clone()
    }

    /// The network's sites.
    pub fn site_names(&self) -> Vec<SiteName> {
        self.sites.iter().map(|s| s.name().clone()).collect()
    }

    /// Probes every site's liveness within the deadline.
    pub async fn site_health(&self) -> BTreeMap<String, Result<(), String>> {
        futures::future::join_all(self.sites.iter().map(|s| async move {
            let r = match tokio::time::timeout(self.deadline, s.health()).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err("timed out".to_string()),
            };
            (s.name().to_string(), r)
        }))
        .await
        .into_iter()
        .collect()
    }

    fn token_holder(&self, token: &str) -> Option<&str> {
        use subtle::ConstantTimeEq;
        let digest = config::TokenEntry::for_token("", token).sha256;
        self.tokens
            .iter()
            .find(|t| bool::from(t.sha256.as_bytes().ct_eq(digest.as_bytes())))
            .map(|t| t.name.as_str())
    }

    /// Runs one federated query at `only` (or every site).
    pub async fn query(&self, sql: &str, only: Option<&[String]>) -> Result<QueryResult, HubError> {
        let targets = self.targets(only)?;
        if self.catalog.read().expect("catalog lock").tables.is_empty() {
            self.refresh_catalog().await;
        }
        let mut state = self.catalog.read().expect("catalog lock").ctx.state();
        let plan = match FederatedSql::plan(&state, sql).await {
            // A table may be new since the catalogue was read (a site added an extract, or was
            // down at start-up): refresh once before calling the query invalid.
            Err(SqlError::Plan(_)) if self.catalog_age() > CATALOG_RETRY_AFTER => {
                self.refresh_catalog().await;
                state = self.catalog.read().expect("catalog lock").ctx.state();
                FederatedSql::plan(&state, sql).await?
            }
            other => other?,
        };
        let id = format!("q{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        tracing::info!(request_id = %id, sites = targets.len(), site_sql = plan.site_sql(), "fan-out");
        let request = SiteRequest::partial_sql(&id, plan.site_sql());

        let calls = targets.iter().map(|site| {
            let request = &request;
            let plan = &plan;
            async move {
                let started = Instant::now();
                let answer = tokio::time::timeout(self.deadline, site.run(request)).await;
                let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
                let outcome = |status, message: Option<String>| SiteOutcome {
                    status,
                    elapsed_ms,
                    message,
                };
                let (outcome, batches) = match answer {
                    Err(_) => (
                        outcome(
                            SiteStatus::TimedOut,
                            Some(format!("no answer within {} ms", self.deadline.as_millis())),
                        ),
                        vec![],
                    ),
                    Ok(Err(SiteCallError::Refused(m))) => {
                        (outcome(SiteStatus::Refused, Some(m)), vec![])
                    }
                    Ok(Err(e)) => (outcome(SiteStatus::Failed, Some(e.to_string())), vec![]),
                    Ok(Ok(batches)) => match batches
                        .iter()
                        .map(|b| plan.conform(b))
                        .collect::<Result<Vec<_>, _>>()
                    {
                        Ok(b) => (outcome(SiteStatus::Answered, None), b),
                        Err(e) => (outcome(SiteStatus::Failed, Some(e.to_string())), vec![]),
                    },
                };
                (site.name().to_string(), outcome, batches)
            }
        });
        let mut sites = BTreeMap::new();
        let mut partials = Vec::new();
        for (name, outcome, batches) in futures::future::join_all(calls).await {
            if outcome.status != SiteStatus::Answered {
                tracing::warn!(request_id = %id, site = %name, status = %outcome.status, message = ?outcome.message, "site did not answer");
            }
            sites.insert(name, outcome);
            partials.extend(batches);
        }
        if !sites.values().any(|o| o.status == SiteStatus::Answered) {
            return Err(HubError::NoSiteAnswered(sites));
        }
        let merged = plan.merge(partials).await?;
        let (columns, rows) = json::to_rows(&merged);
        let columns = if columns.is_empty() {
            plan_columns(&state, sql).await
        } else {
            columns
        };
        Ok(QueryResult {
            columns,
            rows,
            sites,
        })
    }

    fn targets(&self, only: Option<&[String]>) -> Result<Vec<&SiteClient>, HubError> {
        let Some(only) = only.filter(|o| !o.is_empty()) else {
            return Ok(self.sites.iter().collect());
        };
        let by_name: HashMap<&str, &SiteClient> =
            self.sites.iter().map(|s| (s.name().as_str(), s)).collect();
        only.iter()
            .map(|n| {
                by_name.get(n.as_str()).copied().ok_or_else(|| {
                    HubError::UnknownSite(
                        n.clone(),
                        self.site_names()
                            .iter()
                            .map(|s| s.to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                    )
                })
            })
            .collect()
    }
}

/// Output column names when the merged result has no batches (e.g. HAVING removed every group).
async fn plan_columns(state: &datafusion::execution::SessionState, sql: &str) -> Vec<String> {
    match state.create_logical_plan(sql).await {
        Ok(p) => p
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect(),
        Err(_) => Vec::new(),
    }
}

//! The hub: researchers ask here; it plans, fans out to the sites, and merges their partials.
//!
//! Entrypoints: [`Hub`] (the network and its catalogue), [`app`] (the HTTP API as an axum
//! `Router`), [`serve`] (bind and run with graceful shutdown).
//!
//! A query's life:
//! ```text
//!  POST /v1/queries {sql, study}
//!    │ bearer token or SSO JWT ───── 401 if missing, unknown, revoked, expired or forged
//!    │ hub.rego: member of an approved study? ── 403 (audited)
//!    │ plan against the catalogue ── 400 invalid (unknown table/column)
//!    │ within the study's tables/columns? ───── 403 (data minimisation, audited)
//!    │ check: aggregates only ────── 422 refused (row output, identifiers, MIN/MAX, ...)
//!    │ split → site SQL + merge plan
//!    │ sign one request per approved site (Ed25519): study, researcher, analysis, site
//!    ├──► site A ─┐  in parallel over mTLS Flight, each with its own deadline:
//!    ├──► site B ─┤  answered | refused | failed | timed_out
//!    └──► site C ─┘
//!    │ merge the answered partials (SUMs), finish AVG/VAR, HAVING, ORDER BY, LIMIT
//!    ▼
//!  audit + release record, then 200 {columns, rows, sites: {A: answered, ...}} (503 if none)
//! ```
//! Every call, allowed or not, lands in the hub's hash-chained audit trail ([`medfed_audit`]);
//! each site keeps its own.
//! Trust boundary: SQL from researchers is untrusted text; site answers are only trusted to be
//! partials of the requested shape (they are cast to the expected schema or the site is marked
//! failed). The hub holds no patient data and cannot open a site's store: it does not link the
//! store crate at all.

mod airlock;
mod api;
pub mod auth;
mod budget;
mod catalog;
pub mod config;
mod describe;
mod evidence;
mod glm;
mod governance;
mod http;
mod json;
mod kernel;
mod learn;
mod margins;
pub mod models;
pub mod portal;
pub mod query;
pub mod review;
mod rollup;
mod secure;
pub mod state;
mod summary;
mod survival;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use medfed_analysis::sql::SqlError;
use medfed_audit::AuditLog;
use medfed_core::SiteName;
use medfed_core::result::SiteOutcome;
use medfed_policy::Policy;
use medfed_protocol::SiteClient;
use medfed_protocol::tls::NodeTls;

use crate::auth::Authenticator;
use crate::catalog::CatalogCache;
use crate::state::{HubState, StateError};

pub use budget::{SiteBalance, SiteBudget, StudyBudget};
pub use catalog::OfferedTable;
pub use config::HubConfig;
pub use describe::DescribeRequest;
pub use glm::GlmRequest;
pub use http::{app, openapi, serve};
pub use learn::{EvaluateRequest, FedAvgRequest, Trained};
pub use query::QueryOptions;
pub use survival::{CoxRequest, KmRequest};

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
    /// A model that cannot be fitted or released.
    #[error(transparent)]
    Glm(#[from] medfed_analysis::glm::GlmError),
    /// A survival estimate that cannot be made or released.
    #[error(transparent)]
    Km(#[from] medfed_analysis::survival::KmError),
    /// A description that cannot be computed or released.
    #[error(transparent)]
    Describe(medfed_analysis::describe::DescribeError),
    #[error("unknown site `{0}`; the network's sites are: {1}")]
    UnknownSite(String, String),
    #[error("no site answered: {}", describe(.0))]
    NoSiteAnswered(BTreeMap<String, SiteOutcome>),
    #[error("{0}")]
    Transport(String),
    /// Authenticated but not allowed (403).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Not authenticated (401).
    #[error("{0}")]
    Unauthenticated(String),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Audit(#[from] medfed_audit::AuditError),
    #[error(transparent)]
    Policy(#[from] medfed_policy::PolicyError),
    /// The result is held for custodians' review (answered 202 with the review).
    #[error("held for review {} (checks: {})", .0.id, .0.checks.keys().cloned().collect::<Vec<_>>().join(", "))]
    HeldForReview(Box<review::ReviewView>),
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
    catalog: CatalogCache,
    deadline: Duration,
    privacy: config::NetworkPrivacy,
    state: HubState,
    audit: AuditLog,
    policy: Policy,
    auth: Authenticator,
    key: SigningKey,
}

impl Hub {
    /// Opens the hub's state and audit trail, loads its key and policy, connects (lazily) to the
    /// configured sites and learns their catalogue. Sites that are down now are retried when a
    /// query finds the catalogue empty.
    pub async fn new(cfg: &HubConfig) -> Result<Arc<Self>, HubError> {
        let g = &cfg.governance;
        let key = medfed_protocol::signing::load_signing_key(&g.signing_key)
            .map_err(|e| HubError::Config(e.to_string()))?;
        let state = HubState::open(&g.state_db).await?;
        let audit = AuditLog::open(&g.audit_db, key.clone(), Default::default()).await?;
        let policy = Policy::from_file(&g.policy, medfed_policy::HUB_RULE)?;
        let auth = Authenticator::new(state.clone(), cfg.oidc.as_ref(), Path::new("."))
            .await
            .map_err(HubError::Config)?;
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
            catalog: CatalogCache::new(Duration::from_secs(cfg.catalog_refresh_s)),
            deadline: Duration::from_millis(cfg.site_deadline_ms),
            privacy: cfg.privacy.clone(),
            state,
            audit,
            policy,
            auth,
            key,
        });
        hub.refresh_catalog().await;
        Ok(hub)
    }

    /// The network's sites.
    pub fn site_names(&self) -> Vec<SiteName> {
        self.sites.iter().map(|s| s.name().clone()).collect()
    }

    /// The hub's state (users, studies, …).
    pub fn state(&self) -> &HubState {
        &self.state
    }

    /// How the portal signs people in.
    pub fn sign_in(&self) -> portal::SignIn {
        portal::SignIn::from_config(self.auth.oidc())
    }

    /// The hub's audit trail.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
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
}

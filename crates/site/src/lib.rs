//! The site node: a hospital's own server, which runs federated work on the hospital's data and
//! returns only checked aggregates.
//!
//! Entrypoint is [`Site`]: [`Site::open`] registers the site's tables, [`Site::serve`] answers the
//! hub over Arrow Flight with mutual TLS until shutdown.
//!
//! Governance: every request must carry the hub's signature, pass this site's own Rego policy and
//! be written to this site's own audit trail before anything leaves ([`SiteConfig`]'s
//! `[governance]`).
//!
//! Trust boundary: everything that arrives (SQL text, request envelopes) is untrusted, even from
//! an authenticated hub. The site plans the SQL against its own tables and runs the same
//! aggregate-only check the hub ran ([`medfed_analysis::sql::run_site_partial`]) before
//! executing; errors that could echo data values are logged locally and answered generically.
//!
//! # Example
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let cfg = medfed_site::SiteConfig::load("site.toml".as_ref())?;
//! let site = medfed_site::Site::open(&cfg).await?;
//! let listener = tokio::net::TcpListener::bind(&cfg.listen).await?;
//! site.serve(listener, &cfg.tls, std::future::pending()).await?;
//! # Ok(()) }
//! ```

mod budget;
mod catalog;
mod config;
mod gate;
mod kernel;
mod privacy;
mod secure;
mod service;

use std::future::Future;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use medfed_protocol::tls::{NodeTls, TlsPaths};
use medfed_store::SiteStore;
use tokio::net::TcpListener;
use tonic::transport::Server;

pub use config::{Governance, PrivacyConfig, SiteConfig};
pub use medfed_core::SiteName;

/// Why a site could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SiteError {
    #[error("site config {path}: {reason}")]
    Config {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error(transparent)]
    Store(#[from] medfed_store::StoreError),
    #[error(transparent)]
    Tls(#[from] medfed_protocol::tls::TlsLoadError),
    #[error("serving: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error(transparent)]
    Key(#[from] medfed_protocol::signing::KeyFileError),
    #[error(transparent)]
    Policy(#[from] medfed_policy::PolicyError),
    #[error(transparent)]
    Audit(#[from] medfed_audit::AuditError),
    #[error(transparent)]
    Ledger(#[from] medfed_privacy::ledger::LedgerError),
}

/// A site node with its data registered.
pub struct Site {
    name: SiteName,
    store: Arc<SiteStore>,
    gate: gate::Gate,
    privacy: privacy::SitePrivacy,
}

impl Site {
    /// Registers the site's tables, loads its keys and policy, opens its audit trail.
    pub async fn open(cfg: &SiteConfig) -> Result<Self, SiteError> {
        let g = &cfg.governance;
        let hub_key = medfed_protocol::signing::load_verifying_key(&g.hub_key)?;
        let key = medfed_protocol::signing::load_signing_key(&g.signing_key)?;
        let policy = medfed_policy::Policy::from_file(&g.policy, medfed_policy::SITE_RULE)?;
        let audit =
            medfed_audit::AuditLog::open(&g.audit_db, key, medfed_audit::AuditOptions::default())
                .await?;
        let privacy = privacy::SitePrivacy::open(&cfg.privacy).await?;
        let store = SiteStore::open(&cfg.store).await?;
        tracing::info!(site = %cfg.name, tables = store.table_names().len(), "site data registered");
        Ok(Self {
            name: cfg.name.clone(),
            store: Arc::new(store),
            gate: gate::Gate::new(cfg.name.clone(), hub_key, policy, audit),
            privacy,
        })
    }

    /// The site's name.
    pub fn name(&self) -> &SiteName {
        &self.name
    }

    /// The site's tables.
    pub fn store(&self) -> &SiteStore {
        &self.store
    }

    /// Serves the hub on `listener` with mutual TLS until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: TcpListener,
        tls: &TlsPaths,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), SiteError> {
        let tls = NodeTls::load(tls)?;
        let audit = self.gate.audit().clone();
        let service = service::SiteService::new(
            self.name.clone(),
            self.store.clone(),
            self.gate,
            self.privacy,
        );
        tracing::info!(site = %self.name, addr = ?listener.local_addr().ok(), "site listening (mTLS)");
        Server::builder()
            .tls_config(tls.server_config())?
            .concurrency_limit_per_connection(64)
            .add_service(FlightServiceServer::new(service))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                shutdown,
            )
            .await?;
        // Seal the trail so everything up to shutdown is covered by a signature.
        if let Err(e) = audit.checkpoint().await {
            tracing::error!(site = %self.name, error = %e, "final audit checkpoint failed");
        }
        Ok(())
    }
}

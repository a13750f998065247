//! The site node: a hospital's own server, which runs federated work on the hospital's data and
//! returns only checked aggregates.
//!
//! Entrypoint is [`Site`]: [`Site::open`] registers the site's tables, [`Site::serve`] answers the
//! hub over Arrow Flight with mutual TLS until shutdown.
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

mod config;
mod service;

use std::future::Future;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use medfed_protocol::tls::{NodeTls, TlsPaths};
use medfed_store::SiteStore;
use tokio::net::TcpListener;
use tonic::transport::Server;

pub use config::SiteConfig;
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
}

/// A site node with its data registered.
pub struct Site {
    name: SiteName,
    store: Arc<SiteStore>,
}

impl Site {
    /// Registers the site's tables.
    pub async fn open(cfg: &SiteConfig) -> Result<Self, SiteError> {
        let store = SiteStore::open(&cfg.store).await?;
        tracing::info!(site = %cfg.name, tables = store.table_names().len(), "site data registered");
        Ok(Self {
            name: cfg.name.clone(),
            store: Arc::new(store),
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
        let service = service::SiteService::new(self.name.clone(), self.store.clone());
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
        Ok(())
    }
}

//! The hub's handle on one site: a lazily connected, mTLS Flight channel.

use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::error::FlightError;
use arrow_flight::{Action, FlightClient};
use futures::TryStreamExt;
use medfed_core::SiteName;
use tonic::transport::{Channel, Endpoint};

use crate::rounds::Reply;
use crate::tls::NodeTls;
use crate::wire::{SiteRequest, TableMeta};

/// How a call to a site failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SiteCallError {
    /// The site's own rules refused the request.
    #[error("{0}")]
    Refused(String),
    /// The site could not be reached, or failed while running.
    #[error("{0}")]
    Failed(String),
}

impl From<FlightError> for SiteCallError {
    fn from(e: FlightError) -> Self {
        match e {
            FlightError::Tonic(status) => match status.code() {
                tonic::Code::PermissionDenied | tonic::Code::InvalidArgument => {
                    SiteCallError::Refused(status.message().to_string())
                }
                tonic::Code::Unavailable => {
                    SiteCallError::Failed(format!("unreachable: {}", status.message()))
                }
                _ => SiteCallError::Failed(status.message().to_string()),
            },
            other => SiteCallError::Failed(other.to_string()),
        }
    }
}

/// One table of a site's catalogue.
#[derive(Debug, Clone)]
pub struct CatalogEntry {
    /// The table's name.
    pub name: String,
    /// Its Arrow schema (identifier columns marked in the fields' metadata).
    pub schema: SchemaRef,
    /// People in it, rounded and floored by the site's rule; `None` if the site does not say.
    pub persons: Option<medfed_core::catalog::PersonCount>,
}

/// A connection to one site's Flight endpoint. Cheap to clone (channels multiplex).
#[derive(Clone)]
pub struct SiteClient {
    name: SiteName,
    channel: Channel,
}

impl SiteClient {
    /// Prepares a connection to `url` (e.g. `https://127.0.0.1:7001`), authenticating as the
    /// holder of `tls` and expecting the site's certificate to name `name`. Connects on first use,
    /// so a site that is down fails its calls rather than the hub's start-up.
    pub fn new(name: SiteName, url: &str, tls: &NodeTls) -> Result<Self, SiteCallError> {
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| SiteCallError::Failed(format!("bad site URL {url}: {e}")))?
            .tls_config(tls.client_config(name.as_str()))
            .map_err(|e| SiteCallError::Failed(format!("TLS setup for {name}: {e}")))?
            .connect_timeout(Duration::from_secs(3))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30));
        Ok(Self {
            name,
            channel: endpoint.connect_lazy(),
        })
    }

    /// The site's name.
    pub fn name(&self) -> &SiteName {
        &self.name
    }

    fn flight(&self) -> FlightClient {
        FlightClient::new(self.channel.clone())
    }

    /// The site's tables, their schemas and the person counts it publishes.
    pub async fn catalog(&self) -> Result<Vec<CatalogEntry>, SiteCallError> {
        let infos: Vec<_> = self
            .flight()
            .list_flights(bytes::Bytes::new())
            .await?
            .try_collect()
            .await?;
        infos
            .into_iter()
            .map(|info| {
                let name = info
                    .flight_descriptor
                    .as_ref()
                    .and_then(|d| d.path.first().cloned())
                    .ok_or_else(|| {
                        SiteCallError::Failed("catalogue entry without a table name".into())
                    })?;
                let meta: TableMeta = if info.app_metadata.is_empty() {
                    TableMeta::default()
                } else {
                    serde_json::from_slice(&info.app_metadata).map_err(|e| {
                        SiteCallError::Failed(format!("catalogue metadata of {name}: {e}"))
                    })?
                };
                let schema = info.try_decode_schema().map_err(|e| {
                    SiteCallError::Failed(format!("catalogue schema of {name}: {e}"))
                })?;
                Ok(CatalogEntry {
                    name,
                    schema: std::sync::Arc::new(schema),
                    persons: meta.persons,
                })
            })
            .collect()
    }

    /// Signs `request` with the hub's key, runs it and collects the site's partial.
    pub async fn run(
        &self,
        request: &SiteRequest,
        hub_key: &ed25519_dalek::SigningKey,
    ) -> Result<Vec<RecordBatch>, SiteCallError> {
        let mut stream = self.flight().do_get(request.sign(hub_key)).await?;
        let mut batches = Vec::new();
        while let Some(b) = stream.try_next().await? {
            batches.push(b);
        }
        // An answer with no groups still carries its schema (and the site's privacy report in
        // the schema's metadata): keep it as an empty batch.
        if batches.is_empty()
            && let Some(schema) = stream.schema()
        {
            batches.push(RecordBatch::new_empty(schema.clone()));
        }
        Ok(batches)
    }

    /// Signs `request` (a [`crate::wire::Work::SecureSql`] or
    /// [`crate::wire::Work::SecureKernel`] round) and returns the site's reply.
    pub async fn secure_round(
        &self,
        request: &SiteRequest,
        hub_key: &ed25519_dalek::SigningKey,
    ) -> Result<Reply, SiteCallError> {
        self.action(
            crate::rounds::ACTION_SECAGG,
            request,
            hub_key,
            "secure aggregation",
        )
        .await
    }

    /// Signs `request` (a [`crate::wire::Work::Kernel`] step) and returns the site's sums.
    pub async fn kernel(
        &self,
        request: &SiteRequest,
        hub_key: &ed25519_dalek::SigningKey,
    ) -> Result<medfed_core::kernel::KernelAnswer, SiteCallError> {
        self.action(crate::ACTION_KERNEL, request, hub_key, "kernel")
            .await
    }

    /// Signs `request` (a [`crate::wire::Work::Budget`]) and returns the study's balance in the
    /// site's privacy ledger.
    pub async fn budget(
        &self,
        request: &SiteRequest,
        hub_key: &ed25519_dalek::SigningKey,
    ) -> Result<medfed_privacy::ledger::Balance, SiteCallError> {
        self.action(crate::ACTION_BUDGET, request, hub_key, "budget")
            .await
    }

    /// Runs the signed `request` as Flight action `action` and reads its one JSON reply.
    async fn action<T: serde::de::DeserializeOwned>(
        &self,
        action: &'static str,
        request: &SiteRequest,
        hub_key: &ed25519_dalek::SigningKey,
        what: &str,
    ) -> Result<T, SiteCallError> {
        let ticket = request.sign(hub_key).ticket;
        let mut stream = self.flight().do_action(Action::new(action, ticket)).await?;
        let body = stream
            .try_next()
            .await?
            .ok_or_else(|| SiteCallError::Failed(format!("empty {what} reply")))?;
        serde_json::from_slice(&body)
            .map_err(|e| SiteCallError::Failed(format!("malformed {what} reply: {e}")))
    }

    /// Liveness: the site answers a `health` action.
    pub async fn health(&self) -> Result<(), SiteCallError> {
        let mut s = self
            .flight()
            .do_action(Action::new(crate::ACTION_HEALTH, ""))
            .await?;
        while s.try_next().await?.is_some() {}
        Ok(())
    }
}

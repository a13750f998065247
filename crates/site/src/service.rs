//! The site's Flight service: catalogue, health, and partial steps.

use std::sync::Arc;
use std::time::Instant;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use medfed_analysis::sql::{
    PartialPlanCache, SqlError, execute_partial, prepare_site_partial, reads,
};
use medfed_audit::Decision as Outcome;
use medfed_core::SiteName;
use medfed_protocol::wire::{SiteRequest, Work};
use sha2::{Digest, Sha256};

use crate::gate::Gate;
use medfed_store::SiteStore;
use tonic::{Request, Response, Status, Streaming};

pub(crate) struct SiteService {
    name: SiteName,
    store: Arc<SiteStore>,
    plans: PartialPlanCache,
    gate: Gate,
}

impl SiteService {
    pub(crate) fn new(name: SiteName, store: Arc<SiteStore>, gate: Gate) -> Self {
        Self {
            name,
            store,
            plans: PartialPlanCache::default(),
            gate,
        }
    }

    /// Plans and checks the SQL, lets the gate judge what it reads, runs it, audits the answer.
    async fn partial_sql(
        &self,
        req: &SiteRequest,
        sql: &str,
    ) -> Result<Vec<arrow::array::RecordBatch>, Status> {
        let started = Instant::now();
        let request_id = req.request_id.as_str();
        let ctx = self.store.context();
        let prepared = prepare_site_partial(ctx, Some(&self.plans), sql).await;
        let outcome = match prepared {
            Ok(plan) => {
                self.gate.judge(req, &reads(&plan)).await?;
                execute_partial(ctx, &plan).await
            }
            Err(e) => Err(e),
        };
        let (status, reason) = match &outcome {
            Ok(_) => (Outcome::Allow, "partial released".to_string()),
            Err(e) if e.is_refusal() => (Outcome::Deny, e.to_string()),
            Err(SqlError::Plan(m)) => (Outcome::Deny, format!("invalid query: {m}")),
            Err(_) => (Outcome::Error, "execution failed".to_string()),
        };
        let digest = outcome.as_ref().ok().map(|b| digest(b));
        self.gate.record(req, status, &reason, digest).await?;
        match outcome {
            Ok(batches) => {
                let groups: usize = batches.iter().map(|b| b.num_rows()).sum();
                tracing::info!(site = %self.name, request_id, groups, ms = started.elapsed().as_secs_f64() * 1e3, "partial answered");
                Ok(batches)
            }
            Err(e) if e.is_refusal() => {
                tracing::warn!(site = %self.name, request_id, reason = %e, "partial refused");
                Err(Status::permission_denied(format!(
                    "site {}: {e}",
                    self.name
                )))
            }
            Err(SqlError::Plan(msg)) => {
                tracing::warn!(site = %self.name, request_id, reason = %msg, "partial invalid");
                Err(Status::invalid_argument(format!(
                    "site {}: invalid query: {msg}",
                    self.name
                )))
            }
            Err(e) => {
                // Execution errors can quote data values (a failed cast names the value), so
                // the detail stays in the site's own log.
                tracing::error!(site = %self.name, request_id, error = %e, "partial failed");
                Err(Status::internal(format!(
                    "site {}: execution failed (request {request_id}; details in the site's log)",
                    self.name
                )))
            }
        }
    }
}

/// SHA-256 of the partial as Arrow IPC: what the audit trail records instead of the values.
fn digest(batches: &[arrow::array::RecordBatch]) -> String {
    let mut hasher = Sha256::new();
    for b in batches {
        let mut buf = Vec::new();
        if let Some(mut w) = arrow::ipc::writer::StreamWriter::try_new(&mut buf, &b.schema()).ok()
            && w.write(b).is_ok()
            && w.finish().is_ok()
        {
            drop(w);
            hasher.update(&buf);
        }
    }
    hex::encode(hasher.finalize())
}

type Stream<T> = BoxStream<'static, Result<T, Status>>;

fn unimplemented<T>(what: &str) -> Result<T, Status> {
    Err(Status::unimplemented(format!(
        "{what} is not offered by a medfed site"
    )))
}

#[tonic::async_trait]
impl FlightService for SiteService {
    type HandshakeStream = Stream<HandshakeResponse>;
    type ListFlightsStream = Stream<FlightInfo>;
    type DoGetStream = Stream<FlightData>;
    type DoPutStream = Stream<PutResult>;
    type DoExchangeStream = Stream<FlightData>;
    type DoActionStream = Stream<arrow_flight::Result>;
    type ListActionsStream = Stream<ActionType>;

    async fn list_flights(
        &self,
        _: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        let mut infos = Vec::new();
        for (name, schema) in self.store.schemas().await {
            let info = FlightInfo::new()
                .try_with_schema(&schema)
                .map_err(|e| Status::internal(e.to_string()))?
                .with_descriptor(FlightDescriptor::new_path(vec![name]));
            infos.push(Ok(info));
        }
        Ok(Response::new(stream::iter(infos).boxed()))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let req = self.gate.admit(&request.get_ref().ticket).await?;
        let batches = match &req.work {
            Work::PartialSql { sql } => self.partial_sql(&req, sql).await?,
        };
        let stream = FlightDataEncoderBuilder::new()
            .build(stream::iter(batches.into_iter().map(Ok)))
            .map_err(|e| Status::internal(e.to_string()));
        Ok(Response::new(stream.boxed()))
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        match request.get_ref().r#type.as_str() {
            medfed_protocol::ACTION_HEALTH => {
                let ok = arrow_flight::Result {
                    body: bytes::Bytes::from(self.name.to_string()),
                };
                Ok(Response::new(stream::iter([Ok(ok)]).boxed()))
            }
            other => Err(Status::invalid_argument(format!(
                "unknown action `{other}`"
            ))),
        }
    }

    async fn list_actions(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        let health = ActionType {
            r#type: medfed_protocol::ACTION_HEALTH.into(),
            description: "liveness probe".into(),
        };
        Ok(Response::new(stream::iter([Ok(health)]).boxed()))
    }

    async fn handshake(
        &self,
        _: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        unimplemented("Handshake (authentication is mutual TLS)")
    }
    async fn get_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        unimplemented("GetFlightInfo")
    }
    async fn poll_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        unimplemented("PollFlightInfo")
    }
    async fn get_schema(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        unimplemented("GetSchema")
    }
    async fn do_put(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        unimplemented("DoPut (nothing is written to a site over the network)")
    }
    async fn do_exchange(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        unimplemented("DoExchange")
    }
}

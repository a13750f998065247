//! The site's Flight service: catalogue, health, and partial steps.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use medfed_analysis::sql::{PartialPlanCache, SqlError, execute_partial, prepare_site_partial};
use medfed_audit::Decision as Outcome;
use medfed_core::SiteName;
use medfed_privacy::PartialReport;
use medfed_privacy::release::REPORT_METADATA_KEY;
use medfed_protocol::wire::{SiteRequest, Work};
use sha2::{Digest, Sha256};

use crate::catalog::Catalogue;
use crate::gate::Gate;
use crate::privacy::SitePrivacy;
use crate::secure::{Rounds, Secured};
use medfed_store::SiteStore;
use tonic::{Request, Response, Status, Streaming};

pub(crate) struct SiteService {
    pub(crate) name: SiteName,
    pub(crate) store: Arc<SiteStore>,
    plans: PartialPlanCache,
    pub(crate) gate: Gate,
    pub(crate) privacy: SitePrivacy,
    pub(crate) rounds: Rounds,
    /// Rows of recent kernel steps (a fit's iterations read the tables once).
    pub(crate) rows: medfed_analysis::kernel::RowCache,
    /// Tables and their published person counts.
    catalogue: Catalogue,
}

/// What the audit trail says about a step that succeeded.
pub(crate) struct Audited {
    pub(crate) reason: String,
    pub(crate) digest: Option<String>,
    pub(crate) epsilon: Option<f64>,
}

/// Why a partial did not leave.
pub(crate) enum Stop {
    /// Refused under the site's rules (policy, disclosure, budget): the researcher may know why.
    Refused(String),
    /// The query does not plan here.
    Invalid(String),
    /// It failed while running: the detail may quote data, so it stays in the site's log.
    Failed(String),
    /// The gate refused and audited it already.
    Judged(Status),
}

impl From<SqlError> for Stop {
    fn from(e: SqlError) -> Self {
        match e {
            SqlError::Plan(m) => Stop::Invalid(m),
            SqlError::Execution(m) => Stop::Failed(m),
            refusal => Stop::Refused(refusal.to_string()),
        }
    }
}

impl SiteService {
    pub(crate) fn new(
        name: SiteName,
        store: Arc<SiteStore>,
        gate: Gate,
        privacy: SitePrivacy,
    ) -> Self {
        Self {
            catalogue: Catalogue::new(privacy.count_rule()),
            name,
            store,
            plans: PartialPlanCache::default(),
            gate,
            privacy,
            rounds: Rounds::default(),
            rows: Default::default(),
        }
    }

    /// Plans and checks the SQL, lets the gate judge what it reads, checks the study's budget,
    /// runs it, protects the answer (suppression or noise), charges the ledger, audits, answers.
    async fn partial_sql(&self, req: &SiteRequest, sql: &str) -> Result<RecordBatch, Status> {
        let started = Instant::now();
        let outcome = self
            .protected_partial(req, sql)
            .await
            .map(|(batch, report)| {
                let audited = Audited {
                    reason: describe(&report),
                    digest: Some(digest(std::slice::from_ref(&batch))),
                    epsilon: (report.epsilon > 0.0).then_some(report.epsilon),
                };
                ((batch, report), Some(audited))
            });
        let (batch, report) = self.settle(req, outcome).await?;
        tracing::info!(site = %self.name, request_id = %req.request_id, groups = batch.num_rows(), epsilon = report.epsilon, ms = started.elapsed().as_secs_f64() * 1e3, "partial answered");
        let json = serde_json::to_string(&report).expect("report serialises");
        let schema = batch
            .schema()
            .as_ref()
            .clone()
            .with_metadata([(REPORT_METADATA_KEY.to_string(), json)].into());
        batch
            .with_schema(Arc::new(schema))
            .map_err(|e| Status::internal(e.to_string()))
    }

    /// Audits the outcome of a step (a success only when it says what it released) and turns a
    /// failure into the status the hub sees: refusals say why, execution failures do not.
    pub(crate) async fn settle<T>(
        &self,
        req: &SiteRequest,
        outcome: Result<(T, Option<Audited>), Stop>,
    ) -> Result<T, Status> {
        let request_id = req.request_id.as_str();
        let (status, reason, digest, epsilon) = match &outcome {
            Ok((_, None)) | Err(Stop::Judged(_)) => (None, String::new(), None, None),
            Ok((_, Some(a))) => (
                Some(Outcome::Allow),
                a.reason.clone(),
                a.digest.clone(),
                a.epsilon,
            ),
            Err(Stop::Refused(m)) => (Some(Outcome::Deny), m.clone(), None, None),
            Err(Stop::Invalid(m)) => (
                Some(Outcome::Deny),
                format!("invalid request: {m}"),
                None,
                None,
            ),
            Err(Stop::Failed(_)) => (
                Some(Outcome::Error),
                "execution failed".to_string(),
                None,
                None,
            ),
        };
        if let Some(status) = status {
            self.gate
                .record(req, status, &reason, digest, epsilon)
                .await?;
        }
        match outcome {
            Ok((value, _)) => Ok(value),
            Err(Stop::Refused(m)) => {
                tracing::warn!(site = %self.name, request_id, reason = %m, "request refused");
                Err(Status::permission_denied(format!(
                    "site {}: {m}",
                    self.name
                )))
            }
            Err(Stop::Judged(s)) => Err(s),
            Err(Stop::Invalid(msg)) => {
                tracing::warn!(site = %self.name, request_id, reason = %msg, "request invalid");
                Err(Status::invalid_argument(format!(
                    "site {}: invalid query: {msg}",
                    self.name
                )))
            }
            Err(Stop::Failed(e)) => {
                // Execution errors can quote data values (a failed cast names the value), so
                // the detail stays in the site's own log.
                tracing::error!(site = %self.name, request_id, error = %e, "request failed");
                Err(Status::internal(format!(
                    "site {}: execution failed (request {request_id}; details in the site's log)",
                    self.name
                )))
            }
        }
    }

    pub(crate) async fn protected_partial(
        &self,
        req: &SiteRequest,
        sql: &str,
    ) -> Result<(RecordBatch, PartialReport), Stop> {
        let ctx = self.store.context();
        let protection = &req.context.privacy;
        let plan = prepare_site_partial(ctx, Some(&self.plans), sql, protection).await?;
        // A within-site variance is never summed as it is: under secure aggregation the request
        // must say how to reshape it ([`medfed_analysis::sql::spread`]).
        let within = plan.within_site();
        if protection.secure_aggregation && !within.is_empty() {
            let reshaped: Vec<&String> = match &req.work {
                Work::SecureSql {
                    spread: Some(spread),
                    ..
                } => spread.columns().iter().map(|[_, _, v]| v).collect(),
                _ => Vec::new(),
            };
            if !within.iter().all(|c| reshaped.contains(&c)) {
                return Err(Stop::Refused(
                    "VAR/STDDEV under secure aggregation are summed in two steps around the \
                     pooled mean, and this request does not say which (is the hub older than \
                     this site?)"
                        .into(),
                ));
            }
        }
        let decision = self
            .gate
            .judge(req, &plan.reads)
            .await
            .map_err(Stop::Judged)?;
        self.privacy.admit(req, None).await.map_err(Stop::Refused)?;
        let site_rules = self.privacy.rules(&decision);
        let (batch, mut report) = execute_partial(ctx, &plan, protection, &site_rules).await?;
        if let Some(dp) = &protection.dp {
            let balance = self
                .privacy
                .charge(req, dp.epsilon, report.delta)
                .await
                .map_err(|e| Stop::Refused(e.to_string()))?;
            report.budget = Some(balance);
        }
        Ok((batch, report))
    }
}

/// The audit trail's sentence for a released partial (no values, only what was done).
fn describe(r: &PartialReport) -> String {
    let suppressed: usize = r.suppressed.values().sum();
    match &r.budget {
        Some(b) => format!(
            "partial released with DP noise: ε = {} spent, ε = {:.4} of {} left",
            r.epsilon,
            b.epsilon_remaining(),
            b.total.epsilon
        ),
        None if suppressed > 0 => format!(
            "partial released; {suppressed} group(s) suppressed (k = {})",
            r.rules.min_cell_count
        ),
        None => "partial released".to_string(),
    }
}

/// SHA-256 of the partial as Arrow IPC: what the audit trail records instead of the values.
pub(crate) fn digest(batches: &[arrow::array::RecordBatch]) -> String {
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
        let infos = self.catalogue.list(&self.store).await?;
        self.gate
            .record_listing(self.catalogue.describe(infos.len()))
            .await?;
        Ok(Response::new(
            stream::iter(infos.into_iter().map(Ok)).boxed(),
        ))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let req = self.gate.admit(&request.get_ref().ticket).await?;
        let batch = match &req.work {
            Work::PartialSql { sql } => self.partial_sql(&req, sql).await?,
            Work::SecureSql { .. }
            | Work::Kernel { .. }
            | Work::SecureKernel { .. }
            | Work::Budget => {
                return Err(Status::invalid_argument(
                    "secure aggregation rounds, kernels and budgets are Flight actions, not tickets",
                ));
            }
        };
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(batch.schema())
            .build(stream::iter([Ok(batch)]))
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
            medfed_protocol::rounds::ACTION_SECAGG => {
                let req = self.gate.admit(&request.get_ref().body).await?;
                let (what, round) = match &req.work {
                    Work::SecureSql { sql, round, spread } => {
                        (Secured::Sql(sql, spread.as_ref()), round)
                    }
                    Work::SecureKernel { task, round } => (Secured::Kernel(task), round),
                    _ => return Err(Status::invalid_argument("not a secure aggregation round")),
                };
                let reply = self.secure_round(&req, what, round).await?;
                let body =
                    bytes::Bytes::from(serde_json::to_vec(&reply).expect("reply serialises"));
                Ok(Response::new(
                    stream::iter([Ok(arrow_flight::Result { body })]).boxed(),
                ))
            }
            medfed_protocol::ACTION_KERNEL => {
                let req = self.gate.admit(&request.get_ref().body).await?;
                let Work::Kernel { task } = &req.work else {
                    return Err(Status::invalid_argument("not a kernel step"));
                };
                let answer = self.kernel(&req, task).await?;
                let body =
                    bytes::Bytes::from(serde_json::to_vec(&answer).expect("answer serialises"));
                Ok(Response::new(
                    stream::iter([Ok(arrow_flight::Result { body })]).boxed(),
                ))
            }
            medfed_protocol::ACTION_BUDGET => {
                let req = self.gate.admit(&request.get_ref().body).await?;
                if req.work != Work::Budget {
                    return Err(Status::invalid_argument("not a budget request"));
                }
                let balance = self.budget(&req).await?;
                let body =
                    bytes::Bytes::from(serde_json::to_vec(&balance).expect("balance serialises"));
                Ok(Response::new(
                    stream::iter([Ok(arrow_flight::Result { body })]).boxed(),
                ))
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
        let secagg = ActionType {
            r#type: medfed_protocol::rounds::ACTION_SECAGG.into(),
            description: "one round of secure aggregation (signed request)".into(),
        };
        let kernel = ActionType {
            r#type: medfed_protocol::ACTION_KERNEL.into(),
            description: "one site kernel step (signed request)".into(),
        };
        let budget = ActionType {
            r#type: medfed_protocol::ACTION_BUDGET.into(),
            description: "a study's privacy budget here (signed request)".into(),
        };
        Ok(Response::new(
            stream::iter([Ok(health), Ok(secagg), Ok(kernel), Ok(budget)]).boxed(),
        ))
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

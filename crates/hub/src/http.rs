//! The researchers' HTTP JSON API.
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | liveness, no token |
//! | `GET /v1/whoami` | the caller's identity and roles |
//! | `POST /v1/queries` `{"sql", "study", "sites"?, "epsilon"?, "bounds"?, "max_rows_per_person"?}` | run a federated query under a study (the last three for DP studies) |
//! | `POST /v1/analyses/glm` [`GlmRequest`](crate::GlmRequest) `{"study", "table", "formula", "family", "weights"?, "where"?, "sites"?, "secure_aggregation"?}` | fit an exact federated GLM |
//! | `POST /v1/analyses/km` [`KmRequest`](crate::KmRequest) `{"study", "table", "time", "event", "group"?, "bin_width", "max_time", "where"?}` | Kaplan–Meier curves |
//! | `POST /v1/analyses/cox` [`CoxRequest`](crate::CoxRequest) `{"study", "table", "formula": "Surv(t, e) ~ …", "ties"?: "efron"\|"breslow", "where"?, "sites"?, "secure_aggregation"?}` | Cox model stratified by site |
//! | `POST /v1/analyses/fedavg` [`FedAvgRequest`](crate::FedAvgRequest) `{"study", "table", "formula", "model": "logistic"\|{"mlp": {"hidden"}}, "rounds"?, "local_epochs"?, "batch_size"?, "learning_rate"?, "l2"?, "proximal_mu"?, "fraction"?, "min_sites"?, "seed"?, "where"?, "register"?, "secure_aggregation"?, DP studies: "epsilon"?, "clip", "bounds": {"input": [low, high]}}` | train by FedAvg / FedProx (DP-FedAvg in DP studies) |
//! | `POST /v1/analyses/evaluate` [`EvaluateRequest`](crate::EvaluateRequest) `{"study", "table", "formula", "model", "weights", "scaling", "where"?, "sites"?}` | a model's AUROC, AUPRC, Brier score and calibration at each site |
//! | `GET /v1/models`, `GET /v1/models/{name}` | the model registry: versions with parameters, metrics, ε, sites, audit digest (those of studies the caller may read) |
//! | `POST /v1/analyses/describe` [`DescribeRequest`](crate::DescribeRequest) `{"study", "table", "kind": "summary"\|"histogram"\|"table"\|"correlation", …, "where"?}` | descriptive statistics |
//! | `GET /v1/sites` | the sites and whether they answer now |
//! | `GET /v1/catalog` | tables, columns and types the sites offer (metadata only) |
//! | `GET /v1/studies`, `GET /v1/studies/{id}` | studies and each site's decision |
//! | `POST /v1/studies` [`NewStudy`] | propose a study (researcher, clinician) |
//! | `POST /v1/studies/{id}/decisions` `{"site", "decision": "approve"\|"reject", "reason"?}` | a custodian decides for their site |
//! | `GET /v1/studies/{id}/budget` | a DP study's privacy budget at each approved site: allowed, spent, left (the sites' own ledgers) |
//! | `GET /v1/audit?after=&limit=` | the hub's audit trail (auditor) |
//! | `GET /v1/audit/verify` | re-walk the hub's trail (auditor) |
//!
//! Every `/v1` route needs `Authorization: Bearer <token>` (a medfed API token or an SSO JWT) and
//! is decided by `hub.rego`; both outcomes are audited. Errors are `{"error": "...", "kind":
//! "..."}` with 401 (no/invalid token), 403 (not allowed), 404 (no such study), 400 (invalid
//! query or request), 422 (refused: not an aggregate-only query), 503 (no site answered). The
//! audit trail can be read, never changed, through the API.

use std::future::Future;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;

use crate::auth::Principal;
use crate::state::{NewStudy, StateError, Study};
use crate::{Hub, HubError};

/// The API's one error type: a status, a machine-readable kind, and a sentence for humans.
pub struct AppError(StatusCode, &'static str, String, Option<serde_json::Value>);

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.2, "kind": self.1});
        if let Some(sites) = self.3 {
            body["sites"] = sites;
        }
        (self.0, Json(body)).into_response()
    }
}

impl From<HubError> for AppError {
    fn from(e: HubError) -> Self {
        let msg = e.to_string();
        match e {
            HubError::Query(q) if q.is_refusal() => {
                AppError(StatusCode::UNPROCESSABLE_ENTITY, "refused", msg, None)
            }
            HubError::Query(medfed_analysis::sql::SqlError::Plan(_)) => {
                AppError(StatusCode::BAD_REQUEST, "invalid", msg, None)
            }
            HubError::Glm(ref g) => {
                use medfed_analysis::glm::GlmError as G;
                match g {
                    G::Disclosive(_) => {
                        AppError(StatusCode::UNPROCESSABLE_ENTITY, "refused", msg, None)
                    }
                    G::Numeric(_) => {
                        AppError(StatusCode::UNPROCESSABLE_ENTITY, "cannot_fit", msg, None)
                    }
                    G::SitesChanged(_) => {
                        AppError(StatusCode::SERVICE_UNAVAILABLE, "sites_changed", msg, None)
                    }
                    _ => AppError(StatusCode::BAD_REQUEST, "invalid", msg, None),
                }
            }
            HubError::Km(medfed_analysis::survival::KmError::Disclosive(_)) => {
                AppError(StatusCode::UNPROCESSABLE_ENTITY, "refused", msg, None)
            }
            HubError::Km(_) => AppError(StatusCode::BAD_REQUEST, "invalid", msg, None),
            HubError::Describe(medfed_analysis::describe::DescribeError::Disclosive(_)) => {
                AppError(StatusCode::UNPROCESSABLE_ENTITY, "refused", msg, None)
            }
            HubError::Describe(medfed_analysis::describe::DescribeError::SitesChanged(_)) => {
                AppError(StatusCode::SERVICE_UNAVAILABLE, "sites_changed", msg, None)
            }
            HubError::Describe(_) => AppError(StatusCode::BAD_REQUEST, "invalid", msg, None),
            HubError::UnknownSite(..) => AppError(StatusCode::BAD_REQUEST, "invalid", msg, None),
            HubError::Forbidden(_) => AppError(StatusCode::FORBIDDEN, "forbidden", msg, None),
            HubError::Unauthenticated(_) => AppError(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                format!(
                    "{msg}: send `Authorization: Bearer <token>` (see demo.json or ask your network admin)"
                ),
                None,
            ),
            HubError::State(StateError::NotFound(_)) => {
                AppError(StatusCode::NOT_FOUND, "not_found", msg, None)
            }
            HubError::State(StateError::Invalid(_)) => {
                AppError(StatusCode::BAD_REQUEST, "invalid", msg, None)
            }
            HubError::Audit(_) => AppError(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                msg,
                None,
            ),
            HubError::NoSiteAnswered(sites) => AppError(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_site_answered",
                msg,
                serde_json::to_value(sites).ok(),
            ),
            _ => AppError(StatusCode::INTERNAL_SERVER_ERROR, "internal", msg, None),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryRequest {
    sql: String,
    study: String,
    #[serde(default)]
    sites: Option<Vec<String>>,
    #[serde(flatten)]
    options: crate::query::QueryOptions,
}

type Body<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

fn body<T>(b: Body<T>) -> Result<T, AppError> {
    b.map(|Json(t)| t).map_err(|e| {
        AppError(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("request body: {}", e.body_text()),
            None,
        )
    })
}

async fn run_query(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
    req: Body<QueryRequest>,
) -> Result<Response, AppError> {
    let req = body(req)?;
    let result = hub
        .query(
            &who,
            &req.study,
            &req.sql,
            req.sites.as_deref(),
            &req.options,
        )
        .await?;
    Ok(Json(result).into_response())
}

async fn run_glm(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
    req: Body<crate::GlmRequest>,
) -> Result<Response, AppError> {
    let req = body(req)?;
    Ok(Json(hub.glm(&who, &req).await?).into_response())
}

async fn run_km(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
    req: Body<crate::KmRequest>,
) -> Result<Response, AppError> {
    let req = body(req)?;
    Ok(Json(hub.km(&who, &req).await?).into_response())
}

async fn run_cox(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
    req: Body<crate::CoxRequest>,
) -> Result<Response, AppError> {
    let req = body(req)?;
    Ok(Json(hub.cox(&who, &req).await?).into_response())
}

async fn run_fedavg(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
    req: Body<crate::FedAvgRequest>,
) -> Result<Response, AppError> {
    let req = body(req)?;
    Ok(Json(hub.fedavg(&who, &req).await?).into_response())
}

async fn run_evaluate(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
    req: Body<crate::EvaluateRequest>,
) -> Result<Response, AppError> {
    let req = body(req)?;
    Ok(Json(hub.evaluate(&who, &req).await?).into_response())
}

async fn run_describe(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
    req: Body<crate::DescribeRequest>,
) -> Result<Response, AppError> {
    let req = body(req)?;
    Ok(Json(hub.describe(&who, &req).await?).into_response())
}

async fn list_models(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
) -> Result<Response, AppError> {
    Ok(Json(hub.models_for(&who, None).await?).into_response())
}

async fn get_model(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Response, AppError> {
    Ok(Json(hub.models_for(&who, Some(&name)).await?).into_response())
}

async fn whoami(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
) -> Result<Json<Principal>, AppError> {
    hub.allow_read(&who, "whoami").await?;
    Ok(Json(who))
}

async fn list_studies(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
) -> Result<Json<serde_json::Value>, AppError> {
    Ok(Json(json!({ "studies": hub.studies_for(&who).await? })))
}

async fn get_study(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Study>, AppError> {
    Ok(Json(hub.study_for(&who, &id).await?))
}

async fn propose(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
    req: Body<NewStudy>,
) -> Result<(StatusCode, Json<Study>), AppError> {
    let study = hub.propose(&who, &body(req)?).await?;
    Ok((StatusCode::CREATED, Json(study)))
}

async fn study_budget(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<crate::StudyBudget>, AppError> {
    Ok(Json(hub.budget(&who, &id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionRequest {
    site: String,
    decision: String,
    #[serde(default)]
    reason: Option<String>,
}

async fn decide(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    req: Body<DecisionRequest>,
) -> Result<Json<Study>, AppError> {
    let req = body(req)?;
    let approve = match req.decision.as_str() {
        "approve" => true,
        "reject" => false,
        other => {
            return Err(AppError(
                StatusCode::BAD_REQUEST,
                "invalid",
                format!("decision must be approve or reject, not {other:?}"),
                None,
            ));
        }
    };
    let study = hub
        .decide(&who, &id, &req.site, approve, req.reason.as_deref())
        .await?;
    Ok(Json(study))
}

#[derive(Deserialize)]
struct AuditQuery {
    #[serde(default)]
    after: i64,
    #[serde(default = "default_limit")]
    limit: i64,
}

fn default_limit() -> i64 {
    1000
}

async fn audit_records(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<serde_json::Value>, AppError> {
    let records = hub.audit_records(&who, q.after, q.limit).await?;
    Ok(Json(json!({ "records": records })))
}

/// A re-walk of the trail with its verdict spelled out for clients.
#[derive(serde::Serialize)]
struct Verified {
    intact: bool,
    #[serde(flatten)]
    report: medfed_audit::VerifyReport,
}

async fn audit_verify(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
) -> Result<Json<Verified>, AppError> {
    let report = hub.audit_verify(&who).await?;
    Ok(Json(Verified {
        intact: report.is_intact(),
        report,
    }))
}

async fn list_sites(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
) -> Result<Json<serde_json::Value>, AppError> {
    hub.allow_read(&who, "sites.read").await?;
    let health = hub.site_health().await;
    let sites: Vec<_> = health
        .into_iter()
        .map(|(name, r)| match r {
            Ok(()) => json!({"name": name, "status": "up"}),
            Err(e) => json!({"name": name, "status": "down", "message": e}),
        })
        .collect();
    Ok(Json(json!({ "sites": sites })))
}

async fn catalog(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
) -> Result<Json<serde_json::Value>, AppError> {
    hub.allow_read(&who, "catalog.read").await?;
    if hub.tables().is_empty() {
        hub.refresh_catalog().await;
    }
    let tables: serde_json::Map<String, serde_json::Value> = hub
        .tables()
        .into_iter()
        .map(|(name, (schema, sites))| {
            let columns: Vec<_> = schema
                .fields()
                .iter()
                .map(|f| {
                    json!({"name": f.name(), "type": f.data_type().to_string(),
                    "identifier": f.metadata().contains_key(medfed_core::IDENTIFIER_METADATA_KEY)})
                })
                .collect();
            (name, json!({"columns": columns, "sites": sites}))
        })
        .collect();
    Ok(Json(json!({ "tables": tables })))
}

async fn require_token(
    State(hub): State<Arc<Hub>>,
    mut req: Request,
    next: Next,
) -> Result<Response, AppError> {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let what = format!("{} {}", req.method(), req.uri().path());
    let who = hub.authenticate(header, &what).await.inspect_err(|e| {
        tracing::warn!(path = %req.uri().path(), error = %e, "unauthenticated request");
    })?;
    tracing::debug!(who = %who.id, path = %req.uri().path(), "authenticated");
    req.extensions_mut().insert(who);
    Ok(next.run(req).await)
}

/// The API as a router (tests drive it with `tower::ServiceExt::oneshot`).
pub fn app(hub: Arc<Hub>) -> Router {
    let v1 = Router::new()
        .route("/whoami", get(whoami))
        .route("/queries", post(run_query))
        .route("/analyses/glm", post(run_glm))
        .route("/analyses/km", post(run_km))
        .route("/analyses/cox", post(run_cox))
        .route("/analyses/fedavg", post(run_fedavg))
        .route("/analyses/evaluate", post(run_evaluate))
        .route("/analyses/describe", post(run_describe))
        .route("/models", get(list_models))
        .route("/models/{name}", get(get_model))
        .route("/sites", get(list_sites))
        .route("/catalog", get(catalog))
        .route("/studies", get(list_studies).post(propose))
        .route("/studies/{id}", get(get_study))
        .route("/studies/{id}/decisions", post(decide))
        .route("/studies/{id}/budget", get(study_budget))
        .route("/audit", get(audit_records))
        .route("/audit/verify", get(audit_verify))
        .route_layer(middleware::from_fn_with_state(hub.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .nest("/v1", v1)
        .with_state(hub)
}

/// Serves [`app`] on `listener` until `shutdown` resolves, finishing requests in flight.
pub async fn serve(
    hub: Arc<Hub>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(addr = ?listener.local_addr().ok(), "hub listening");
    axum::serve(listener, app(hub))
        .with_graceful_shutdown(shutdown)
        .await
}

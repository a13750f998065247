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
//! | `GET /v1/catalog` | tables, columns and types the sites offer, and the rounded person counts they publish (metadata only) |
//! | `GET /v1/studies`, `GET /v1/studies/{id}` | studies and each site's decision |
//! | `POST /v1/studies` [`NewStudy`] | propose a study (researcher, clinician) |
//! | `POST /v1/studies/{id}/decisions` `{"site", "decision": "approve"\|"reject", "reason"?}` | a custodian decides for their site |
//! | `GET /v1/reviews`, `GET /v1/reviews/{id}` | releases held for review (a check marked "review" fired): custodians see their sites' with the result, researchers their own (the result once approved) |
//! | `POST /v1/reviews/{id}` `{"decision": "approve"\|"reject", "site"?, "reason"?}` | a custodian of a contributing site decides; released when every contributing site approved |
//! | `GET /v1/studies/{id}/budget` | a DP study's privacy budget at each approved site: allowed, spent, left (the sites' own ledgers) |
//! | `GET /v1/audit?after=&limit=` | the hub's audit trail (auditor) |
//! | `GET /v1/audit/verify` | re-walk the hub's trail (auditor) |
//!
//! Every `/v1` route needs `Authorization: Bearer <token>` (a medfed API token or an SSO JWT) and
//! is decided by `hub.rego`; both outcomes are audited. Errors are `{"error": "...", "kind":
//! "..."}` with 401 (no/invalid token), 403 (not allowed), 404 (no such study), 400 (invalid
//! query or request), 422 (refused: not an aggregate-only query), 503 (no site answered); a query
//! held for review is answered 202 with the review (`status: "awaiting_review"`). The
//! audit trail can be read, never changed, through the API.

use std::future::Future;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use tokio::net::TcpListener;

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::{ApiDoc, AuditRecords, Catalog, ErrorBody, SiteHealth, SiteList, StudyList};
use crate::auth::Principal;
use crate::review::{ReviewDecisionRequest, ReviewView};
use crate::state::{NewStudy, StateError, Study};
use crate::{Hub, HubError};

/// The API's one error type: a status, a machine-readable kind, and a sentence for humans.
pub struct AppError(StatusCode, &'static str, String, Option<serde_json::Value>);

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.2,
            kind: self.1.into(),
            sites: self.3,
        };
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
            HubError::Query(medfed_analysis::sql::SqlError::SitesChanged(_)) => {
                AppError(StatusCode::SERVICE_UNAVAILABLE, "sites_changed", msg, None)
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
            HubError::HeldForReview(view) => AppError(
                StatusCode::ACCEPTED,
                "awaiting_review",
                msg,
                serde_json::to_value(view).ok(),
            ),
            _ => AppError(StatusCode::INTERNAL_SERVER_ERROR, "internal", msg, None),
        }
    }
}

/// `POST /v1/queries`: SQL over the study's sites, with a DP study's options.
#[derive(Deserialize, utoipa::ToSchema)]
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

#[utoipa::path(post, path = "/queries", tag = "analyses", request_body = QueryRequest, responses((status = 200, description = "the merged aggregate, each site's outcome and the privacy applied", body = medfed_core::result::QueryResult), (status = 401, description = "no or invalid token", body = ErrorBody), (status = 403, description = "not allowed", body = ErrorBody), (status = 400, description = "invalid request", body = ErrorBody), (status = 404, description = "no such study", body = ErrorBody), (status = 422, description = "refused by disclosure control", body = ErrorBody), (status = 503, description = "no site answered", body = ErrorBody)))]
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
        .await;
    match result {
        Ok(result) => Ok(Json(result).into_response()),
        // Not an error: the result waits for the custodians (`GET /v1/reviews/{id}`).
        Err(HubError::HeldForReview(view)) => {
            Ok((StatusCode::ACCEPTED, Json(*view)).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

#[utoipa::path(post, path = "/analyses/glm", tag = "analyses", request_body = crate::GlmRequest, responses((status = 200, description = "the pooled-data fit", body = medfed_core::glm::GlmFit), (status = 401, description = "no or invalid token", body = ErrorBody), (status = 403, description = "not allowed", body = ErrorBody), (status = 400, description = "invalid request", body = ErrorBody), (status = 404, description = "no such study", body = ErrorBody), (status = 422, description = "refused by disclosure control", body = ErrorBody), (status = 503, description = "no site answered", body = ErrorBody)))]
async fn run_glm(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
    req: Body<crate::GlmRequest>,
) -> Result<Response, AppError> {
    let req = body(req)?;
    Ok(Json(hub.glm(&who, &req).await?).into_response())
}

#[utoipa::path(post, path = "/analyses/km", tag = "analyses", request_body = crate::KmRequest, responses((status = 200, description = "Kaplan-Meier curves in bins", body = medfed_core::survival::KmFit), (status = 401, description = "no or invalid token", body = ErrorBody), (status = 403, description = "not allowed", body = ErrorBody), (status = 400, description = "invalid request", body = ErrorBody), (status = 404, description = "no such study", body = ErrorBody), (status = 422, description = "refused by disclosure control", body = ErrorBody), (status = 503, description = "no site answered", body = ErrorBody)))]
async fn run_km(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
    req: Body<crate::KmRequest>,
) -> Result<Response, AppError> {
    let req = body(req)?;
    Ok(Json(hub.km(&who, &req).await?).into_response())
}

#[utoipa::path(post, path = "/analyses/cox", tag = "analyses", request_body = crate::CoxRequest, responses((status = 200, description = "a Cox model stratified by site", body = medfed_core::survival::CoxFit), (status = 401, description = "no or invalid token", body = ErrorBody), (status = 403, description = "not allowed", body = ErrorBody), (status = 400, description = "invalid request", body = ErrorBody), (status = 404, description = "no such study", body = ErrorBody), (status = 422, description = "refused by disclosure control", body = ErrorBody), (status = 503, description = "no site answered", body = ErrorBody)))]
async fn run_cox(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
    req: Body<crate::CoxRequest>,
) -> Result<Response, AppError> {
    let req = body(req)?;
    Ok(Json(hub.cox(&who, &req).await?).into_response())
}

#[utoipa::path(post, path = "/analyses/fedavg", tag = "analyses", request_body = crate::FedAvgRequest, responses((status = 200, description = "the trained model", body = crate::Trained), (status = 401, description = "no or invalid token", body = ErrorBody), (status = 403, description = "not allowed", body = ErrorBody), (status = 400, description = "invalid request", body = ErrorBody), (status = 404, description = "no such study", body = ErrorBody), (status = 422, description = "refused by disclosure control", body = ErrorBody), (status = 503, description = "no site answered", body = ErrorBody)))]
async fn run_fedavg(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
    req: Body<crate::FedAvgRequest>,
) -> Result<Response, AppError> {
    let req = body(req)?;
    Ok(Json(hub.fedavg(&who, &req).await?).into_response())
}

#[utoipa::path(post, path = "/analyses/evaluate", tag = "analyses", request_body = crate::EvaluateRequest, responses((status = 200, description = "the model's metrics at each site", body = medfed_analysis::learn::Evaluation), (status = 401, description = "no or invalid token", body = ErrorBody), (status = 403, description = "not allowed", body = ErrorBody), (status = 400, description = "invalid request", body = ErrorBody), (status = 404, description = "no such study", body = ErrorBody), (status = 422, description = "refused by disclosure control", body = ErrorBody), (status = 503, description = "no site answered", body = ErrorBody)))]
async fn run_evaluate(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
    req: Body<crate::EvaluateRequest>,
) -> Result<Response, AppError> {
    let req = body(req)?;
    Ok(Json(hub.evaluate(&who, &req).await?).into_response())
}

#[utoipa::path(post, path = "/analyses/describe", tag = "analyses", request_body = crate::DescribeRequest, responses((status = 200, description = "descriptive statistics", body = medfed_core::describe::Description), (status = 401, description = "no or invalid token", body = ErrorBody), (status = 403, description = "not allowed", body = ErrorBody), (status = 400, description = "invalid request", body = ErrorBody), (status = 404, description = "no such study", body = ErrorBody), (status = 422, description = "refused by disclosure control", body = ErrorBody), (status = 503, description = "no site answered", body = ErrorBody)))]
async fn run_describe(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
    req: Body<crate::DescribeRequest>,
) -> Result<Response, AppError> {
    let req = body(req)?;
    Ok(Json(hub.describe(&who, &req).await?).into_response())
}

#[utoipa::path(get, path = "/models", tag = "models", responses((status = 200, description = "model versions of studies the caller may read", body = Vec<crate::state::ModelVersion>), (status = 401, description = "no or invalid token", body = ErrorBody), (status = 403, description = "not allowed", body = ErrorBody)))]
async fn list_models(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
) -> Result<Response, AppError> {
    Ok(Json(hub.models_for(&who, None).await?).into_response())
}

#[utoipa::path(get, path = "/models/{name}", tag = "models", params(("name" = String, Path, description = "the model's name")), responses((status = 200, description = "its versions", body = Vec<crate::state::ModelVersion>), (status = 404, description = "no such model", body = ErrorBody), (status = 401, description = "no or invalid token", body = ErrorBody), (status = 403, description = "not allowed", body = ErrorBody)))]
async fn get_model(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Response, AppError> {
    Ok(Json(hub.models_for(&who, Some(&name)).await?).into_response())
}

#[utoipa::path(get, path = "/whoami", tag = "network", responses((status = 200, description = "the caller", body = Principal), (status = 401, description = "no or invalid token", body = ErrorBody), (status = 403, description = "not allowed", body = ErrorBody)))]
async fn whoami(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
) -> Result<Json<Principal>, AppError> {
    hub.allow_read(&who, "whoami").await?;
    Ok(Json(who))
}

#[utoipa::path(get, path = "/studies", tag = "studies", responses((status = 200, description = "studies with each site's decision", body = StudyList), (status = 401, description = "no or invalid token", body = ErrorBody), (status = 403, description = "not allowed", body = ErrorBody)))]
async fn list_studies(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
) -> Result<Json<StudyList>, AppError> {
    Ok(Json(StudyList {
        studies: hub.studies_for(&who).await?,
    }))
}

#[utoipa::path(get, path = "/studies/{id}", tag = "studies", params(("id" = String, Path, description = "study id")), responses((status = 200, description = "the study", body = Study), (status = 404, description = "no such study", body = ErrorBody), (status = 401, description = "no or invalid token", body = ErrorBody), (status = 403, description = "not allowed", body = ErrorBody)))]
async fn get_study(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Study>, AppError> {
    Ok(Json(hub.study_for(&who, &id).await?))
}

#[utoipa::path(post, path = "/studies", tag = "studies", request_body = NewStudy, responses((status = 201, description = "proposed; every asked site pending", body = Study), (status = 400, description = "invalid proposal", body = ErrorBody), (status = 401, description = "no or invalid token", body = ErrorBody), (status = 403, description = "not allowed", body = ErrorBody)))]
async fn propose(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
    req: Body<NewStudy>,
) -> Result<(StatusCode, Json<Study>), AppError> {
    let study = hub.propose(&who, &body(req)?).await?;
    Ok((StatusCode::CREATED, Json(study)))
}

#[utoipa::path(get, path = "/studies/{id}/budget", tag = "studies", params(("id" = String, Path, description = "study id")), responses((status = 200, description = "each approved site's ledger balance", body = crate::StudyBudget), (status = 400, description = "an exact study has no budget", body = ErrorBody), (status = 404, description = "no such study", body = ErrorBody), (status = 401, description = "no or invalid token", body = ErrorBody), (status = 403, description = "not allowed", body = ErrorBody)))]
async fn study_budget(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<crate::StudyBudget>, AppError> {
    Ok(Json(hub.budget(&who, &id).await?))
}

/// A custodian's decision on a study for their site.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct DecisionRequest {
    site: String,
    decision: Verdict,
    #[serde(default)]
    reason: Option<String>,
}

/// What a custodian decides.
#[derive(Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Approve,
    Reject,
}

#[utoipa::path(post, path = "/studies/{id}/decisions", tag = "studies", params(("id" = String, Path, description = "study id")), request_body = DecisionRequest, responses((status = 200, description = "the study with the decision recorded", body = Study), (status = 400, description = "invalid decision", body = ErrorBody), (status = 404, description = "no such study", body = ErrorBody), (status = 401, description = "no or invalid token", body = ErrorBody), (status = 403, description = "not allowed", body = ErrorBody)))]
async fn decide(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    req: Body<DecisionRequest>,
) -> Result<Json<Study>, AppError> {
    let req = body(req)?;
    let approve = req.decision == Verdict::Approve;
    let study = hub
        .decide(&who, &id, &req.site, approve, req.reason.as_deref())
        .await?;
    Ok(Json(study))
}

#[utoipa::path(get, path = "/reviews", tag = "studies", responses((status = 200, description = "releases held for review that the caller may see (custodians: their sites'; researchers: their own)", body = Vec<ReviewView>), (status = 401, description = "no or invalid token", body = ErrorBody)))]
async fn list_reviews(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
) -> Result<Json<Vec<ReviewView>>, AppError> {
    Ok(Json(hub.reviews(&who).await?))
}

#[utoipa::path(get, path = "/reviews/{id}", tag = "studies", params(("id" = String, Path, description = "review id")), responses((status = 200, description = "the review; its result once approved (to reviewers always)", body = ReviewView), (status = 404, description = "no such review for the caller", body = ErrorBody), (status = 401, description = "no or invalid token", body = ErrorBody)))]
async fn get_review(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<ReviewView>, AppError> {
    Ok(Json(hub.review(&who, &id).await?))
}

#[utoipa::path(post, path = "/reviews/{id}", tag = "studies", params(("id" = String, Path, description = "review id")), request_body = ReviewDecisionRequest, responses((status = 200, description = "the review with the decision recorded (released once every contributing site approved)", body = ReviewView), (status = 400, description = "invalid decision", body = ErrorBody), (status = 403, description = "not a custodian of a contributing site, or already decided", body = ErrorBody), (status = 404, description = "no such review for the caller", body = ErrorBody), (status = 401, description = "no or invalid token", body = ErrorBody)))]
async fn decide_review(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    req: Body<ReviewDecisionRequest>,
) -> Result<Json<ReviewView>, AppError> {
    let req = body(req)?;
    Ok(Json(hub.decide_review(&who, &id, &req).await?))
}

/// Which records of the trail.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    #[serde(default)]
    after: i64,
    #[serde(default = "default_limit")]
    limit: i64,
}

fn default_limit() -> i64 {
    1000
}

#[utoipa::path(get, path = "/audit", tag = "audit", params(AuditQuery), responses((status = 200, description = "the hub's audit records, oldest first", body = AuditRecords), (status = 400, description = "invalid parameters", body = ErrorBody), (status = 401, description = "no or invalid token", body = ErrorBody), (status = 403, description = "not allowed", body = ErrorBody)))]
async fn audit_records(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditRecords>, AppError> {
    // A malformed query string is an error like any other: JSON, with the reason.
    let Query(q) = q.map_err(|e| {
        AppError(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("query string: {}", e.body_text()),
            None,
        )
    })?;
    let records = hub.audit_records(&who, q.after, q.limit).await?;
    Ok(Json(AuditRecords { records }))
}

/// A re-walk of the trail with its verdict spelled out for clients.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Verified {
    intact: bool,
    #[serde(flatten)]
    report: medfed_audit::VerifyReport,
}

#[utoipa::path(get, path = "/audit/verify", tag = "audit", responses((status = 200, description = "the chain re-walked", body = Verified), (status = 401, description = "no or invalid token", body = ErrorBody), (status = 403, description = "not allowed", body = ErrorBody)))]
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

#[utoipa::path(get, path = "/sites", tag = "network", responses((status = 200, description = "the sites and whether they answer now", body = SiteList), (status = 401, description = "no or invalid token", body = ErrorBody), (status = 403, description = "not allowed", body = ErrorBody)))]
async fn list_sites(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
) -> Result<Json<SiteList>, AppError> {
    hub.allow_read(&who, "sites.read").await?;
    let sites = hub
        .site_health()
        .await
        .into_iter()
        .map(|(name, r)| SiteHealth {
            name,
            status: if r.is_ok() { "up" } else { "down" }.into(),
            message: r.err(),
        })
        .collect();
    Ok(Json(SiteList { sites }))
}

#[utoipa::path(get, path = "/catalog", tag = "network", responses((status = 200, description = "tables and columns the sites offer (metadata only)", body = Catalog), (status = 401, description = "no or invalid token", body = ErrorBody), (status = 403, description = "not allowed", body = ErrorBody)))]
async fn catalog(
    State(hub): State<Arc<Hub>>,
    Extension(who): Extension<Principal>,
) -> Result<Json<Catalog>, AppError> {
    hub.allow_read(&who, "catalog.read").await?;
    Ok(Json(hub.catalog_view().await))
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

/// The API as a router (tests drive it with `tower::ServiceExt::oneshot`), with its OpenAPI
/// description at `/openapi.json` built from the same registrations.
pub fn app(hub: Arc<Hub>) -> Router {
    let (router, api) = api_router(hub.clone()).split_for_parts();
    let description = Arc::new(crate::api::finish(api));
    router
        .merge(crate::portal::routes(hub.sign_in()))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/openapi.json",
            get(move || {
                let description = description.clone();
                async move { Json(description.as_ref().clone()) }
            }),
        )
        .with_state(hub)
}

/// The OpenAPI description of [`app`].
pub fn openapi() -> utoipa::openapi::OpenApi {
    // The routes' state is only needed to serve them, not to describe them.
    crate::api::finish(api_router_paths().split_for_parts().1)
}

fn api_router(hub: Arc<Hub>) -> OpenApiRouter<Arc<Hub>> {
    let v1 = v1_routes().route_layer(middleware::from_fn_with_state(hub, require_token));
    OpenApiRouter::with_openapi(ApiDoc::openapi()).nest("/v1", v1)
}

fn api_router_paths() -> OpenApiRouter<Arc<Hub>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi()).nest("/v1", v1_routes())
}

fn v1_routes() -> OpenApiRouter<Arc<Hub>> {
    OpenApiRouter::new()
        .routes(routes!(whoami))
        .routes(routes!(run_query))
        .routes(routes!(run_glm))
        .routes(routes!(run_km))
        .routes(routes!(run_cox))
        .routes(routes!(run_fedavg))
        .routes(routes!(run_evaluate))
        .routes(routes!(run_describe))
        .routes(routes!(list_models))
        .routes(routes!(get_model))
        .routes(routes!(list_sites))
        .routes(routes!(catalog))
        .routes(routes!(list_studies, propose))
        .routes(routes!(get_study))
        .routes(routes!(decide))
        .routes(routes!(study_budget))
        .routes(routes!(list_reviews))
        .routes(routes!(get_review, decide_review))
        .routes(routes!(audit_records))
        .routes(routes!(audit_verify))
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

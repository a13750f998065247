//! The researchers' HTTP JSON API.
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | liveness, no token |
//! | `POST /v1/queries` `{"sql": "...", "sites": ["north"]?}` | run a federated query |
//! | `GET /v1/sites` | the sites and whether they answer now |
//! | `GET /v1/catalog` | tables, columns and types the sites offer (metadata only) |
//!
//! Every `/v1` route needs `Authorization: Bearer <token>`. Errors are `{"error": "...", "kind":
//! "..."}` with 401 (no/unknown token), 400 (invalid query or request), 422 (refused: not an
//! aggregate-only query), 503 (no site answered).

use std::future::Future;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;

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
            HubError::UnknownSite(..) => AppError(StatusCode::BAD_REQUEST, "invalid", msg, None),
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
    #[serde(default)]
    sites: Option<Vec<String>>,
}

async fn run_query(
    State(hub): State<Arc<Hub>>,
    body: Result<Json<QueryRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, AppError> {
    let Json(req) = body.map_err(|e| {
        AppError(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("request body: {}", e.body_text()),
            None,
        )
    })?;
    let result = hub.query(&req.sql, req.sites.as_deref()).await?;
    Ok(Json(result).into_response())
}

async fn list_sites(State(hub): State<Arc<Hub>>) -> Json<serde_json::Value> {
    let health = hub.site_health().await;
    let sites: Vec<_> = health
        .into_iter()
        .map(|(name, r)| match r {
            Ok(()) => json!({"name": name, "status": "up"}),
            Err(e) => json!({"name": name, "status": "down", "message": e}),
        })
        .collect();
    Json(json!({ "sites": sites }))
}

async fn catalog(State(hub): State<Arc<Hub>>) -> Json<serde_json::Value> {
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
    Json(json!({ "tables": tables }))
}

async fn require_token(
    State(hub): State<Arc<Hub>>,
    req: Request,
    next: Next,
) -> Result<Response, AppError> {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token.and_then(|t| hub.token_holder(t)) {
        Some(holder) => {
            tracing::debug!(holder, path = %req.uri().path(), "authenticated");
            Ok(next.run(req).await)
        }
        None => {
            tracing::warn!(path = %req.uri().path(), presented = token.is_some(), "unauthenticated request");
            Err(AppError(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "missing or unknown bearer token: send `Authorization: Bearer <token>` (see demo.json or ask your network admin)".into(),
                None,
            ))
        }
    }
}

/// The API as a router (tests drive it with `tower::ServiceExt::oneshot`).
pub fn app(hub: Arc<Hub>) -> Router {
    let v1 = Router::new()
        .route("/queries", post(run_query))
        .route("/sites", get(list_sites))
        .route("/catalog", get(catalog))
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

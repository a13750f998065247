//! A thin client of the hub's HTTP API, shared by `query`, `study`, `demo` and `bench`.

use medfed_core::result::QueryResult;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The hub, as a researcher, custodian or auditor reaches it.
pub struct HubClient {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
}

impl HubClient {
    pub fn new(url: &str, token: Option<String>) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.trim_end_matches('/').to_string(),
            token,
        }
    }

    /// Runs a query under `study`; a refusal or failure becomes an error carrying the hub's own
    /// sentence.
    pub async fn query(
        &self,
        sql: &str,
        study: &str,
        sites: &[String],
    ) -> anyhow::Result<QueryResult> {
        self.query_with(sql, study, sites, serde_json::json!({}))
            .await
    }

    /// `POST /v1/queries` with DP options (`epsilon`, `bounds`, `max_rows_per_person`).
    pub async fn query_with(
        &self,
        sql: &str,
        study: &str,
        sites: &[String],
        options: serde_json::Value,
    ) -> anyhow::Result<QueryResult> {
        let mut body = serde_json::json!({ "sql": sql, "study": study });
        if !sites.is_empty() {
            body["sites"] = serde_json::json!(sites);
        }
        if let (Some(b), Some(o)) = (body.as_object_mut(), options.as_object()) {
            b.extend(o.clone());
        }
        self.post("/v1/queries", &body).await
    }

    /// `GET path`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.http.get(format!("{}{path}", self.url)))
            .await
    }

    /// `POST path` with a JSON body.
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        self.send(self.http.post(format!("{}{path}", self.url)).json(body))
            .await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        mut req: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the hub at {}: {e}", self.url))?;
        let status = resp.status();
        let text = resp.text().await?;
        if status == reqwest::StatusCode::ACCEPTED {
            // A query held for review: not a result, and not a failure of the hub.
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let id = v["id"].as_str().unwrap_or("?");
            let checks: Vec<&String> = v["checks"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k)
                .collect();
            anyhow::bail!(
                "awaiting review {id}: {} fired, so a custodian of every contributing site must \
                 approve the result first (`medfed review show {id}`)",
                checks
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if status.is_success() {
            return Ok(serde_json::from_str(&text)?);
        }
        let msg = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(text);
        anyhow::bail!("hub answered {status}: {msg}")
    }
}

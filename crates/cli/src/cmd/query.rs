//! `medfed query`: a researcher's command-line client of the hub's HTTP API.

use medfed_core::result::QueryResult;

use crate::output::{Format, print_result};

#[derive(clap::Args)]
pub struct Args {
    /// The hub's URL, e.g. http://127.0.0.1:8080 (see demo.json).
    #[arg(long, env = "MEDFED_HUB")]
    hub: String,
    /// Bearer token (or set MEDFED_TOKEN).
    #[arg(long, env = "MEDFED_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Ask only these sites (repeatable); default: all.
    #[arg(long = "site")]
    sites: Vec<String>,
    /// The aggregate SQL query over OMOP tables.
    sql: String,
}

/// A thin client of the hub's API.
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

    /// Runs a query; a refusal or failure becomes an error carrying the hub's own sentence.
    pub async fn query(&self, sql: &str, sites: &[String]) -> anyhow::Result<QueryResult> {
        let mut body = serde_json::json!({ "sql": sql });
        if !sites.is_empty() {
            body["sites"] = serde_json::json!(sites);
        }
        let mut req = self
            .http
            .post(format!("{}/v1/queries", self.url))
            .json(&body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the hub at {}: {e}", self.url))?;
        let status = resp.status();
        let text = resp.text().await?;
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

pub async fn run(a: Args) -> anyhow::Result<()> {
    let client = HubClient::new(&a.hub, a.token);
    let result = client.query(&a.sql, &a.sites).await?;
    print_result(&result, a.format);
    Ok(())
}

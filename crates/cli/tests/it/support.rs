//! A small network per test (nextest runs each test in its own process).

use medfed_devnet::{Devnet, DevnetConfig};
use serde_json::Value;

pub struct Net {
    pub net: Devnet,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

pub async fn network(sites: usize, deadline_ms: u64) -> Net {
    network_with(sites, deadline_ms, Default::default()).await
}

/// [`network`] with the hub's `[privacy]` set to `hub_privacy`.
pub async fn network_with(
    sites: usize,
    deadline_ms: u64,
    hub_privacy: medfed_hub::config::NetworkPrivacy,
) -> Net {
    let dir = tempfile::tempdir().unwrap();
    let cfg = DevnetConfig {
        sites,
        patients_per_site: 2_000,
        site_deadline_ms: deadline_ms,
        hub_privacy,
        ..DevnetConfig::new(dir.path())
    };
    let net = Devnet::start(&cfg, |_, _| {}).await.unwrap();
    Net {
        net,
        dir,
        http: reqwest::Client::new(),
    }
}

impl Net {
    /// POSTs a query under the demo's approved study `exact`.
    pub async fn post_query(&self, sql: &str, token: Option<&str>) -> (u16, Value) {
        let study = self.net.studies["exact"].clone();
        self.post_query_in(sql, &study, token).await
    }

    /// POSTs a query under `study`.
    pub async fn post_query_in(&self, sql: &str, study: &str, token: Option<&str>) -> (u16, Value) {
        let body = serde_json::json!({ "sql": sql, "study": study });
        self.call("POST", "/v1/queries", Some(body), token).await
    }

    /// POSTs `sql` under the demo study named `study` as the researcher, with query `options`
    /// (`epsilon`, `bounds`, `secure_aggregation`, …) merged into the body.
    pub async fn research(&self, study: &str, sql: &str, options: Value) -> (u16, Value) {
        let mut body = serde_json::json!({ "sql": sql, "study": self.net.studies[study] });
        if let (Some(b), Some(o)) = (body.as_object_mut(), options.as_object()) {
            b.extend(o.clone());
        }
        let token = self.token("researcher");
        self.call("POST", "/v1/queries", Some(body), Some(&token))
            .await
    }

    /// The demo token of `role` (`researcher`, `auditor`, `admin`, `custodian:<site>`).
    pub fn token(&self, role: &str) -> String {
        self.net.tokens[role].clone()
    }

    /// The entries of `site`'s own audit trail (read only: the key is not the site's).
    pub async fn site_audit(&self, site: &str) -> Vec<medfed_audit::Entry> {
        let db = self.dir.path().join(format!("sites/{site}/audit.db"));
        let log = medfed_audit::AuditLog::open(
            db.to_str().unwrap(),
            ed25519_dalek::SigningKey::from_bytes(&[1; 32]),
            Default::default(),
        )
        .await
        .unwrap();
        let records = log.records(0, 100_000).await.unwrap();
        records.into_iter().map(|r| r.entry).collect()
    }

    /// Any API call; returns (status, JSON body or Null).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.net.hub_url);
        let mut req = self.http.request(method.parse().unwrap(), url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn query_ok(&self, sql: &str) -> Value {
        let (status, body) = self.post_query(sql, Some(&self.net.token)).await;
        assert_eq!(status, 200, "{sql}: {body}");
        body
    }

    /// The same SQL on every site's Parquet pooled into one context, as JSON-like rows.
    pub async fn pooled(&self, sql: &str) -> Vec<Vec<Value>> {
        let ctx = medfed_devnet::pooled_context(&self.net.omop_dirs, &medfed_synth::TABLES)
            .await
            .unwrap();
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let mut rows = Vec::new();
        for b in &batches {
            let json = arrow_rows(b);
            rows.extend(json);
        }
        rows
    }
}

fn arrow_rows(b: &arrow::array::RecordBatch) -> Vec<Vec<Value>> {
    use arrow::array::Array;
    use arrow::datatypes::DataType;
    let cols: Vec<Vec<Value>> = b
        .columns()
        .iter()
        .map(|c| {
            let c64 = arrow::compute::cast(c, &DataType::Float64).ok();
            let cs = arrow::compute::cast(c, &DataType::Utf8).unwrap();
            let cs = cs
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap()
                .clone();
            (0..c.len())
                .map(|i| {
                    if c.is_null(i) {
                        Value::Null
                    } else if let Some(f) = c64.as_ref().filter(|_| c.data_type().is_numeric()) {
                        let v = f
                            .as_any()
                            .downcast_ref::<arrow::array::Float64Array>()
                            .unwrap()
                            .value(i);
                        serde_json::json!(v)
                    } else {
                        Value::String(cs.value(i).to_string())
                    }
                })
                .collect()
        })
        .collect();
    (0..b.num_rows())
        .map(|r| cols.iter().map(|c| c[r].clone()).collect())
        .collect()
}

/// Compares rows as numbers with a relative tolerance, and as text otherwise.
pub fn assert_rows_eq(fed: &[Value], pooled: &[Vec<Value>], sql: &str) {
    let norm = |v: &Value| -> String {
        match v.as_f64() {
            Some(f) => format!("{f:.9e}"),
            None => v.to_string().trim_matches('"').to_string(),
        }
    };
    let mut f: Vec<Vec<String>> = fed
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(norm).collect())
        .collect();
    let mut p: Vec<Vec<String>> = pooled
        .iter()
        .map(|r| r.iter().map(norm).collect())
        .collect();
    f.sort();
    p.sort();
    assert!(!p.is_empty(), "pooled answer is empty: {sql}");
    assert_eq!(f, p, "federated != pooled: {sql}");
}

/// Like [`assert_rows_eq`] for a hub result under disclosure control: rows the result marks as
/// suppressed must have null statistics where the pooled row has values, and every other row
/// must equal the pooled answer.
pub fn assert_released_eq(body: &Value, pooled: &[Vec<Value>], sql: &str) {
    let rows = body["rows"].as_array().unwrap();
    let suppressed: std::collections::BTreeSet<usize> = body["privacy"]["suppressed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["row"].as_u64().unwrap() as usize)
        .collect();
    let mut masked: Vec<Vec<Value>> = pooled.to_vec();
    for &i in &suppressed {
        let row = rows[i].as_array().unwrap();
        let same_keys = |p: &Vec<Value>| {
            row.iter().zip(p).all(|(f, q)| {
                f.is_null() || f.as_f64().zip(q.as_f64()).map_or(f == q, |(a, b)| a == b)
            })
        };
        let target = masked
            .iter_mut()
            .find(|p| same_keys(p) && p.iter().zip(row).any(|(q, f)| f.is_null() && !q.is_null()))
            .unwrap_or_else(|| panic!("suppressed row {i} has no pooled counterpart: {sql}"));
        for (q, f) in target.iter_mut().zip(row) {
            if f.is_null() {
                *q = Value::Null;
            }
        }
    }
    assert_rows_eq(rows, &masked, sql);
}

/// POSTs `body` to `url` as `token`; returns the status and the body's text (kept as text so
/// callers can read objects in their order).
pub async fn post(http: &reqwest::Client, url: &str, token: &str, body: &Value) -> (u16, String) {
    let r = http
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// GETs `path` from a hub's API in process (no listener: for a second hub a test builds) as
/// `token`; returns the status and the JSON body (Null if none).
pub async fn get_in_process(
    hub: &std::sync::Arc<medfed_hub::Hub>,
    path: &str,
    token: &str,
) -> (u16, Value) {
    use tower::ServiceExt;
    let req = axum::http::Request::get(path)
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = medfed_hub::app(hub.clone()).oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

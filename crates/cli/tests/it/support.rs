//! A small network per test (nextest runs each test in its own process).

use medfed_devnet::{Devnet, DevnetConfig};
use serde_json::Value;

pub struct Net {
    pub net: Devnet,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

pub async fn network(sites: usize, deadline_ms: u64) -> Net {
    let dir = tempfile::tempdir().unwrap();
    let cfg = DevnetConfig {
        sites,
        patients_per_site: 2_000,
        site_deadline_ms: deadline_ms,
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
    pub async fn post_query(&self, sql: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}/v1/queries", self.net.hub_url))
            .json(&serde_json::json!({ "sql": sql }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
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

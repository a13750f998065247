//! Federated training over a real network: FedAvg reaches the pooled optimum; a site lost
//! mid-training is tolerated; the registry keeps the model; refusals.

use std::path::PathBuf;

use medfed_analysis::learn::{Architecture, FedAvgSpec, pooled};
use serde_json::json;

use crate::glm::{simulated_sites, start};
use crate::support::post;

/// Outcome `yb` and the raw features x, sex, grp=b, grp=c of every site's rows.
fn pooled_rows(files: &[PathBuf]) -> (Vec<f64>, [Vec<f64>; 4]) {
    let (mut y, mut x) = (vec![], [vec![], vec![], vec![], vec![]]);
    for f in files {
        let mut r = csv::Reader::from_path(f).unwrap();
        let h = r.headers().unwrap().clone();
        let at = |name: &str| h.iter().position(|c| c == name).unwrap();
        for rec in r.records() {
            let rec = rec.unwrap();
            let num = |name: &str| rec[at(name)].parse::<f64>().unwrap();
            y.push(num("yb"));
            x[0].push(num("x"));
            x[1].push(num("sex"));
            x[2].push(f64::from(u8::from(&rec[at("grp")] == "b")));
            x[3].push(f64::from(u8::from(&rec[at("grp")] == "c")));
        }
    }
    (y, x)
}

fn spec() -> FedAvgSpec {
    FedAvgSpec {
        table: "sim".into(),
        formula: "yb ~ x + sex + factor(grp)".into(),
        model: Architecture::Logistic,
        rounds: 400,
        local_epochs: 1,
        batch_size: 100_000,
        learning_rate: 2.0,
        l2: 0.01,
        proximal_mu: 0.0,
        fraction: 1.0,
        min_sites: 2,
        tolerance: 1e-7,
        seed: 3,
        clip: None,
        filter: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fedavg_reaches_the_pooled_optimum_and_survives_a_lost_site() {
    let dir = tempfile::tempdir().unwrap();
    let files = simulated_sites(dir.path());
    let mut net = start(&dir.path().join("net"), "sim", files.clone()).await;
    let who = net
        .hub
        .authenticate(Some(&format!("Bearer {}", net.token)), "test")
        .await
        .unwrap();
    let study = net.studies["exact"].clone();
    let req = medfed_hub::FedAvgRequest {
        study: study.clone(),
        spec: spec(),
        sites: None,
        register: Some("readmission-lr".into()),
    };
    let trained = net.hub.fedavg(&who, &req).await.unwrap();
    let m = &trained.model;
    assert!(m.converged, "{:?}", m.history.last());
    assert_eq!(m.features, ["x", "sex", "factor(grp)b", "factor(grp)c"]);
    let (y, raw) = pooled_rows(&files);
    let x: Vec<Vec<f64>> = raw
        .iter()
        .zip(&m.scaling)
        .map(|(c, [mean, sd])| c.iter().map(|v| (v - mean) / sd).collect())
        .collect();
    let best = pooled::logistic_optimum(&y, &x, 0.01).unwrap();
    for (w, b) in m.weights.iter().zip(&best) {
        assert!((w - b).abs() < 1e-5, "{:?} vs {best:?}", m.weights);
    }
    assert_eq!(m.n, 2100);
    let registered = trained.registered.as_ref().unwrap();
    let versions = net
        .hub
        .models_for(&who, Some("readmission-lr"))
        .await
        .unwrap();
    assert_eq!(versions[0].version, registered.version);
    assert_eq!(versions[0].kind, "fedavg/logistic");

    // Every round is a governed kernel step, audited at the hub as fedavg.
    let trail = net.hub.audit().records(0, 100_000).await.unwrap();
    let steps = trail
        .iter()
        .filter(|e| e.entry.action == "fedavg" && e.entry.reason.starts_with("kernel step"))
        .count();
    assert_eq!(steps, m.rounds as usize);

    // A site lost mid-training: later rounds average the others' updates, training finishes.
    let hub = net.hub.clone();
    let long = medfed_hub::FedAvgRequest {
        spec: FedAvgSpec {
            rounds: 40,
            tolerance: 0.0,
            ..spec()
        },
        register: None,
        ..req.clone()
    };
    let who2 = who.clone();
    let training = tokio::spawn(async move { hub.fedavg(&who2, &long).await });
    let before = steps;
    loop {
        let trail = net.hub.audit().records(0, 100_000).await.unwrap();
        let now = trail
            .iter()
            .filter(|e| e.entry.action == "fedavg" && e.entry.reason.starts_with("kernel step"))
            .count();
        if now >= before + 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let south = net.site_names[1].clone();
    assert!(net.stop_site(&south).await);
    let trained = training.await.unwrap().unwrap();
    let h = &trained.model.history;
    assert_eq!(h.len(), 40);
    assert!(h[0].answered.contains(&south.to_string()));
    assert!(!h.last().unwrap().answered.contains(&south.to_string()));
    assert_eq!(h.last().unwrap().answered.len(), 2);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fedavg_over_http_refuses_what_it_must() {
    let dir = tempfile::tempdir().unwrap();
    let files = simulated_sites(dir.path());
    let net = start(&dir.path().join("net"), "sim", files).await;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/analyses/fedavg", net.hub_url);
    let call = async |body: serde_json::Value, token: &str| post(&http, &url, token, &body).await;
    let rita = net.tokens["researcher"].clone();
    let base = json!({"study": net.studies["exact"], "table": "sim",
                      "formula": "yb ~ x + sex", "model": {"mlp": {"hidden": 4}}, "rounds": 3});
    let (status, text) = call(base.clone(), &rita).await;
    assert_eq!(status, 200, "{text}");
    let trained: medfed_hub::Trained = serde_json::from_str(&text).unwrap();
    assert_eq!(trained.model.weights.len(), 2 * 4 + 4 + 4 + 1);
    let with = |patch: serde_json::Value| {
        let mut b = base.clone();
        b.as_object_mut()
            .unwrap()
            .extend(patch.as_object().unwrap().clone());
        b
    };
    for (body, token, want) in [
        (with(json!({"formula": "yg ~ x"})), &rita, 400),
        (
            with(json!({"formula": "race_concept_id ~ person_id", "table": "person"})),
            &rita,
            422,
        ),
        // A handful of people: 403 (every group small) or 422 (a class withheld).
        (with(json!({"where": "x > 2.58"})), &rita, 0),
        (with(json!({"rounds": 0})), &rita, 400),
        (with(json!({"study": net.studies["dp"]})), &rita, 403),
        (base.clone(), &net.tokens["auditor"], 403),
    ] {
        let (status, text) = call(body.clone(), token).await;
        if want == 0 {
            assert!(status == 403 || status == 422, "{body}: {text}");
        } else {
            assert_eq!(status, want, "{body}: {text}");
        }
        assert!(!text.contains("\"weights\""), "{text}");
    }
    net.shutdown().await;
}

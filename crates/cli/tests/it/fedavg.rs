//! Federated training over a real network: FedAvg reaches the pooled optimum; a site lost
//! mid-training is tolerated; the registry keeps the model; secure aggregation of the updates
//! changes nothing but what the hub sees; DP-FedAvg charges each site once per run; refusals.

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
        bounds: Default::default(),
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
        epsilon: None,
        secure_aggregation: None,
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
    // The registered model scored by each site from the command line.
    let args: Vec<String> = [
        "train",
        "evaluate",
        "--hub",
        &net.hub_url,
        "--token",
        &net.token,
        "--study",
        &study,
        "--model",
        "readmission-lr",
        "--where",
        "x > -100",
        "--format",
        "json",
    ]
    .map(String::from)
    .to_vec();
    let out = tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::cli::medfed(&a)
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scored: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let metrics = scored["metrics"].as_object().unwrap();
    assert_eq!(metrics.len(), 3, "{scored}");
    assert!(
        metrics.values().all(|m| m["auroc"].as_f64().unwrap() > 0.6),
        "{scored}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("weights"));

    // A site lost mid-training: later rounds average the others' updates, training finishes.
    let hub = net.hub.clone();
    let long = medfed_hub::FedAvgRequest {
        spec: FedAvgSpec {
            rounds: 40,
            tolerance: 0.0,
            ..spec()
        },
        register: None,
        epsilon: None,
        secure_aggregation: None,
        ..req.clone()
    };
    let who2 = who.clone();
    let training = tokio::spawn(async move { hub.fedavg(&who2, &long).await });
    let before = steps + 1; // and the evaluation
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
        // A DP run needs a clip bound and every input's declared bounds.
        (with(json!({"study": net.studies["dp"]})), &rita, 400),
        (
            with(json!({"study": net.studies["dp"], "clip": 1.0, "model": "logistic"})),
            &rita,
            400,
        ),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_and_dp_fedavg_runs_are_charged_once_per_site() {
    let dir = tempfile::tempdir().unwrap();
    let files = simulated_sites(dir.path());
    let net = start(&dir.path().join("net"), "sim", files).await;
    let who = net
        .hub
        .authenticate(Some(&format!("Bearer {}", net.token)), "test")
        .await
        .unwrap();
    let plain = medfed_hub::FedAvgRequest {
        study: net.studies["exact"].clone(),
        spec: FedAvgSpec {
            rounds: 30,
            tolerance: 0.0,
            ..spec()
        },
        sites: None,
        register: None,
        epsilon: None,
        secure_aggregation: Some(false),
    };
    let secure = medfed_hub::FedAvgRequest {
        secure_aggregation: Some(true),
        ..plain.clone()
    };
    let open = net.hub.fedavg(&who, &plain).await.unwrap().model;
    let masked = net.hub.fedavg(&who, &secure).await.unwrap().model;
    // The same weights, to the fixed-point resolution of the masked sums.
    assert!(masked.privacy.secure_aggregation && !open.privacy.secure_aggregation);
    for (a, b) in open.weights.iter().zip(&masked.weights) {
        assert!(
            (a - b).abs() < 1e-6,
            "{:?} vs {:?}",
            open.weights,
            masked.weights
        );
    }
    assert_eq!(masked.n, open.n);
    assert_eq!(masked.history.last().unwrap().answered.len(), 3);
    let trail = net.hub.audit().records(0, 100_000).await.unwrap();
    assert!(trail.iter().any(|e| {
        e.entry.action == "fedavg"
            && e.entry
                .reason
                .contains("secure aggregation: the hub saw only their sum")
    }));

    // DP-FedAvg in the DP study (ε = 0.5 per site): a 10-round run at ε = 0.2 under secure
    // aggregation, then one at ε = 0.3 in the clear, spend it all — each run once, not per round.
    let dp = |epsilon: f64, secure: bool| medfed_hub::FedAvgRequest {
        study: net.studies["dp"].clone(),
        spec: FedAvgSpec {
            formula: "yb ~ x + sex".into(),
            rounds: 10,
            batch_size: 64,
            learning_rate: 0.5,
            clip: Some(0.5),
            bounds: [
                ("x".to_string(), [-4.0, 4.0]),
                ("sex".to_string(), [0.0, 1.0]),
            ]
            .into(),
            ..spec()
        },
        epsilon: Some(epsilon),
        secure_aggregation: Some(secure),
        ..plain.clone()
    };
    for (epsilon, secure) in [(0.2, true), (0.3, false)] {
        let m = net
            .hub
            .fedavg(&who, &dp(epsilon, secure))
            .await
            .unwrap()
            .model;
        assert_eq!(m.privacy.mode, "dp");
        assert_eq!((m.epsilon, m.privacy.epsilon), (Some(epsilon), epsilon));
        assert_eq!(m.privacy.secure_aggregation, secure);
        assert_eq!(
            (m.rounds, m.n),
            (10, 0),
            "all rounds ran; no count released"
        );
        assert!(
            m.history
                .iter()
                .all(|r| r.loss.is_none() && r.answered.len() == 3)
        );
        assert!(m.weights.iter().all(|w| w.is_finite()));
    }
    // Nothing is left: every site refuses the next run, and says why.
    let err = net.hub.fedavg(&who, &dp(0.01, false)).await.unwrap_err();
    assert!(err.to_string().contains("exhausted"), "{err}");
    // Each site's audit trail shows the run's rounds, charged at the first only.
    let north = dir
        .path()
        .join("net/sites")
        .join(net.site_names[0].as_str());
    let db = medfed_audit::Database::connect(north.join("audit.db").to_str().unwrap(), 1)
        .await
        .unwrap();
    let site_trail = medfed_audit::records(&db, 0, 100_000).await.unwrap();
    let rounds: Vec<_> = site_trail
        .iter()
        .filter(|e| e.entry.reason.contains("of training run"))
        .collect();
    assert_eq!(rounds.len(), 20, "two runs of 10 rounds");
    let charged: f64 = rounds.iter().filter_map(|e| e.entry.epsilon).sum();
    assert!((charged - 0.5).abs() < 1e-9, "{charged}");
    net.shutdown().await;
}

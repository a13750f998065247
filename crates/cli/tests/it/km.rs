//! Federated Kaplan–Meier curves equal the pooled estimate; small groups and tails are withheld.

use medfed_analysis::survival::{KmSpec, pooled_curve};
use serde_json::json;

use crate::glm::{simulated_sites, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kaplan_meier_per_group_equals_the_pooled_curves() {
    let dir = tempfile::tempdir().unwrap();
    let files = simulated_sites(dir.path());
    let net = start(&dir.path().join("net"), "sim", files.clone()).await;
    // The pooled rows, read straight from the sites' files.
    let mut by_sex: [Vec<(f64, bool)>; 2] = [vec![], vec![]];
    for f in &files {
        let mut r = csv::Reader::from_path(f).unwrap();
        let h = r.headers().unwrap().clone();
        let at = |name: &str| h.iter().position(|c| c == name).unwrap();
        for rec in r.records() {
            let rec = rec.unwrap();
            let sex: usize = rec[at("sex")].parse().unwrap();
            let fu: f64 = rec[at("fu")].parse().unwrap();
            by_sex[sex].push((fu, &rec[at("died")] == "1"));
        }
    }
    let spec = KmSpec {
        table: "sim".into(),
        time: "fu".into(),
        event: "died".into(),
        group: Some("sex".into()),
        bin_width: 30.0,
        max_time: 360.0,
        filter: None,
    };
    let body = |extra: serde_json::Value| {
        let mut b = serde_json::to_value(&spec).unwrap();
        b["study"] = net.studies["exact"].clone().into();
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    let http = reqwest::Client::new();
    let call = async |b: serde_json::Value, token: &str| {
        let r = http
            .post(format!("{}/v1/analyses/km", net.hub_url))
            .bearer_auth(token)
            .json(&b)
            .send()
            .await
            .unwrap();
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().await.unwrap(),
        )
    };
    let rita = net.tokens["researcher"].clone();
    let (status, fit) = call(body(json!({})), &rita).await;
    assert_eq!(status, 200, "{fit}");
    let fit: medfed_core::survival::KmFit = serde_json::from_value(fit).unwrap();
    assert_eq!(fit.curves.len(), 2);
    let breaks = spec.breaks().unwrap();
    for (curve, rows) in fit.curves.iter().zip(&by_sex) {
        let pooled = pooled_curve(rows, &breaks, 10);
        assert_eq!(curve.n as usize, rows.len());
        assert_eq!(curve.bins.len(), pooled.bins.len(), "group {}", curve.group);
        for (f, p) in curve.bins.iter().zip(&pooled.bins) {
            assert_eq!((f.at_risk, f.events), (p.at_risk, p.events));
            assert!((f.survival - p.survival).abs() < 1e-12);
            assert!((f.lower - p.lower).abs() < 1e-12 && (f.upper - p.upper).abs() < 1e-12);
        }
    }
    // Hazard doubles for sex = 1: its curve lies below.
    let last = |g: usize| fit.curves[g].bins.last().unwrap().survival;
    assert!(last(1) < last(0), "{} vs {}", last(1), last(0));

    // A cohort of a handful of people is withheld at the sites and refused here.
    // (403 when sites suppressed small groups — minimum subset size — 422 when none had rows.)
    let (status, tiny) = call(body(json!({"where": "x > 2.58"})), &rita).await;
    assert!(status == 403 || status == 422, "{tiny}");
    assert!(
        tiny["error"].as_str().unwrap().contains("fewer than k"),
        "{tiny}"
    );
    let (status, fine) = call(body(json!({"bin_width": 0.5})), &rita).await;
    assert_eq!(status, 400, "{fine}");
    assert!(fine["error"].as_str().unwrap().contains("at most"));
    let (status, _) = call(body(json!({"time": "person_id"})), &rita).await;
    assert_eq!(status, 400);
    let (status, _) = call(body(json!({})), &net.tokens["auditor"]).await;
    assert_eq!(status, 403);
    net.shutdown().await;
}

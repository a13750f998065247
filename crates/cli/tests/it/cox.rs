//! Federated Cox models stratified by site equal the pooled stratified fit; refusals.

use std::path::PathBuf;

use medfed_analysis::survival::cox::{self, CoxRows};
use medfed_core::kernel::Ties;
use medfed_core::survival::CoxFit;
use serde_json::json;

use crate::glm::{simulated_sites, start};
use crate::support::post;

/// Each site's rows as a stratum: fu, died, then x, sex, and dummies for grp b and c.
fn strata(files: &[PathBuf]) -> Vec<CoxRows> {
    files
        .iter()
        .map(|f| {
            let mut r = csv::Reader::from_path(f).unwrap();
            let h = r.headers().unwrap().clone();
            let at = |name: &str| h.iter().position(|c| c == name).unwrap();
            let (mut t, mut e, mut x) = (vec![], vec![], vec![vec![]; 4]);
            for rec in r.records() {
                let rec = rec.unwrap();
                let num = |name: &str| rec[at(name)].parse::<f64>().unwrap();
                t.push(num("fu"));
                e.push(num("died"));
                x[0].push(num("x"));
                x[1].push(num("sex"));
                x[2].push(f64::from(u8::from(&rec[at("grp")] == "b")));
                x[3].push(f64::from(u8::from(&rec[at("grp")] == "c")));
            }
            CoxRows::new(&t, &e, &x)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stratified_cox_equals_the_pooled_fit_and_refuses_what_it_must() {
    let dir = tempfile::tempdir().unwrap();
    let files = simulated_sites(dir.path());
    let mut net = start(&dir.path().join("net"), "sim", files.clone()).await;
    let pooled_strata = strata(&files);
    let http = reqwest::Client::new();
    let url = format!("{}/v1/analyses/cox", net.hub_url);
    let call = async |body: serde_json::Value, token: &str| post(&http, &url, token, &body).await;
    let rita = net.tokens["researcher"].clone();
    let studies = net.studies.clone();
    let body = |formula: &str, extra: serde_json::Value| {
        let mut b = json!({"study": studies["exact"], "table": "sim", "formula": formula});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    let formula = "Surv(fu, died) ~ x + sex + factor(grp)";
    for ties in [Ties::Efron, Ties::Breslow] {
        let (status, text) = call(body(formula, json!({"ties": ties})), &rita).await;
        assert_eq!(status, 200, "{text}");
        let fit: CoxFit = serde_json::from_str(&text).unwrap();
        let (beta, se, _) = cox::pooled(&pooled_strata, ties, 4).unwrap();
        let names: Vec<&str> = fit.coefficients.0.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["x", "sex", "factor(grp)b", "factor(grp)c"]);
        for (j, (name, c)) in fit.coefficients.0.iter().enumerate() {
            let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(1e-3);
            assert!(
                rel(c.estimate, beta[j]) < 1e-8,
                "{name}: {} vs {}",
                c.estimate,
                beta[j]
            );
            assert!(
                rel(c.std_error, se[j]) < 1e-8,
                "{name} se: {} vs {}",
                c.std_error,
                se[j]
            );
        }
        assert!(fit.converged && fit.sites.len() == 3, "{fit:?}");
        assert_eq!(fit.n, 400 + 700 + 1000);
        // The hazard doubles for sex = 1: ln 2 ≈ 0.69 is inside the interval.
        let hr = &fit.hazard_ratios["sex"];
        assert!(hr.lower < 2.0 && 2.0 < hr.upper, "{hr:?}");
        assert!(fit.likelihood_ratio.p < 1e-6, "{:?}", fit.likelihood_ratio);
        assert_eq!(fit.reference_levels["factor(grp)"], "a");
    }
    // Under secure aggregation the hub sees only the network's score and information: the
    // same fit, to the fixed-point resolution of the masked sums.
    let secure = json!({"secure_aggregation": true});
    let (status, text) = call(body(formula, secure), &rita).await;
    assert_eq!(status, 200, "{text}");
    let fit: CoxFit = serde_json::from_str(&text).unwrap();
    assert!(
        fit.privacy.secure_aggregation && fit.sites.len() == 3,
        "{fit:?}"
    );
    let (beta, _, _) = cox::pooled(&pooled_strata, Ties::Efron, 4).unwrap();
    for ((name, c), b) in fit.coefficients.0.iter().zip(&beta) {
        assert!(
            (c.estimate - b).abs() < 1e-6,
            "{name}: {} vs {b}",
            c.estimate
        );
    }
    // Every step is audited at each site as partial.survival and at the hub as survival.
    let hub_trail = net.hub.audit().records(0, 10_000).await.unwrap();
    assert!(
        hub_trail
            .iter()
            .any(|e| e.entry.action == "survival" && e.entry.reason.contains("Cox model"))
    );

    let auditor = net.tokens["auditor"].clone();
    let refusals = [
        // An identifier as a covariate.
        (
            body(
                "Surv(year_of_birth, race_concept_id) ~ person_id",
                json!({"table": "person"}),
            ),
            &rita,
            422,
        ),
        // A cohort with a handful of people: every site refuses (fewer than k rows/events).
        (
            body("Surv(fu, died) ~ x", json!({"where": "x > 2.58"})),
            &rita,
            403,
        ),
        (body("fu ~ x", json!({})), &rita, 400),
        (body("Surv(fu, died) ~ x - 1", json!({})), &rita, 400),
        (body("Surv(fu, x) ~ sex", json!({})), &rita, 400),
        (
            json!({"study": studies["dp"], "table": "sim", "formula": formula}),
            &rita,
            403,
        ),
        (
            json!({"study": studies["unapproved"], "table": "sim", "formula": formula}),
            &rita,
            403,
        ),
        (body(formula, json!({})), &auditor, 403),
    ];
    for (b, token, want) in refusals {
        let (status, text) = call(b.clone(), token).await;
        assert_eq!(status, want, "{b}: {text}");
        assert!(!text.contains("\"coefficients\""), "{text}");
    }

    // A site that is down: the model is fitted on the others' strata and says so.
    let south = net.site_names[1].clone();
    assert!(net.stop_site(&south).await);
    let (status, text) = call(body(formula, json!({})), &rita).await;
    assert_eq!(status, 200, "{text}");
    let partial: CoxFit = serde_json::from_str(&text).unwrap();
    assert_ne!(partial.sites[south.as_str()].status.to_string(), "answered");
    let others: Vec<CoxRows> = [0, 2].iter().map(|&i| pooled_strata[i].clone()).collect();
    let (beta, _, _) = cox::pooled(&others, Ties::Efron, 4).unwrap();
    assert!((partial.coefficients.0[0].1.estimate - beta[0]).abs() < 1e-8);
    net.shutdown().await;
}

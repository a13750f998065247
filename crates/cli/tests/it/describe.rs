//! Federated descriptive statistics equal the pooled ones; identifiers, tiny cohorts and the
//! wrong people are refused; in a DP study the histogram is noisy.

use medfed_core::describe::{Description, Statistics};
use serde_json::{Value, json};

use crate::glm::{simulated_sites, start};

/// The simulated sites' rows: (x, yg, t, grp, sex).
fn pooled(files: &[std::path::PathBuf]) -> Vec<(f64, f64, f64, String, u8)> {
    let mut rows = Vec::new();
    for f in files {
        let mut r = csv::Reader::from_path(f).unwrap();
        let h = r.headers().unwrap().clone();
        let at = |name: &str| h.iter().position(|c| c == name).unwrap();
        for rec in r.records() {
            let rec = rec.unwrap();
            let num = |name: &str| rec[at(name)].parse::<f64>().unwrap();
            rows.push((
                num("x"),
                num("yg"),
                num("t"),
                rec[at("grp")].to_string(),
                rec[at("sex")].parse().unwrap(),
            ));
        }
    }
    rows
}

fn mean_var(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    (
        m,
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptions_equal_the_pooled_statistics_and_refuse_what_they_must() {
    let dir = tempfile::tempdir().unwrap();
    let files = simulated_sites(dir.path());
    let net = start(&dir.path().join("net"), "sim", files.clone()).await;
    let rows = pooled(&files);
    let http = reqwest::Client::new();
    let call = async |study: &str, spec: Value, token: &str| {
        let mut body = json!({"study": net.studies[study], "table": "sim"});
        body.as_object_mut()
            .unwrap()
            .extend(spec.as_object().unwrap().clone());
        let r = http
            .post(format!("{}/v1/analyses/describe", net.hub_url))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    let rita = net.tokens["researcher"].clone();
    let get = |v: Value| serde_json::from_value::<Description>(v).unwrap().statistics;

    // Summary: n, mean, variance as if the three sites' rows were one table.
    let (status, v) = call(
        "exact",
        json!({"kind": "summary", "variables": ["x", "yg"]}),
        &rita,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["sites"].as_object().unwrap().len(), 3, "{v}");
    let Statistics::Summary { variables } = get(v) else {
        panic!("not a summary")
    };
    for (m, values) in variables.iter().zip([
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        rows.iter().map(|r| r.1).collect(),
    ]) {
        let (mean, var) = mean_var(&values);
        assert_eq!(m.n as usize, values.len());
        assert!(
            (m.mean - mean).abs() < 1e-12 && (m.variance - var).abs() < 1e-10,
            "{m:?}"
        );
    }

    // Correlation matrix over the same rows.
    let (status, v) = call(
        "exact",
        json!({"kind": "correlation", "variables": ["x", "yg", "t"]}),
        &rita,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let Statistics::Correlation(c) = get(v) else {
        panic!("not a correlation")
    };
    let (x, y): (Vec<f64>, Vec<f64>) = rows.iter().map(|r| (r.0, r.1)).unzip();
    let ((mx, vx), (my, vy)) = (mean_var(&x), mean_var(&y));
    let cov = x
        .iter()
        .zip(&y)
        .map(|(a, b)| (a - mx) * (b - my))
        .sum::<f64>()
        / (x.len() - 1) as f64;
    assert!(
        (c.matrix[0][1] - cov / (vx * vy).sqrt()).abs() < 1e-12,
        "{:?}",
        c.matrix
    );
    assert!(c.matrix[0][1] > 0.3, "yg follows x");

    // Histogram with declared bins and the median read off it.
    let spec = json!({"kind": "histogram", "variable": "x", "low": -2, "width": 0.5, "bins": 10,
                      "quantiles": [0.5]});
    let (status, v) = call("exact", spec.clone(), &rita).await;
    assert_eq!(status, 200, "{v}");
    let Statistics::Histogram(h) = get(v) else {
        panic!("not a histogram")
    };
    for (i, c) in h.counts.iter().enumerate() {
        let lo = -2.0 + 0.5 * i as f64;
        let n = x.iter().filter(|v| **v >= lo && **v < lo + 0.5).count();
        // Bins are wide enough that none falls under k.
        assert_eq!(*c, Some(n as f64), "bin {i}");
    }
    let mut sorted = x.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    assert!(
        (h.quantiles["0.5"] - median).abs() < 0.05,
        "{:?} vs {median}",
        h.quantiles
    );

    // Two-way table grp × sex with chi-square.
    let (status, v) = call(
        "exact",
        json!({"kind": "table", "rows": "grp", "columns": "sex"}),
        &rita,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let Statistics::Table(t) = get(v) else {
        panic!("not a table")
    };
    assert_eq!(t.row_levels, ["a", "b", "c"]);
    let observed = |g: &str, s: u8| rows.iter().filter(|r| r.3 == g && r.4 == s).count() as f64;
    for (i, g) in ["a", "b", "c"].iter().enumerate() {
        assert_eq!(
            t.counts[i],
            vec![Some(observed(g, 0)), Some(observed(g, 1))]
        );
    }
    let n = rows.len() as f64;
    let mut chi2 = 0.0;
    for g in ["a", "b", "c"] {
        for s in 0..2 {
            let row: f64 = (0..2).map(|s| observed(g, s)).sum();
            let col: f64 = ["a", "b", "c"].iter().map(|g| observed(g, s)).sum();
            let e = row * col / n;
            chi2 += (observed(g, s) - e).powi(2) / e;
        }
    }
    let test = t.chi_square.unwrap();
    assert!(
        (test.statistic - chi2).abs() < 1e-9 && test.df == 2,
        "{test:?} vs {chi2}"
    );

    // In the DP study a histogram of the OMOP person table carries noise and spends ε.
    let age = json!({"study": net.studies["dp"], "table": "person", "kind": "histogram",
                     "variable": "2024 - year_of_birth", "low": 0, "width": 20, "bins": 5,
                     "quantiles": [0.5]});
    let r = http
        .post(format!("{}/v1/analyses/describe", net.hub_url))
        .bearer_auth(&rita)
        .json(&age)
        .send()
        .await
        .unwrap();
    let (status, v) = (r.status().as_u16(), r.json::<Value>().await.unwrap());
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["privacy"]["mode"], "dp", "{v}");
    assert!(v["privacy"]["epsilon"].as_f64().unwrap() > 0.0, "{v}");

    // Refusals: an identifier (even inside an expression), a tiny cohort, a sub-query, the
    // auditor, no token.
    let person = json!({"kind": "summary", "variables": ["person_id % 7"]});
    let mut b = json!({"study": net.studies["exact"], "table": "person"});
    b.as_object_mut()
        .unwrap()
        .extend(person.as_object().unwrap().clone());
    let r = http
        .post(format!("{}/v1/analyses/describe", net.hub_url))
        .bearer_auth(&rita)
        .json(&b)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let tiny = json!({"kind": "summary", "variables": ["yg"], "where": "x > 2.58"});
    let (status, v) = call("exact", tiny, &rita).await;
    assert!(status == 403 || status == 422, "{v}");
    assert!(v["error"].as_str().unwrap().contains("fewer than k"), "{v}");
    let sub = json!({"kind": "summary", "variables": ["(SELECT MAX(x) FROM sim)"]});
    assert_eq!(call("exact", sub, &rita).await.0, 400);
    let ok = json!({"kind": "summary", "variables": ["x"]});
    assert_eq!(
        call("exact", ok.clone(), &net.tokens["auditor"]).await.0,
        403
    );
    assert_eq!(call("exact", ok, "not-a-token").await.0, 401);
    net.shutdown().await;
}

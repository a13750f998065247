//! Secure aggregation end to end: the hub sums masked partials over mTLS Flight rounds.

use std::time::Duration;

use medfed_core::SiteName;
use serde_json::{Value, json};

use crate::support::{Net, assert_rows_eq, network};

async fn query(net: &Net, study: &str, sql: &str, secure: bool) -> (u16, Value) {
    let options = json!({ "secure_aggregation": secure });
    net.research(study, sql, options).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_sums_release_what_plain_merges_release() {
    let net = network(3, 10_000).await;
    for sql in [
        "SELECT COUNT(*) AS n FROM person",
        "SELECT gender_concept_id, COUNT(*) AS n, AVG(year_of_birth) AS mean_yob \
         FROM person GROUP BY gender_concept_id ORDER BY gender_concept_id",
        "SELECT p.gender_concept_id, COUNT(DISTINCT c.person_id) AS people, COUNT(*) AS n \
         FROM condition_occurrence c JOIN person p ON c.person_id = p.person_id \
         GROUP BY p.gender_concept_id",
        "SELECT SUM(year_of_birth) AS s, AVG(year_of_birth * 1.5) AS m FROM person",
    ] {
        let (status, plain) = query(&net, "exact", sql, false).await;
        assert_eq!(status, 200, "{sql}: {plain}");
        let (status, secure) = query(&net, "exact", sql, true).await;
        assert_eq!(status, 200, "{sql}: {secure}");
        assert_eq!(secure["privacy"]["secure_aggregation"], true, "{secure}");
        assert_eq!(plain["privacy"]["secure_aggregation"], false);
        assert_eq!(secure["columns"], plain["columns"]);
        let expected: Vec<Vec<Value>> = plain["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_array().unwrap().clone())
            .collect();
        assert_rows_eq(secure["rows"].as_array().unwrap(), &expected, sql);
        for site in ["north", "south", "east"] {
            assert_eq!(secure["sites"][site]["status"], "answered", "{secure}");
        }
    }
    net.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_groups_stay_hidden_and_a_group_small_everywhere_is_not_released() {
    let net = network(3, 10_000).await;
    // Birth years: many groups have fewer than k people at a site, some in the whole network.
    let sql = "SELECT year_of_birth, COUNT(*) AS n FROM person GROUP BY year_of_birth";
    let (status, body) = query(&net, "exact", sql, true).await;
    assert_eq!(status, 200, "{body}");
    let pooled = net.pooled(sql).await;
    let rows = body["rows"].as_array().unwrap();
    let suppressed = body["privacy"]["suppressed"].as_array().unwrap();
    for (i, row) in rows.iter().enumerate() {
        match row[1].as_i64() {
            Some(n) => assert!(n >= 10, "a released group of {n}: {body}"),
            None => assert!(suppressed.iter().any(|s| s["row"] == i)),
        }
    }
    // Every released count is the pooled count of its year.
    for row in rows.iter().filter(|r| !r[1].is_null()) {
        let pooled_n = pooled
            .iter()
            .find(|p| p[0].as_f64() == row[0].as_f64())
            .map(|p| p[1].as_f64().unwrap());
        assert_eq!(pooled_n, row[1].as_f64(), "{row}");
    }
    // A cohort small everywhere is refused, as without secure aggregation.
    let (status, body) = query(
        &net,
        "exact",
        "SELECT year_of_birth, COUNT(*) AS n FROM person WHERE year_of_birth = 1931 GROUP BY year_of_birth",
        true,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    net.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_down_leaves_the_others_sum_and_one_site_alone_is_refused() {
    let mut net = network(3, 5_000).await;
    let sql = "SELECT COUNT(*) AS n FROM person";
    assert!(net.net.stop_site(&SiteName::new("south").unwrap()).await);
    let (status, body) =
        tokio::time::timeout(Duration::from_secs(30), query(&net, "exact", sql, true))
            .await
            .expect("a down site must not hang a secure round");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"][0][0], 4_000, "{body}");
    assert_eq!(body["sites"]["south"]["status"], "failed");

    net.net.stop_site(&SiteName::new("east").unwrap()).await;
    let (status, body) = query(&net, "exact", sql, true).await;
    assert_eq!(status, 503, "{body}");
    let north = body["sites"]["north"]["message"].as_str().unwrap();
    assert!(north.contains("at least 2 sites"), "{body}");
    net.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_sum_cannot_carry_is_refused_before_any_site_is_asked() {
    let net = network(2, 5_000).await;
    for (study, sql) in [
        ("exact", "SELECT STDDEV(year_of_birth) AS sd FROM person"),
        ("dp", "SELECT VAR_POP(year_of_birth) AS v FROM person"),
    ] {
        let (status, body) = query(&net, study, sql, true).await;
        assert_eq!(status, 422, "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("secure aggregation"),
            "{body}"
        );
    }
    net.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dp_studies_sum_gaussian_shares_under_secure_aggregation() {
    let net = network(3, 10_000).await;
    let sql = "SELECT gender_concept_id, COUNT(*) AS n, AVG(year_of_birth) AS yob \
               FROM person GROUP BY gender_concept_id ORDER BY gender_concept_id";
    let options = json!({
        "secure_aggregation": true,
        "epsilon": 0.3,
        "bounds": { "year_of_birth": [1900.0, 2030.0] },
    });
    let (status, body) = net.research("dp", sql, options).await;
    assert_eq!(status, 200, "{body}");
    let p = &body["privacy"];
    assert_eq!(p["secure_aggregation"], true, "{p}");
    assert!(
        p["mechanism"]
            .as_str()
            .unwrap()
            .contains("distributed discrete Gaussian"),
        "{p}"
    );
    assert_eq!(p["epsilon"], 0.3);
    for site in ["north", "south", "east"] {
        let left = p["sites"][site]["epsilon_remaining"].as_f64().unwrap();
        assert!((left - 0.2).abs() < 1e-9, "{p}");
    }
    // Noisy, but within a few of its stated 95 % intervals of the pooled truth.
    let pooled = net.pooled(sql).await;
    let ci = |label: &str| {
        p["noise"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(k, _)| k.contains(label))
            .map(|(_, v)| v["ci95"].as_f64().unwrap())
            .unwrap_or_else(|| panic!("no noise note for {label}: {p}"))
    };
    let count_ci = ci("count");
    let sum_ci = ci("sum(person.year_of_birth)");
    let rows = body["rows"].as_array().unwrap();
    assert_eq!(rows.len(), pooled.len(), "{body}");
    for (row, truth) in rows.iter().zip(&pooled) {
        let n = row[1].as_f64().unwrap();
        let true_n = truth[1].as_f64().unwrap();
        assert!(
            (n - true_n).abs() < 3.0 * count_ci,
            "{n} vs {true_n} (±{count_ci})"
        );
        assert_ne!(n, true_n, "a DP count came back exact: {body}");
        // The mean's error is mostly the (centred) sum's noise over n: three of its stated
        // 95 % intervals, plus a year for the count's noise in the denominator. (A fixed
        // tolerance of 5 years failed now and then: the noise is drawn afresh every run.)
        let yob = row[2].as_f64().unwrap();
        let tolerance = 3.0 * sum_ci / true_n + 1.0;
        assert!(
            (yob - truth[2].as_f64().unwrap()).abs() < tolerance,
            "{yob} vs {truth:?} (±{tolerance})"
        );
    }
    net.net.shutdown().await;
}

//! A DP study's privacy budget as the sites' own ledgers hold it (`GET /v1/studies/{id}/budget`).

use medfed_core::SiteName;
use serde_json::json;

use crate::support::network;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_site_reports_its_own_ledger_and_a_release_shows_in_it() {
    let mut net = network(3, 10_000).await;
    let dp = net.net.studies["dp"].clone();
    let path = format!("/v1/studies/{dp}/budget");
    let rita = net.token("researcher");
    let (status, before) = net.call("GET", &path, None, Some(&rita)).await;
    assert_eq!(status, 200, "{before}");
    for site in ["north", "south", "east"] {
        let b = &before["sites"][site];
        assert_eq!(b["status"], "answered", "{before}");
        assert_eq!(
            (b["epsilon"].as_f64(), b["epsilon_spent"].as_f64()),
            (Some(0.5), Some(0.0))
        );
    }

    let options = json!({"epsilon": 0.2, "bounds": {"year_of_birth": [1900, 2030]}});
    let sql = "SELECT AVG(year_of_birth) AS yob FROM person";
    let (status, released) = net.research("dp", sql, options).await;
    assert_eq!(status, 200, "{released}");
    let (_, after) = net.call("GET", &path, None, Some(&rita)).await;
    for site in ["north", "south", "east"] {
        let b = &after["sites"][site];
        assert!(
            (b["epsilon_spent"].as_f64().unwrap() - 0.2).abs() < 1e-9,
            "{after}"
        );
        assert_eq!(
            b["epsilon_remaining"], released["privacy"]["sites"][site]["epsilon_remaining"],
            "the ledger and the release agree"
        );
    }

    // A site that is down says so; the others still answer.
    assert!(net.net.stop_site(&SiteName::new("south").unwrap()).await);
    let (status, partial) = net.call("GET", &path, None, Some(&rita)).await;
    assert_eq!(status, 200, "{partial}");
    assert_ne!(partial["sites"]["south"]["status"], "answered", "{partial}");
    assert!(
        partial["sites"]["south"]["message"].is_string(),
        "{partial}"
    );
    assert_eq!(partial["sites"]["north"]["status"], "answered", "{partial}");

    // Each site audited the read, as the hub did.
    let north = net.site_audit("north").await;
    assert!(
        north
            .iter()
            .any(|e| e.action == "partial.budget" && e.reason.contains("ε 0.2 of 0.5")),
        "the site's trail records the budget read"
    );
    net.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_of_exact_or_unknown_studies_and_without_a_token_are_refused() {
    let net = network(2, 10_000).await;
    let rita = net.token("researcher");
    let exact = format!("/v1/studies/{}/budget", net.net.studies["exact"]);
    let (status, body) = net.call("GET", &exact, None, Some(&rita)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no privacy budget"),
        "{body}"
    );
    let (status, _) = net
        .call("GET", "/v1/studies/nope/budget", None, Some(&rita))
        .await;
    assert_eq!(status, 404);
    let dp = format!("/v1/studies/{}/budget", net.net.studies["dp"]);
    let (status, _) = net.call("GET", &dp, None, None).await;
    assert_eq!(status, 401);
    net.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollup_spends_the_epsilon_asked_for_split_between_its_groupings() {
    let net = network(3, 10_000).await;
    let dp = net.net.studies["dp"].clone();
    let rita = net.token("researcher");
    let sql = "SELECT gender_concept_id AS g, COUNT(*) AS n FROM person GROUP BY ROLLUP(gender_concept_id)";
    let (status, released) = net.research("dp", sql, json!({"epsilon": 0.2})).await;
    assert_eq!(status, 200, "{released}");
    let rows = released["rows"].as_array().unwrap();
    assert!(
        rows.iter().any(|r| r[0].is_null()),
        "a total row: {released}"
    );
    assert!((released["privacy"]["epsilon"].as_f64().unwrap() - 0.2).abs() < 1e-9);
    let (_, after) = net
        .call(
            "GET",
            &format!("/v1/studies/{dp}/budget"),
            None,
            Some(&rita),
        )
        .await;
    for site in ["north", "south", "east"] {
        let spent = after["sites"][site]["epsilon_spent"].as_f64().unwrap();
        assert!((spent - 0.2).abs() < 1e-9, "{after}");
    }
    net.net.shutdown().await;
}

//! The researchers' HTTP API over a real three-site network.

use serde_json::json;

use crate::support::{assert_released_eq, network};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federated_answers_equal_the_pooled_data() {
    let net = network(3, 10_000).await;
    for sql in [
        "SELECT COUNT(*) AS n FROM person",
        "SELECT COUNT(DISTINCT person_id) AS patients, COUNT(*) AS records FROM condition_occurrence",
        "SELECT SUM(value_as_number) AS s, AVG(value_as_number) AS m, VAR_SAMP(value_as_number) AS v, \
         STDDEV(value_as_number) AS sd FROM measurement WHERE measurement_concept_id = 3038553",
        "SELECT gender_concept_id, COUNT(*) AS n FROM person GROUP BY gender_concept_id",
        "SELECT gender_concept_id, (year_of_birth / 10) * 10 AS decade, COUNT(*) AS n FROM person GROUP BY 1, 2",
        "SELECT c.condition_concept_id, COUNT(DISTINCT p.person_id) AS patients FROM condition_occurrence c \
         JOIN person p ON c.person_id = p.person_id WHERE 2025 - p.year_of_birth > 60 \
         AND c.condition_concept_id = 201826 GROUP BY c.condition_concept_id",
        "SELECT visit_concept_id, COUNT(*) AS n FROM visit_occurrence GROUP BY visit_concept_id HAVING COUNT(*) > 50",
    ] {
        let body = net.query_ok(sql).await;
        assert_released_eq(&body, &net.pooled(sql).await, sql);
        let sites = body["sites"].as_object().unwrap();
        assert_eq!(sites.len(), 3);
        assert!(sites.values().all(|s| s["status"] == "answered"), "{body}");
    }
    net.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disclosive_queries_are_refused_with_a_reason() {
    let net = network(2, 10_000).await;
    for (sql, why) in [
        ("SELECT * FROM person", "individual rows"),
        (
            "SELECT person_id, year_of_birth FROM person",
            "individual rows",
        ),
        (
            "SELECT MIN(value_as_number) FROM measurement",
            "single patient's value",
        ),
        (
            "SELECT MAX(birth_datetime) FROM person",
            "single patient's value",
        ),
        (
            "SELECT person_id, COUNT(*) FROM visit_occurrence GROUP BY person_id",
            "identifies a patient",
        ),
    ] {
        let (status, body) = net.post_query(sql, Some(&net.net.token)).await;
        assert_eq!(status, 422, "{sql}: {body}");
        assert_eq!(body["kind"], "refused");
        assert!(
            body["error"].as_str().unwrap().contains(why),
            "{sql}: {body}"
        );
    }
    let (status, body) = net
        .post_query("SELECT COUNT(*) FROM patients", Some(&net.net.token))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("patients"),
        "{body}"
    );
    net.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_v1_route_needs_a_valid_token() {
    let net = network(1, 10_000).await;
    for token in [None, Some("not-a-token"), Some("")] {
        let (status, body) = net.post_query("SELECT COUNT(*) FROM person", token).await;
        assert_eq!(status, 401, "{token:?}: {body}");
        assert_eq!(body["kind"], "unauthenticated");
    }
    for path in ["/v1/sites", "/v1/catalog"] {
        let url = format!("{}{path}", net.net.hub_url);
        assert_eq!(
            net.http.get(&url).send().await.unwrap().status(),
            401,
            "{path}"
        );
        let ok = net
            .http
            .get(&url)
            .bearer_auth(&net.net.token)
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200, "{path}");
    }
    let health = net
        .http
        .get(format!("{}/healthz", net.net.hub_url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    net.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalogue_is_metadata_only() {
    let net = network(2, 10_000).await;
    let body: serde_json::Value = net
        .http
        .get(format!("{}/v1/catalog", net.net.hub_url))
        .bearer_auth(&net.net.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let person = &body["tables"]["person"];
    assert_eq!(person["sites"].as_array().unwrap().len(), 2);
    let cols = person["columns"].as_array().unwrap();
    assert_eq!(cols.len(), 18, "the full CDM person table");
    assert_eq!(cols[0]["name"], "person_id");
    assert_eq!(cols[0]["identifier"], true);
    let text = body.to_string();
    assert!(!text.contains("MRN-"), "no values in the catalogue");
    // People per table, as each site publishes them: rounded to 10, never a small number.
    for site in ["north", "south"] {
        assert_eq!(person["persons"][site], json!({"about": 2000}), "{body}");
        let people = body["tables"]["condition_occurrence"]["persons"][site]["about"]
            .as_u64()
            .unwrap();
        assert!(
            people.is_multiple_of(10) && people > 0 && people <= 2000,
            "{people}"
        );
    }
    for (name, table) in body["tables"].as_object().unwrap() {
        let has_person = table["columns"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "person_id");
        let counted = !table["persons"].as_object().unwrap().is_empty();
        assert_eq!(
            has_person, counted,
            "{name}: counted exactly when it has person_id"
        );
    }
    // Each site audited what it told the hub.
    for site in ["north", "south"] {
        let listed = net.site_audit(site).await;
        assert!(
            listed.iter().any(|e| e.action == "catalog.list"
                && e.actor == "hub"
                && e.reason.contains("person counts rounded to 10")),
            "{site}: {listed:?}"
        );
    }
    net.net.shutdown().await;
}

/// A long-running hub does not show yesterday's network: a listing older than
/// `catalog_refresh_s` re-reads the sites in the background (the listing itself does not wait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_catalogue_is_re_read_in_the_background() {
    let net = network(2, 10_000).await;
    let dir = net.dir.path();
    let mut cfg = medfed_hub::HubConfig::load(&dir.join("hub/hub.toml")).unwrap();
    cfg.catalog_refresh_s = 0;
    // A second hub on the same state, with its own audit trail (one writer per trail).
    cfg.governance.audit_db = dir.join("hub/audit-2.db").display().to_string();
    let hub = medfed_hub::Hub::new(&cfg).await.unwrap();
    let token = net.token("researcher");
    let list = || async {
        let (status, body) = crate::support::get_in_process(&hub, "/v1/catalog", &token).await;
        assert_eq!(status, 200, "{body}");
        body
    };
    let first = list().await;
    let read_at = first["as_of_us"].as_i64().unwrap();
    assert!(read_at > 0, "{first}");
    assert_eq!(
        first["tables"]["person"]["sites"],
        json!(["north", "south"])
    );
    // The first listing started a re-read; a later one shows its result.
    let mut later = first.clone();
    for _ in 0..100 {
        later = list().await;
        if later["as_of_us"].as_i64().unwrap() > read_at {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(later["as_of_us"].as_i64().unwrap() > read_at, "{later}");
    assert_eq!(
        later["tables"], first["tables"],
        "same network, same catalogue"
    );
    net.net.shutdown().await;
}

/// DataSHIELD's CNSIM cohort split over three sites as an extra table: the federated mean and
/// variance of LAB_TSC must equal the values DataSHIELD's own tests assert (GPL-3 data, so it is
/// read from ../shared and the test skips where that is absent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cnsim_extract_matches_datashields_reference_values() {
    let cnsim =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/cnsim");
    if !cnsim.join("CNSIM1.csv").exists() {
        eprintln!("skipped: {} not present", cnsim.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let files = (1..=3)
        .map(|i| cnsim.join(format!("CNSIM{i}.csv")))
        .collect();
    let cfg = medfed_devnet::DevnetConfig {
        sites: 3,
        patients_per_site: 500,
        extra_tables: vec![("cnsim".into(), files)],
        ..medfed_devnet::DevnetConfig::new(dir.path())
    };
    let net = medfed_devnet::Devnet::start(&cfg, |_, _| {}).await.unwrap();
    let rita = net
        .hub
        .authenticate(Some(&format!("Bearer {}", net.token)), "test")
        .await
        .unwrap();
    let study = &net.studies["exact"];
    let r = net
        .hub
        .query(&rita, study, "SELECT AVG(lab_tsc) AS mean, VAR_SAMP(lab_tsc) AS var, COUNT(*) FILTER (WHERE gender = 1) AS women FROM cnsim", None, &Default::default())
        .await
        .unwrap();
    let row = &r.rows[0];
    assert!(
        (row[0].as_f64().unwrap() - 5.85192485623003).abs() < 1e-12,
        "{row:?}"
    );
    assert!(
        (row[1].as_f64().unwrap() - 1.158384).abs() < 1e-6,
        "{row:?}"
    );
    assert_eq!(row[2], 4611);
    let per_site = net
        .hub
        .query(
            &rita,
            study,
            "SELECT AVG(lab_tsc) AS mean FROM cnsim",
            Some(&["north".to_string()]),
            &Default::default(),
        )
        .await
        .unwrap();
    assert!((per_site.rows[0][0].as_f64().unwrap() - 5.87211344770338).abs() < 1e-12);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_description_covers_every_route_and_each_needs_a_token() {
    let net = network(1, 10_000).await;
    let (status, spec) = net.call("GET", "/openapi.json", None, None).await;
    assert_eq!(status, 200, "served without a token");
    assert!(
        spec["openapi"].as_str().unwrap().starts_with("3."),
        "{spec}"
    );
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let paths = spec["paths"].as_object().unwrap();
    for expected in [
        "/v1/queries",
        "/v1/analyses/glm",
        "/v1/analyses/km",
        "/v1/studies/{id}/budget",
        "/v1/audit/verify",
        "/v1/catalog",
    ] {
        assert!(paths.contains_key(expected), "{expected} missing");
    }
    for schema in [
        "QueryResult",
        "ErrorBody",
        "GlmFit",
        "KmFit",
        "Study",
        "StudyBudget",
    ] {
        assert!(
            spec["components"]["schemas"].get(schema).is_some(),
            "schema {schema} missing"
        );
    }
    // Every route the description names is served, and refuses a caller without a token.
    let mut routes = 0;
    for (path, item) in paths {
        let concrete = path.replace("{id}", "x").replace("{name}", "x");
        for method in item.as_object().unwrap().keys() {
            let body = (method == "post").then(|| json!({}));
            let (status, reply) = net
                .call(&method.to_uppercase(), &concrete, body, None)
                .await;
            assert_eq!(status, 401, "{method} {path}: {reply}");
            assert!(
                item[method]["responses"].get("401").is_some(),
                "{method} {path} documents its 401"
            );
            routes += 1;
        }
    }
    assert!(routes >= 19, "{routes} routes described");
    net.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_query_string_is_a_json_error_too() {
    // Found by schemathesis: axum's own rejection was plain text.
    let net = network(1, 10_000).await;
    let auditor = net.token("auditor");
    let (status, body) = net
        .call(
            "GET",
            "/v1/audit?limit=9223372036854775808",
            None,
            Some(&auditor),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["kind"], "invalid", "{body}");
    assert!(body["error"].as_str().unwrap().contains("limit"), "{body}");
    net.net.shutdown().await;
}

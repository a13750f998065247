//! Red team: disclosive attempts against a running network, each of which must be refused or
//! answered only in a safe form (small cells suppressed, or noised under a spent budget).
//!
//! The attacker is an authenticated researcher in an approved study: the strongest insider the
//! privacy layer has to hold against.

use serde_json::{Value, json};

use crate::support::{Net, network};

/// What a safe answer to an attempt looks like.
#[derive(Debug, Clone, Copy)]
enum Safe {
    /// Refused outright (4xx), with a reason.
    Refused,
    /// Refused, or answered with column `n` never showing 1..k-1 people.
    SmallCellsHidden,
}

const K: f64 = 10.0;

fn check(sql: &str, expect: Safe, status: u16, body: &Value) {
    let refused =
        (400..500).contains(&status) && body["error"].as_str().is_some_and(|e| !e.is_empty());
    match expect {
        Safe::Refused => assert!(refused, "not refused ({status}): {sql}\n{body}"),
        Safe::SmallCellsHidden if refused => {}
        Safe::SmallCellsHidden => {
            assert_eq!(status, 200, "{sql}: {body}");
            let n = body["columns"]
                .as_array()
                .unwrap()
                .iter()
                .position(|c| c == "n")
                .unwrap_or_else(|| panic!("no column n: {sql}"));
            let suppressed: Vec<u64> = body["privacy"]["suppressed"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["row"].as_u64().unwrap())
                .collect();
            for (i, row) in body["rows"].as_array().unwrap().iter().enumerate() {
                match row[n].as_f64() {
                    None => assert!(
                        suppressed.contains(&(i as u64)),
                        "null but not marked: {sql}"
                    ),
                    Some(v) => assert!(v == 0.0 || v >= K, "released a cell of {v}: {sql}\n{body}"),
                }
            }
        }
    }
}

async fn attempt(net: &Net, study: &str, sql: &str, options: Value) -> (u16, Value) {
    net.research(study, sql, options).await
}

/// 34 single-query attacks on an exact (noise-free) study.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_query_attacks_on_an_exact_study_are_refused_or_suppressed() {
    use Safe::*;
    let net = network(3, 10_000).await;
    let attacks: &[(&str, &str, Safe)] = &[
        ("row dump", "SELECT * FROM person", Refused),
        ("identifiers", "SELECT person_id FROM person", Refused),
        (
            "group by person",
            "SELECT person_id, COUNT(*) FROM condition_occurrence GROUP BY person_id",
            Refused,
        ),
        (
            "group by a function of the id",
            "SELECT person_id % 10 AS d, COUNT(*) FROM person GROUP BY person_id % 10",
            Refused,
        ),
        ("min", "SELECT MIN(year_of_birth) FROM person", Refused),
        (
            "max of a date",
            "SELECT MAX(birth_datetime) FROM person",
            Refused,
        ),
        ("max of an id", "SELECT MAX(person_id) FROM person", Refused),
        ("sum of ids", "SELECT SUM(person_id) FROM person", Refused),
        (
            "mean of ids",
            "SELECT AVG(person_id) FROM condition_occurrence",
            Refused,
        ),
        (
            "median",
            "SELECT MEDIAN(year_of_birth) FROM person",
            Refused,
        ),
        (
            "percentile",
            "SELECT APPROX_PERCENTILE_CONT(value_as_number, 0.99) FROM measurement",
            Refused,
        ),
        (
            "array_agg",
            "SELECT ARRAY_AGG(year_of_birth) FROM person",
            Refused,
        ),
        (
            "string_agg of ids",
            "SELECT STRING_AGG(CAST(person_id AS VARCHAR), ',') FROM person",
            Refused,
        ),
        (
            "first_value",
            "SELECT FIRST_VALUE(year_of_birth ORDER BY birth_datetime) FROM person",
            Refused,
        ),
        (
            "limit 1 order by in a sub-select",
            "SELECT SUM(year_of_birth) FROM (SELECT year_of_birth FROM person ORDER BY year_of_birth DESC LIMIT 1) t",
            Refused,
        ),
        (
            "offset in a sub-select",
            "SELECT COUNT(*) FROM (SELECT * FROM person OFFSET 5) t",
            Refused,
        ),
        (
            "union of results",
            "SELECT COUNT(*) FROM person UNION SELECT COUNT(*) FROM death",
            Refused,
        ),
        (
            "rows smuggled beside a total (UNION ALL)",
            "SELECT person_id FROM person UNION ALL SELECT COUNT(*) FROM person",
            Refused,
        ),
        (
            "window row output",
            "SELECT year_of_birth, ROW_NUMBER() OVER (ORDER BY year_of_birth) FROM person",
            Refused,
        ),
        (
            "window picks a row",
            "SELECT COUNT(*) FROM (SELECT person_id, ROW_NUMBER() OVER (ORDER BY year_of_birth) AS r FROM person) t WHERE r = 1",
            Refused,
        ),
        (
            "sub-select beside an aggregate",
            "SELECT COUNT(*) AS n, (SELECT MAX(year_of_birth) FROM person) AS m FROM person",
            Refused,
        ),
        (
            "stacked statements",
            "SELECT COUNT(*) FROM person; DROP TABLE person",
            Refused,
        ),
        ("ddl", "CREATE TABLE x AS SELECT * FROM person", Refused),
        (
            "distinct values of a quasi-identifier",
            "SELECT COUNT(DISTINCT year_of_birth) FROM person",
            Refused,
        ),
        (
            "rollup over an identifier",
            "SELECT gender_concept_id, COUNT(*) FROM person GROUP BY ROLLUP(gender_concept_id, person_id)",
            Refused,
        ),
        (
            "a cohort of three ids",
            "SELECT COUNT(*) AS n FROM person WHERE person_id IN (1, 2, 3)",
            SmallCellsHidden,
        ),
        (
            "one person's mean",
            "SELECT AVG(year_of_birth) AS a, COUNT(*) AS n FROM person WHERE person_id = 1",
            SmallCellsHidden,
        ),
        (
            "two people's lab sum",
            "SELECT SUM(value_as_number) AS s, COUNT(*) AS n FROM measurement WHERE person_id IN (1, 2)",
            SmallCellsHidden,
        ),
        (
            "one person's events, counted as rows",
            "SELECT condition_concept_id, COUNT(*) AS n FROM condition_occurrence WHERE person_id = 1 GROUP BY 1",
            SmallCellsHidden,
        ),
        (
            "exact birth date",
            "SELECT COUNT(*) AS n FROM person WHERE year_of_birth = 1931 AND month_of_birth = 2 AND day_of_birth = 3",
            SmallCellsHidden,
        ),
        (
            "quasi-identifier grid",
            "SELECT year_of_birth, month_of_birth, day_of_birth, gender_concept_id, COUNT(*) AS n FROM person GROUP BY 1, 2, 3, 4",
            SmallCellsHidden,
        ),
        (
            "having small",
            "SELECT gender_concept_id, year_of_birth, COUNT(*) AS n FROM person GROUP BY 1, 2 HAVING COUNT(*) < 5",
            SmallCellsHidden,
        ),
        (
            "smallest group first",
            "SELECT year_of_birth, COUNT(*) AS n FROM person GROUP BY 1 ORDER BY n ASC LIMIT 1",
            SmallCellsHidden,
        ),
        (
            "the oldest patients via a sub-select",
            "SELECT COUNT(*) AS n FROM person WHERE year_of_birth = (SELECT MIN(year_of_birth) FROM person)",
            SmallCellsHidden,
        ),
        (
            "birth dates as groups",
            "SELECT CAST(birth_datetime AS DATE) AS d, COUNT(*) AS n FROM person GROUP BY 1",
            SmallCellsHidden,
        ),
    ];
    assert!(attacks.len() >= 30);
    // Each attack with the sites' partials merged in the clear, and summed under secure
    // aggregation (where k is applied to the sum, not at each site).
    for secure in [false, true] {
        for (name, sql, expect) in attacks {
            let options = json!({ "secure_aggregation": secure });
            let (status, body) = attempt(&net, "exact", sql, options).await;
            eprintln!("{name} (secure aggregation {secure}): {status}");
            check(sql, *expect, status, &body);
        }
    }
    // Every refusal is in the hub's audit trail.
    let (_, audit) = net
        .call(
            "GET",
            "/v1/audit?limit=1000",
            None,
            Some(&net.token("auditor")),
        )
        .await;
    let denials = audit["records"]
        .as_array()
        .or(audit.as_array())
        .map(|r| {
            r.iter()
                .filter(|e| e["decision"] == "deny" && e["action"] == "query")
                .count()
        })
        .unwrap_or(0);
    assert!(denials >= 24, "only {denials} refusals audited");
    net.net.shutdown().await;
}

/// "All patients", then "all patients but three": the difference would be those three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differencing_pairs_are_refused_and_audited() {
    let net = network(3, 10_000).await;
    let pairs = [
        (
            "SELECT COUNT(*) AS n FROM person",
            "SELECT COUNT(*) AS n FROM person WHERE person_id NOT IN (1, 2, 3)",
        ),
        (
            "SELECT gender_concept_id, COUNT(*) AS n FROM person GROUP BY 1",
            "SELECT gender_concept_id, COUNT(*) AS n FROM person WHERE person_id <> 1 GROUP BY 1",
        ),
    ];
    for ((first, second), secure) in pairs.into_iter().zip([false, true]) {
        let options = json!({ "secure_aggregation": secure });
        let (s1, b1) = attempt(&net, "exact", first, options.clone()).await;
        assert_eq!(s1, 200, "{b1}");
        // Asking the same again is fine: nobody is singled out.
        assert_eq!(attempt(&net, "exact", first, options.clone()).await.0, 200);
        let (s2, b2) = attempt(&net, "exact", second, options).await;
        assert_eq!(s2, 403, "{second} (secure aggregation {secure}): {b2}");
        assert!(
            b2["error"].as_str().unwrap().contains("differencing"),
            "{b2}"
        );
    }
    // Cohorts that differ by at least k people are released.
    let (s, b) = attempt(
        &net,
        "exact",
        "SELECT COUNT(*) AS n FROM person WHERE year_of_birth < 1960",
        json!({}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    net.net.shutdown().await;
}

/// Under DP: averaging a noised count by asking again runs the budget out; the ledger is the
/// site's and survives its restart; DP-specific attacks are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dp_repeats_exhaust_the_budget_and_the_ledger_survives_a_restart() {
    let mut net = network(2, 10_000).await;
    let sql = "SELECT COUNT(*) AS n FROM person";
    let mut answers = Vec::new();
    for _ in 0..5 {
        let (status, body) = attempt(&net, "dp", sql, json!({ "epsilon": 0.1 })).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["privacy"]["mode"], "dp");
        assert_eq!(body["privacy"]["epsilon"], 0.1);
        let noise = body["privacy"]["noise"].as_object().unwrap();
        let count = noise
            .iter()
            .find(|(k, _)| k.starts_with("count"))
            .expect("count noise stated");
        assert!(count.1["ci95"].as_f64().unwrap() > 0.0, "{body}");
        answers.push(body["rows"][0][0].as_i64().unwrap());
    }
    assert!(
        answers.iter().any(|&a| a != 4_000),
        "noise was added: {answers:?}"
    );
    // ε = 0.5 per site is spent: every site refuses, so nothing is released.
    let (status, body) = attempt(&net, "dp", sql, json!({ "epsilon": 0.1 })).await;
    assert_eq!(status, 503, "{body}");
    for site in body["sites"].as_object().unwrap().values() {
        assert_eq!(site["status"], "refused", "{body}");
        assert!(
            site["message"].as_str().unwrap().contains("exhausted"),
            "{body}"
        );
    }
    // A restarted site still knows what was spent.
    let north = net.net.site_names[0].clone();
    net.net.restart_site(&north).await.unwrap();
    let (_, body) = attempt(
        &net,
        "dp",
        sql,
        json!({ "epsilon": 0.05, "sites": [north.to_string()] }),
    )
    .await;
    assert_eq!(body["sites"][north.as_str()]["status"], "refused", "{body}");
    net.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dp_specific_attacks_are_refused_or_noised() {
    let net = network(2, 10_000).await;
    for (sql, options) in [
        (
            "SELECT person_id, COUNT(*) FROM person GROUP BY person_id",
            json!({}),
        ),
        ("SELECT MIN(year_of_birth) FROM person", json!({})),
        ("SELECT SUM(year_of_birth) FROM person", json!({})),
        ("SELECT COUNT(*) FROM person", json!({ "epsilon": 5.0 })),
        ("SELECT COUNT(*) FROM person", json!({ "epsilon": -1.0 })),
    ] {
        let (status, body) = attempt(&net, "dp", sql, options.clone()).await;
        assert!(
            (400..500).contains(&status) || status == 503,
            "{sql} {options}: {status} {body}"
        );
    }
    // A tiny cohort is noised: whatever number comes back (it may even be 3 by chance), the
    // stated noise dwarfs the cohort, so no answer pins its size.
    let (status, body) = attempt(
        &net,
        "dp",
        "SELECT COUNT(*) AS n FROM person WHERE person_id IN (1, 2, 3)",
        json!({ "epsilon": 0.1 }),
    )
    .await;
    if status == 200 {
        assert_eq!(body["privacy"]["mode"], "dp");
        let noise = body["privacy"]["noise"].as_object().unwrap();
        let ci95 = noise
            .iter()
            .find(|(k, _)| k.starts_with("count"))
            .and_then(|(_, v)| v["ci95"].as_f64())
            .expect("the count's noise is stated");
        assert!(ci95 > 5.0 * K, "{body}");
    }
    // Bounded sums are answered, with the noise stated.
    let (status, body) = attempt(
        &net,
        "dp",
        "SELECT AVG(year_of_birth) AS mean FROM person",
        json!({ "epsilon": 0.2, "bounds": { "year_of_birth": [1900, 2030] } }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mean = body["rows"][0][0].as_f64().unwrap();
    assert!((1930.0..2010.0).contains(&mean), "{mean}");
    assert!(
        body["privacy"]["noise"]["sum(person.year_of_birth)"]["scale_per_site"]
            .as_f64()
            .unwrap()
            > 0.0,
        "{body}"
    );
    net.net.shutdown().await;
}

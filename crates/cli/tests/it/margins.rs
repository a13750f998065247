//! Complementary suppression end to end: a total released earlier in a study must not let a
//! later table's withheld group be worked out, nor a total released later a withheld group of an
//! earlier table — under secure aggregation (withheld groups absent) and without it (shown
//! blank).

use serde_json::{Value, json};

use crate::support::{Net, network};

const K: i64 = 10;

/// (year of birth, people) in the pooled data, largest first.
async fn years(net: &Net) -> Vec<(i64, i64)> {
    let rows = net
        .pooled("SELECT year_of_birth, COUNT(*) FROM person GROUP BY 1 ORDER BY 2 DESC, 1")
        .await;
    rows.iter()
        .map(|r| (r[0].as_f64().unwrap() as i64, r[1].as_f64().unwrap() as i64))
        .collect()
}

async fn ask(net: &Net, sql: &str, secure: bool) -> Value {
    let (status, body) = net
        .research("exact", sql, json!({ "secure_aggregation": secure }))
        .await;
    assert_eq!(status, 200, "{sql}: {body}");
    body
}

/// Released (year, n) rows: blanks (hidden in place) left out.
fn released(body: &Value) -> Vec<(i64, i64)> {
    body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r[1].is_null())
        .map(|r| (r[0].as_i64().unwrap(), r[1].as_i64().unwrap()))
        .collect()
}

fn complementary(body: &Value) -> u64 {
    body["privacy"]["withheld_groups"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(why, _)| why.contains("complementary"))
        .filter_map(|(_, n)| n.as_u64())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn margins_released_earlier_or_later_never_give_a_withheld_group_away() {
    let net = network(3, 10_000).await;
    let years = years(&net).await;
    let small = years
        .iter()
        .find(|(_, n)| *n < K)
        .expect("the synthetic years include a small one")
        .0;
    let big: Vec<i64> = years.iter().take(8).map(|y| y.0).collect();
    for (secure, big) in [(true, &big[0..3]), (false, &big[3..6])] {
        // A total first, then the table: the total minus the released years would be the
        // small year, so one more year (the smallest) is withheld with it.
        let cohort = format!(
            "year_of_birth IN ({small}, {})",
            big.iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let total = ask(
            &net,
            &format!("SELECT COUNT(*) AS n FROM person WHERE {cohort}"),
            secure,
        )
        .await;
        let total = total["rows"][0][0].as_i64().expect("the total is released");
        let table = ask(
            &net,
            &format!("SELECT year_of_birth, COUNT(*) AS n FROM person WHERE {cohort} GROUP BY 1"),
            secure,
        )
        .await;
        let shown = released(&table);
        assert_eq!(shown.len(), 2, "secure {secure}: {table}");
        assert_eq!(complementary(&table), 1, "{table}");
        let smallest = big
            .iter()
            .min_by_key(|y| years.iter().find(|(x, _)| x == *y).unwrap().1)
            .unwrap();
        assert!(shown.iter().all(|(y, _)| y != smallest && *y != small));
        let hidden = total - shown.iter().map(|r| r.1).sum::<i64>();
        assert!(
            hidden >= K,
            "the withheld years hold {hidden} people: {table}"
        );
    }
    // The table first, then its total: the total would give the small year away, so it is
    // withheld; a total nothing was released under before is not.
    let cohort = format!("year_of_birth IN ({small}, {}, {})", big[6], big[7]);
    let table = ask(
        &net,
        &format!("SELECT year_of_birth, COUNT(*) AS n FROM person WHERE {cohort} GROUP BY 1"),
        true,
    )
    .await;
    assert_eq!(released(&table).len(), 2, "{table}");
    assert_eq!(complementary(&table), 0, "{table}");
    let total = ask(
        &net,
        &format!("SELECT COUNT(*) AS n FROM person WHERE {cohort}"),
        true,
    )
    .await;
    assert!(
        total["rows"].as_array().unwrap().is_empty(),
        "the total is withheld: {total}"
    );
    assert_eq!(complementary(&total), 1, "{total}");
    let other = ask(
        &net,
        &format!(
            "SELECT COUNT(*) AS n FROM person WHERE year_of_birth IN ({small}, {})",
            big[7]
        ),
        true,
    )
    .await;
    assert_eq!(other["rows"].as_array().unwrap().len(), 1, "{other}");
    net.net.shutdown().await;
}

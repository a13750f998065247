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

/// A cohort of one small year (fewer than k people) and the `big` largest years.
fn small_and_big_years(years: &[(i64, i64)], big: usize) -> String {
    let small = years.iter().find(|(_, n)| *n < K).unwrap().0;
    let big: Vec<String> = years.iter().take(big).map(|y| y.0.to_string()).collect();
    format!("year_of_birth IN ({small}, {})", big.join(", "))
}

/// (gender, year of birth) of a ROLLUP row; `None` where rolled up.
type Key = (Option<i64>, Option<i64>);

/// A ROLLUP is its groupings released together: every released number is the pooled one, no
/// withheld cell can be worked out from the subtotals and total beside it, and the rows come in
/// the order the query asks for (NULL, the rolled-up key, last).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollup_releases_totals_and_subtotals_that_give_no_withheld_cell_away() {
    let net = network(3, 10_000).await;
    let cohort = small_and_big_years(&years(&net).await, 5);
    let sql = format!(
        "SELECT gender_concept_id AS g, year_of_birth AS y, COUNT(*) AS n FROM person \
         WHERE {cohort} GROUP BY ROLLUP(gender_concept_id, year_of_birth) ORDER BY 1, 2"
    );
    let pooled = net.pooled(&sql).await;
    let int = |v: &Value| v.as_f64().map(|x| x as i64);
    let key = |r: &[Value]| (int(&r[0]), int(&r[1]));
    for secure in [true, false] {
        let body = ask(&net, &sql, secure).await;
        let rows: Vec<&Vec<Value>> = body["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_array().unwrap())
            .collect();
        let shown: Vec<(Key, i64)> = rows
            .iter()
            .filter(|r| !r[2].is_null())
            .map(|r| (key(r), r[2].as_i64().unwrap()))
            .collect();
        for (k, n) in &shown {
            assert!(*n >= K, "secure {secure}: a small count released: {body}");
            let truth = pooled.iter().find(|p| key(p) == *k).unwrap();
            assert_eq!(int(&truth[2]), Some(*n), "{k:?}: {body}");
        }
        // Each released margin minus its released cells is 0 or at least k people.
        let total = shown.iter().find(|(k, _)| *k == (None, None));
        let subtotals: Vec<_> = shown
            .iter()
            .filter(|(k, _)| k.0.is_some() && k.1.is_none())
            .collect();
        assert!(!subtotals.is_empty() && total.is_some(), "{body}");
        for (line, n) in &subtotals {
            let cells: i64 = shown
                .iter()
                .filter(|(k, _)| k.0 == line.0 && k.1.is_some())
                .map(|c| c.1)
                .sum();
            assert!(n - cells == 0 || n - cells >= K, "gender {line:?}: {body}");
        }
        let hidden = total.unwrap().1 - subtotals.iter().map(|s| s.1).sum::<i64>();
        assert!(hidden == 0 || hidden >= K, "{body}");
        // The small year made a gender's line give its cell away: another was withheld.
        assert!(complementary(&body) >= 1, "secure {secure}: {body}");
        // ORDER BY 1, 2 over the whole result: a gender's cells, then its subtotal; the total last.
        let keys: Vec<_> = rows.iter().map(|r| key(r)).collect();
        let mut sorted = keys.clone();
        sorted.sort_by_key(|(g, y)| (g.is_none(), *g, y.is_none(), *y));
        assert_eq!(keys, sorted, "{body}");
        assert_eq!(keys.last(), Some(&(None, None)));
        let notes = body["privacy"]["notes"].to_string();
        assert!(notes.contains("one per grouping"), "{notes}");
    }
    net.net.shutdown().await;
}

/// A total row written by hand (`UNION ALL`) is a margin like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_total_row_by_union_all_gives_no_withheld_cell_away() {
    let net = network(3, 10_000).await;
    let cohort = small_and_big_years(&years(&net).await, 4);
    let sql = format!(
        "SELECT year_of_birth AS y, COUNT(*) AS n FROM person WHERE {cohort} GROUP BY 1 \
         UNION ALL SELECT NULL, COUNT(*) FROM person WHERE {cohort} ORDER BY y"
    );
    let body = ask(&net, &sql, true).await;
    assert_eq!(body["columns"], json!(["y", "n"]), "{body}");
    let rows = body["rows"].as_array().unwrap();
    let total = rows.last().unwrap();
    assert!(total[0].is_null(), "the total row sorts last: {body}");
    let cells: i64 = rows[..rows.len() - 1]
        .iter()
        .map(|r| r[1].as_i64().unwrap())
        .sum();
    let hidden = total[1].as_i64().unwrap() - cells;
    assert!(hidden >= K, "the withheld years hold {hidden}: {body}");
    assert_eq!(complementary(&body), 1, "{body}");
    net.net.shutdown().await;
}

/// A ROLLUP over rare years: every (sex, year) group is too small, so that table is refused and
/// named in the notes, while the total of the rare years, large enough, is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollup_whose_finest_table_is_all_small_keeps_its_total() {
    let net = network(3, 10_000).await;
    let years = years(&net).await;
    let mut rare = Vec::new();
    let mut total = 0;
    for (y, n) in years.iter().rev().filter(|(_, n)| *n < K) {
        rare.push(y.to_string());
        total += n;
        if total >= 3 * K {
            break;
        }
    }
    assert!(total >= 3 * K, "the synthetic years have a rare tail");
    let sql = format!(
        "SELECT gender_concept_id AS g, year_of_birth AS y, COUNT(*) AS n FROM person \
         WHERE year_of_birth IN ({}) GROUP BY ROLLUP(gender_concept_id, year_of_birth)",
        rare.join(", ")
    );
    let body = ask(&net, &sql, true).await;
    let rows = body["rows"].as_array().unwrap();
    assert!(
        rows.iter().all(|r| r[1].is_null()),
        "no (sex, year) row: {body}"
    );
    let grand = rows.iter().find(|r| r[0].is_null()).expect("the total");
    assert_eq!(grand[2].as_i64(), Some(total), "{body}");
    let notes = body["privacy"]["notes"].to_string();
    assert!(
        notes.contains("the table by gender_concept_id, year_of_birth is not in this result"),
        "{notes}"
    );
    net.net.shutdown().await;
}

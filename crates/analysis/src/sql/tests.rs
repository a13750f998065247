//! Federated answers must equal the pooled answer; disclosive queries must be refused.
//!
//! Three synthetic sites with different profiles; the "pooled" context registers all three sites'
//! Parquet files as one table each, which is what a single hospital holding everyone would query.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use medfed_store::{SiteStore, StoreConfig};
use medfed_synth::{SynthConfig, synthesize};
use tokio::sync::OnceCell;

use super::*;
use medfed_privacy::{DisclosureRules, Protection};

struct Net {
    _dir: tempfile::TempDir,
    sites: Vec<SiteStore>,
    caches: Vec<PartialPlanCache>,
    pooled: SessionContext,
}

static NET: OnceCell<Net> = OnceCell::const_new();

async fn net() -> &'static Net {
    NET.get_or_init(|| async {
        let dir = tempfile::tempdir().unwrap();
        let mut sites = Vec::new();
        let pooled = SessionContext::new();
        let mut files: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for (i, profile) in ["general", "rural", "cardiac"].into_iter().enumerate() {
            let site_dir = dir.path().join(profile);
            let cfg = SynthConfig {
                patients: 1500 + 700 * i,
                seed: 11 + i as u64,
                profile: profile.into(),
                id_base: i as i32 * 10_000_000,
            };
            let summary = synthesize(&site_dir, &cfg, |_| {}).unwrap();
            for t in medfed_synth::TABLES {
                files.entry(t.into()).or_default().push(
                    summary
                        .omop_dir
                        .join(format!("{t}.parquet"))
                        .display()
                        .to_string(),
                );
            }
            sites.push(
                SiteStore::open(&StoreConfig::omop_dir(&summary.omop_dir))
                    .await
                    .unwrap(),
            );
        }
        for (t, paths) in files {
            let df = pooled
                .read_parquet(paths, ParquetReadOptions::default())
                .await
                .unwrap();
            pooled.register_table(t.as_str(), df.into_view()).unwrap();
        }
        let caches = sites.iter().map(|_| PartialPlanCache::default()).collect();
        Net {
            _dir: dir,
            sites,
            caches,
            pooled,
        }
    })
    .await
}

async fn federated(sql: &str) -> Result<Vec<RecordBatch>> {
    federated_rounded(sql, Default::default()).await
}

async fn federated_rounded(
    sql: &str,
    rounding: medfed_privacy::Rounding,
) -> Result<Vec<RecordBatch>> {
    let net = net().await;
    let q = FederatedSql::plan(&net.sites[0].context().state(), sql).await?;
    let mut partials = Vec::new();
    for (site, cache) in net.sites.iter().zip(&net.caches) {
        let (b, _) = run_site_partial(
            site.context(),
            Some(cache),
            q.site_sql(),
            &no_limits(),
            &no_limits().rules,
        )
        .await?;
        partials.push(q.conform(&b)?);
    }
    Ok(q.merge(partials, 1, rounding).await?.batches)
}

#[tokio::test]
async fn rounded_counts_feed_the_rates_computed_from_them_and_sums_stay_exact() {
    let sql = "SELECT gender_concept_id AS g, COUNT(*) AS n, \
               COUNT(*) * 100.0 / 7 AS rate, SUM(year_of_birth) AS s \
               FROM person GROUP BY gender_concept_id ORDER BY g";
    let exact = federated(sql).await.unwrap();
    let base = medfed_privacy::Rounding {
        base: 5,
        midpoint: false,
    };
    let rounded = federated_rounded(sql, base).await.unwrap();
    let ints = |b: &[RecordBatch], c: usize| -> Vec<i64> {
        b.iter()
            .flat_map(|b| {
                let a =
                    arrow::compute::cast(b.column(c), &arrow::datatypes::DataType::Int64).unwrap();
                a.as_primitive::<arrow::datatypes::Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect()
    };
    let floats = |b: &[RecordBatch], c: usize| -> Vec<f64> {
        b.iter()
            .flat_map(|b| {
                let a = arrow::compute::cast(b.column(c), &arrow::datatypes::DataType::Float64)
                    .unwrap();
                a.as_primitive::<arrow::datatypes::Float64Type>()
                    .values()
                    .to_vec()
            })
            .collect()
    };
    let want: Vec<i64> = ints(&exact, 1).into_iter().map(|n| base.apply(n)).collect();
    assert_eq!(ints(&rounded, 1), want);
    assert!(want.iter().all(|n| n % 5 == 0));
    let rates: Vec<f64> = want.iter().map(|n| *n as f64 * 100.0 / 7.0).collect();
    assert_eq!(
        floats(&rounded, 2),
        rates,
        "the rate uses the rounded count"
    );
    assert_eq!(ints(&rounded, 3), ints(&exact, 3), "sums are not counts");
}

/// A column of a site's partial, by name and type.
fn column<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> &'a T {
    b.column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap()
}

/// Rules that never suppress, so federated answers can be compared with pooled ones exactly.
fn no_limits() -> Protection {
    Protection {
        rules: DisclosureRules::none(),
        dp: None,
        secure_aggregation: false,
        model_step: false,
    }
}

/// Rows as strings, floats rounded to 9 significant digits, sorted (unless `ordered`).
fn rows(batches: &[RecordBatch], ordered: bool) -> Vec<Vec<String>> {
    let opts = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in batches {
        let cols: Vec<Arc<dyn Array>> = b
            .columns()
            .iter()
            .map(|c| {
                arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8)
                    .unwrap_or_else(|_| c.clone())
            })
            .collect();
        for r in 0..b.num_rows() {
            out.push(
                cols.iter()
                    .zip(b.columns())
                    .map(|(c, orig)| {
                        if orig.data_type().is_floating() && !orig.is_null(r) {
                            let v: f64 = ArrayFormatter::try_new(c.as_ref(), &opts)
                                .unwrap()
                                .value(r)
                                .to_string()
                                .parse()
                                .unwrap();
                            format!("{v:.9e}")
                        } else {
                            ArrayFormatter::try_new(c.as_ref(), &opts)
                                .unwrap()
                                .value(r)
                                .to_string()
                        }
                    })
                    .collect(),
            );
        }
    }
    if !ordered {
        out.sort();
    }
    out
}

async fn assert_matches_pooled(sql: &str) {
    let fed = federated(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}\n{e}"));
    let pooled = net()
        .await
        .pooled
        .sql(sql)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let ordered = sql.to_ascii_uppercase().contains("ORDER BY");
    let (f, p) = (rows(&fed, ordered), rows(&pooled, ordered));
    assert!(!p.is_empty(), "pooled answer empty: {sql}");
    assert_eq!(f, p, "federated != pooled for {sql}");
    // Again, now from the sites' plan caches.
    let cached = federated(sql).await.unwrap();
    assert_eq!(
        rows(&cached, ordered),
        p,
        "cached federated != pooled for {sql}"
    );
}

#[tokio::test]
async fn counts_sums_means_and_spreads_equal_the_pooled_answer() {
    for sql in [
        "SELECT COUNT(*) FROM person",
        "SELECT COUNT(*) AS n, COUNT(DISTINCT person_id) AS patients FROM condition_occurrence WHERE condition_concept_id = 201826",
        "SELECT SUM(value_as_number), AVG(value_as_number) FROM measurement WHERE measurement_concept_id = 3004410",
        "SELECT VAR_SAMP(value_as_number) AS v, STDDEV(value_as_number) AS sd, VAR_POP(value_as_number), STDDEV_POP(value_as_number) FROM measurement WHERE measurement_concept_id = 3004249",
        "SELECT AVG(2025 - year_of_birth) AS mean_age, COUNT(*) FILTER (WHERE gender_concept_id = 8532) AS women FROM person",
    ] {
        assert_matches_pooled(sql).await;
    }
}

#[tokio::test]
async fn group_by_having_order_and_joins_equal_the_pooled_answer() {
    for sql in [
        "SELECT gender_concept_id, COUNT(*) AS n FROM person GROUP BY gender_concept_id",
        "SELECT gender_concept_id, (year_of_birth / 10) * 10 AS decade, COUNT(*) AS n, AVG(year_of_birth) \
         FROM person GROUP BY 1, 2",
        "SELECT visit_concept_id, COUNT(*) AS n FROM visit_occurrence GROUP BY visit_concept_id HAVING COUNT(*) > 100 ORDER BY n DESC",
        "SELECT c.condition_concept_id, COUNT(DISTINCT p.person_id) AS patients, AVG(2025 - p.year_of_birth) AS age \
         FROM condition_occurrence c JOIN person p ON c.person_id = p.person_id \
         WHERE 2025 - p.year_of_birth >= 65 AND c.condition_concept_id IN (201826, 320128, 316139) \
         GROUP BY c.condition_concept_id ORDER BY c.condition_concept_id",
        "SELECT m.measurement_concept_id, STDDEV(m.value_as_number) AS sd FROM measurement m \
         JOIN person p ON m.person_id = p.person_id WHERE p.gender_concept_id = 8507 GROUP BY m.measurement_concept_id",
        "SELECT COUNT(*) FROM person WHERE person_id IN (SELECT person_id FROM death)",
        "SELECT AVG(n) FROM (SELECT person_id, COUNT(*) AS n FROM visit_occurrence GROUP BY person_id) v",
        "SELECT race_concept_id, SUM(CASE WHEN gender_concept_id = 8532 THEN 1 ELSE 0 END) * 1.0 / COUNT(*) AS share_female \
         FROM person GROUP BY race_concept_id ORDER BY 2 DESC LIMIT 2",
    ] {
        assert_matches_pooled(sql).await;
    }
}

async fn refusal(sql: &str) -> SqlError {
    match federated(sql).await {
        Ok(_) => panic!("accepted: {sql}"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn row_level_and_non_mergeable_queries_are_refused_with_reasons() {
    let cases: [(&str, &str); 12] = [
        ("SELECT * FROM person", "individual rows"),
        (
            "SELECT person_id, year_of_birth FROM person",
            "individual rows",
        ),
        (
            "SELECT person_id, COUNT(*) FROM condition_occurrence GROUP BY person_id",
            "identifies a patient",
        ),
        (
            "SELECT person_id % 1000 AS bucket, COUNT(*) FROM person GROUP BY 1",
            "identifies a patient",
        ),
        (
            "SELECT MAX(value_as_number) FROM measurement",
            "single patient's value",
        ),
        (
            "SELECT MIN(year_of_birth) FROM person",
            "single patient's value",
        ),
        (
            "SELECT MEDIAN(value_as_number) FROM measurement",
            "cannot be merged",
        ),
        (
            "SELECT COUNT(DISTINCT condition_concept_id) FROM condition_occurrence",
            "cannot be merged",
        ),
        ("SELECT SUM(person_id) FROM person", "identifies a patient"),
        (
            "SELECT SUM(y) FROM (SELECT year_of_birth AS y FROM person ORDER BY y LIMIT 1) t",
            "individual rows",
        ),
        (
            "SELECT COUNT(*) FROM person UNION ALL SELECT COUNT(*) FROM death",
            "UNION",
        ),
        (
            "SELECT DISTINCT year_of_birth FROM person",
            "individual rows",
        ),
    ];
    for (sql, why) in cases {
        let e = refusal(sql).await;
        assert!(e.is_refusal(), "{sql}: {e}");
        assert!(
            e.to_string().contains(why),
            "{sql}: expected `{why}` in: {e}"
        );
    }
}

/// Regression: an identifier renamed or computed in a sub-select is still an identifier.
#[tokio::test]
async fn identifiers_renamed_in_a_sub_select_are_still_refused() {
    for sql in [
        "SELECT SUM(pid) FROM (SELECT person_id AS pid FROM person) t",
        "SELECT AVG(x) FROM (SELECT CAST(person_id AS DOUBLE) * 1.0 AS x FROM person) t",
        "SELECT SUM(x) FROM (SELECT y AS x FROM (SELECT visit_occurrence_id + 0 AS y \
         FROM visit_occurrence) a) b",
        "SELECT b, COUNT(*) FROM (SELECT person_id % 1000 AS b FROM person) t GROUP BY b",
        "SELECT SUM(v.i) FROM (SELECT c.person_id AS i FROM condition_occurrence c JOIN person p \
         ON c.person_id = p.person_id) v",
    ] {
        let e = refusal(sql).await;
        assert!(e.to_string().contains("identifies a patient"), "{sql}: {e}");
    }
    // Values computed from other columns, or counts per person, stay allowed.
    for sql in [
        "SELECT AVG(age) FROM (SELECT 2025 - year_of_birth AS age FROM person) t",
        "SELECT AVG(n) FROM (SELECT person_id, COUNT(*) AS n FROM visit_occurrence GROUP BY person_id) v",
    ] {
        assert!(federated(sql).await.is_ok(), "{sql}");
    }
}

#[tokio::test]
async fn unknown_tables_and_statements_are_errors_not_crashes() {
    let e = refusal("SELECT COUNT(*) FROM patients").await;
    assert!(matches!(e, SqlError::Plan(_)), "{e}");
    assert!(e.to_string().contains("patients"), "{e}");
    let e = refusal("SELECT COUNT(nonexistent) FROM person").await;
    assert!(matches!(e, SqlError::Plan(_)), "{e}");
    for sql in [
        "DROP TABLE person",
        "CREATE TABLE t AS SELECT * FROM person",
        "COPY person TO '/tmp/x.csv'",
        "SET datafusion.execution.batch_size = 1",
    ] {
        assert!(federated(sql).await.is_err(), "{sql}");
    }
}

#[tokio::test]
async fn a_site_checks_the_hubs_sql_itself_and_caches_only_what_passed() {
    let site = net().await.sites[0].context();
    let cache = PartialPlanCache::default();
    let p = Protection::default();
    for sql in [
        "SELECT person_id, year_of_birth FROM person",
        "SELECT MAX(year_of_birth) AS p0 FROM person",
    ] {
        assert!(
            run_site_partial(site, Some(&cache), sql, &p, &p.rules)
                .await
                .is_err(),
            "site ran {sql}"
        );
    }
    assert!(cache.is_empty(), "refused plans must not be cached");
    let count = "SELECT COUNT(*) AS p0 FROM person";
    let first = run_site_partial(site, Some(&cache), count, &p, &p.rules)
        .await
        .unwrap();
    let again = run_site_partial(site, Some(&cache), count, &p, &p.rules)
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(cache.len(), 1);
    // now() is folded to a constant by the optimiser: such plans are not kept.
    let dated = "SELECT COUNT(*) AS p0 FROM person WHERE birth_datetime < now()";
    run_site_partial(site, Some(&cache), dated, &p, &p.rules)
        .await
        .unwrap();
    assert_eq!(cache.len(), 1);
}

#[tokio::test]
async fn a_site_suppresses_its_own_small_groups_and_counts_people_not_rows() {
    let site = net().await.sites[0].context();
    let p = Protection::default();
    // Conditions per concept: rows are events, the cell size is distinct people.
    let sql = "SELECT condition_concept_id AS k0, COUNT(*) AS p0 FROM condition_occurrence \
               GROUP BY condition_concept_id";
    let (b, report) = run_site_partial(site, None, sql, &p, &p.rules)
        .await
        .unwrap();
    let n = column::<arrow::array::Int64Array>(&b, "__n");
    let rows = column::<arrow::array::Int64Array>(&b, "p0");
    let status = column::<arrow::array::UInt8Array>(&b, "__cell");
    for i in 0..b.num_rows() {
        if status.value(i) == 0 {
            assert!(n.value(i) >= 10 && rows.value(i) >= n.value(i));
        } else {
            assert!(rows.is_null(i) && n.is_null(i), "a suppressed group leaks");
        }
    }
    assert_eq!(
        report.suppressed.values().sum::<usize>(),
        (0..b.num_rows()).filter(|&i| status.value(i) != 0).count()
    );
    // The same query under DP: noisy, thresholded, and it says what it spent.
    let dp = Protection {
        dp: Some(medfed_privacy::DpRelease {
            epsilon: 0.5,
            ..Default::default()
        }),
        ..Default::default()
    };
    let (b, report) = run_site_partial(site, None, sql, &dp, &dp.rules)
        .await
        .unwrap();
    assert_eq!(report.epsilon, 0.5);
    let tau = report.threshold.unwrap();
    let n = column::<arrow::array::Int64Array>(&b, "__n");
    assert!(n.iter().all(|v| v.unwrap() as f64 >= tau));
    // Sums need declared bounds under DP.
    let sum = "SELECT SUM(year_of_birth) AS p0 FROM person";
    let err = run_site_partial(site, None, sum, &dp, &dp.rules)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("bounds"), "{err}");
    let mut bounded = dp.clone();
    bounded
        .dp
        .as_mut()
        .unwrap()
        .bounds
        .insert("year_of_birth".into(), (1900.0, 2030.0));
    let (b, report) = run_site_partial(site, None, sum, &bounded, &bounded.rules)
        .await
        .unwrap();
    assert_eq!(b.num_rows(), 1);
    // ε = 0.5 over the sum and __n: a bare SUM is one Laplace of scale max(|1900|, |2030|)
    // / 0.25 = 8120 — what the report declares is exactly what was added.
    assert!(
        (report.scales["p0"] - 8120.0).abs() < 1e-6,
        "{:?}",
        report.scales
    );
    assert_eq!(
        report.distributions["p0"], "Laplace",
        "{:?}",
        report.distributions
    );
    // An AVG re-centres on its own released count: only Σ(x − m)'s noise is left (ε = 0.5
    // over the sum, the count and __n: 65 / (0.5 / 3) = 390).
    let avg = "SELECT SUM(year_of_birth) AS p0, COUNT(year_of_birth) AS p1 FROM person";
    let (_, report) = run_site_partial(site, None, avg, &bounded, &bounded.rules)
        .await
        .unwrap();
    assert!(
        (report.scales["p0"] - 390.0).abs() < 1e-9,
        "{:?}",
        report.scales
    );
}

#[tokio::test]
async fn sums_of_different_columns_plan_under_the_default_two_largest_dominance_rule() {
    let net = net().await;
    let sql = "SELECT SUM(year_of_birth) AS a, AVG(gender_concept_id * 1.5) AS b FROM person";
    let q = FederatedSql::plan(&net.sites[0].context().state(), sql)
        .await
        .unwrap();
    let (b, report) = run_site_partial(
        net.sites[0].context(),
        None,
        q.site_sql(),
        &Protection::default(),
        &DisclosureRules::default(),
    )
    .await
    .unwrap();
    assert_eq!(b.num_rows(), 1);
    assert!(report.suppressed.is_empty(), "{report:?}");
}

#[tokio::test]
async fn nested_groupings_of_one_cohort_share_it_and_other_filters_do_not() {
    let state = net().await.sites[0].context().state();
    let plan = |sql: &'static str| {
        let state = state.clone();
        async move { FederatedSql::plan(&state, sql).await.unwrap() }
    };
    let by_sex = plan(
        "SELECT gender_concept_id, COUNT(*) FROM person WHERE year_of_birth > 1950 \
         GROUP BY gender_concept_id",
    )
    .await;
    let by_sex_and_race = plan(
        "SELECT p.gender_concept_id, p.race_concept_id, COUNT(*) AS n FROM person p \
         WHERE p.year_of_birth > 1950 GROUP BY p.gender_concept_id, p.race_concept_id",
    )
    .await;
    let older = plan(
        "SELECT gender_concept_id, COUNT(*) FROM person WHERE year_of_birth > 1940 \
         GROUP BY gender_concept_id",
    )
    .await;
    assert_eq!(by_sex.cohort(), by_sex_and_race.cohort());
    assert_ne!(by_sex.cohort(), older.cohort());
    assert_eq!(by_sex.dims().len(), 1);
    assert_eq!(by_sex_and_race.dims().len(), 2);
    // The key names match across the two (aliases and qualifiers aside): a margin is found by
    // its group keys being a subset.
    assert!(
        by_sex
            .dims()
            .iter()
            .all(|d| by_sex_and_race.dims().contains(d))
    );
}

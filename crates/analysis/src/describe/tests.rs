//! Each description's queries, run on one table, against the same statistics computed directly.

use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::MemTable;
use datafusion::prelude::SessionContext;
use medfed_core::describe::Statistics;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::glm::pooled::run_local;

struct Data {
    x: Vec<Option<f64>>,
    y: Vec<f64>,
    g: Vec<&'static str>,
    s: Vec<i64>,
}

fn data() -> Data {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let n = 800;
    let mut d = Data {
        x: vec![],
        y: vec![],
        g: vec![],
        s: vec![],
    };
    for i in 0..n {
        // Large offset: the naive Σx² − n·x̄² formula would lose digits here.
        let x: f64 = 1e6 + rng.random_range(0.0..100.0);
        let s = i64::from(rng.random_bool(0.4));
        d.x.push((i % 23 != 0).then_some(x));
        d.y.push(0.3 * x + 5.0 * s as f64 + rng.random_range(-10.0..10.0));
        d.g.push(["a", "b", "c"][rng.random_range(0..3)]);
        d.s.push(s);
    }
    d
}

fn context(d: &Data) -> SessionContext {
    let schema = Arc::new(Schema::new(vec![
        Field::new("person_id", DataType::Int64, false),
        Field::new("x", DataType::Float64, true),
        Field::new("y", DataType::Float64, false),
        Field::new("g", DataType::Utf8, false),
        Field::new("s", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(0..d.y.len() as i64)),
            Arc::new(Float64Array::from(d.x.clone())),
            Arc::new(Float64Array::from(d.y.clone())),
            Arc::new(StringArray::from(d.g.clone())),
            Arc::new(Int64Array::from(d.s.clone())),
        ],
    )
    .unwrap();
    let ctx = SessionContext::new();
    let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
    ctx.register_table("obs", Arc::new(table)).unwrap();
    ctx
}

async fn run(ctx: &SessionContext, spec: DescribeSpec) -> Result<Description, DescribeError> {
    let runner = |sql: String| async move { run_local(ctx, &sql).await };
    describe(&ctx.state(), &spec, 10, runner)
        .await
        .map_err(|e| match e {
            Failure::Describe(e) => e,
            Failure::Run(e) => panic!("query failed: {e}"),
        })
}

fn spec(kind: Kind) -> DescribeSpec {
    DescribeSpec {
        table: "obs".into(),
        filter: None,
        kind,
    }
}

/// Two-pass mean and sample variance.
fn moments(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var)
}

#[tokio::test]
async fn summaries_equal_the_direct_computation_and_take_expressions() {
    let d = data();
    let ctx = context(&d);
    let vars = vec!["x".to_string(), "y - 0.3 * x".to_string()];
    let out = run(&ctx, spec(Kind::Summary { variables: vars }))
        .await
        .unwrap();
    assert_eq!(out.queries, 2);
    let Statistics::Summary { variables } = out.statistics else {
        panic!("not a summary")
    };
    let xs: Vec<f64> = d.x.iter().flatten().copied().collect();
    let (m, v) = moments(&xs);
    assert_eq!(variables[0].n as usize, xs.len());
    // Equal to rounding: summation order differs (relative 1e-14 at 1e6).
    assert!(
        (variables[0].mean - m).abs() / m < 1e-14,
        "{} vs {m}",
        variables[0].mean
    );
    assert!(
        (variables[0].variance - v).abs() / v < 1e-10,
        "{} vs {v}",
        variables[0].variance
    );
    let resid: Vec<f64> =
        d.x.iter()
            .zip(&d.y)
            .filter_map(|(x, y)| x.map(|x| y - 0.3 * x))
            .collect();
    let (m, v) = moments(&resid);
    assert!((variables[1].mean - m).abs() < 1e-8 && (variables[1].variance - v).abs() / v < 1e-9);
}

#[tokio::test]
async fn correlations_use_complete_cases() {
    let d = data();
    let ctx = context(&d);
    let vars = vec!["x".to_string(), "y".to_string(), "s".to_string()];
    let out = run(&ctx, spec(Kind::Correlation { variables: vars }))
        .await
        .unwrap();
    let Statistics::Correlation(c) = out.statistics else {
        panic!("not a correlation")
    };
    let rows: Vec<[f64; 3]> =
        d.x.iter()
            .zip(&d.y)
            .zip(&d.s)
            .filter_map(|((x, y), s)| x.map(|x| [x, *y, *s as f64]))
            .collect();
    assert_eq!(c.n as usize, rows.len());
    let col = |j: usize| rows.iter().map(|r| r[j]).collect::<Vec<_>>();
    let pearson = |a: &[f64], b: &[f64]| {
        let (ma, mb) = (moments(a).0, moments(b).0);
        let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
        let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
        let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
        cov / (va * vb).sqrt()
    };
    for i in 0..3 {
        for j in 0..3 {
            let want = pearson(&col(i), &col(j));
            assert!(
                (c.matrix[i][j] - want).abs() < 1e-10,
                "{i},{j}: {} vs {want}",
                c.matrix[i][j]
            );
        }
    }
    assert!(c.matrix[0][1] > 0.5, "y follows x");
}

#[tokio::test]
async fn histograms_count_per_declared_bin_and_give_quantiles() {
    let d = data();
    let ctx = context(&d);
    let kind = Kind::Histogram {
        variable: "x - 1000000".into(),
        low: 10.0,
        width: 20.0,
        bins: 4,
        quantiles: vec![0.5],
    };
    let out = run(&ctx, spec(kind)).await.unwrap();
    let Statistics::Histogram(h) = out.statistics else {
        panic!("not a histogram")
    };
    let xs: Vec<f64> = d.x.iter().flatten().map(|x| x - 1e6).collect();
    let count = |lo: f64, hi: f64| xs.iter().filter(|x| **x >= lo && **x < hi).count() as f64;
    assert_eq!(h.below, Some(count(f64::MIN, 10.0)));
    assert_eq!(h.above, Some(count(90.0, f64::MAX)));
    for (i, c) in h.counts.iter().enumerate() {
        let lo = 10.0 + 20.0 * i as f64;
        assert_eq!(*c, Some(count(lo, lo + 20.0)), "bin {i}");
    }
    // Uniform on [0, 100): the median is near 50.
    assert!((h.quantiles["0.5"] - 50.0).abs() < 5.0, "{:?}", h.quantiles);
}

#[tokio::test]
async fn two_way_tables_count_every_pair_and_test_independence() {
    let d = data();
    let ctx = context(&d);
    let kind = Kind::Table {
        rows: "g".into(),
        columns: "s".into(),
    };
    let out = run(&ctx, spec(kind)).await.unwrap();
    let Statistics::Table(t) = out.statistics else {
        panic!("not a table")
    };
    assert_eq!(t.row_levels, ["a", "b", "c"]);
    assert_eq!(t.column_levels, ["0", "1"]);
    for (i, g) in ["a", "b", "c"].iter().enumerate() {
        for s in 0..2 {
            let n =
                d.g.iter()
                    .zip(&d.s)
                    .filter(|(a, b)| *a == g && **b == s)
                    .count();
            assert_eq!(t.counts[i][s as usize], Some(n as f64));
        }
    }
    let x = t.chi_square.unwrap();
    assert_eq!(x.df, 2);
    // g and s are independent here.
    assert!(x.p > 0.001, "{x:?}");
}

#[tokio::test]
async fn identifiers_sub_queries_and_tiny_cohorts_are_refused() {
    let d = data();
    let ctx = context(&d);
    for variable in ["person_id", "person_id % 2 + x"] {
        let e = run(
            &ctx,
            spec(Kind::Summary {
                variables: vec![variable.into()],
            }),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, DescribeError::Disclosive(_)), "{variable}: {e}");
    }
    let e = run(
        &ctx,
        spec(Kind::Summary {
            variables: vec!["(SELECT MAX(x) FROM obs)".into()],
        }),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("sub-query"), "{e}");
    let tiny = DescribeSpec {
        filter: Some("x < 1000000.5".into()),
        ..spec(Kind::Summary {
            variables: vec!["y".into()],
        })
    };
    let e = run(&ctx, tiny).await.unwrap_err();
    assert!(e.to_string().contains("fewer than k"), "{e}");
}

/// A site lost between the two rounds of a summary: nothing is released.
#[tokio::test]
async fn a_site_lost_between_rounds_abandons_the_statistic() {
    use medfed_core::result::{SiteOutcome, SiteStatus};
    let d = data();
    let ctx = context(&d);
    let round = std::sync::atomic::AtomicUsize::new(0);
    let runner = |sql: String| {
        let (ctx, round) = (&ctx, &round);
        async move {
            let mut r = run_local(ctx, &sql).await?;
            let n = round.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let status = if n == 0 {
                SiteStatus::Answered
            } else {
                SiteStatus::Failed
            };
            r.sites.insert(
                "south".into(),
                SiteOutcome {
                    status,
                    elapsed_ms: 1.0,
                    message: None,
                },
            );
            Ok::<_, datafusion::error::DataFusionError>(r)
        }
    };
    let spec = spec(Kind::Summary {
        variables: vec!["y".into()],
    });
    let e = describe(&ctx.state(), &spec, 10, runner).await.unwrap_err();
    assert!(
        matches!(e, Failure::Describe(DescribeError::SitesChanged(_))),
        "{e:?}"
    );
}

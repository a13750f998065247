//! The SQL-sums fit against the dense pooled fit, and the refusals.

use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::MemTable;
use datafusion::prelude::SessionContext;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Poisson};

use super::pooled::{self, run_local};
use super::*;

/// 3 000 rows: age, sex, a 3-level text group, exposure time, weights, and three outcomes.
fn context() -> SessionContext {
    let n = 3000;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let noise = Normal::new(0.0, 2.0).unwrap();
    let (mut age, mut sex, mut grp, mut t, mut w) = (vec![], vec![], vec![], vec![], vec![]);
    let (mut yg, mut yb, mut yc, mut person) = (vec![], vec![], vec![], vec![]);
    for i in 0..n {
        let a: f64 = rng.random_range(20.0..90.0);
        let s = i64::from(rng.random_bool(0.5));
        let g = ["a", "b", "c"][rng.random_range(0..3)];
        let ge = match g {
            "a" => 0.0,
            "b" => 0.4,
            _ => -0.3,
        };
        let time: f64 = rng.random_range(0.5..3.0);
        let lin = -3.0 + 0.04 * a + 0.5 * s as f64 + ge + 0.01 * a * s as f64;
        yg.push(Some(lin * 10.0 + noise.sample(&mut rng)));
        yb.push(i64::from(rng.random_bool(1.0 / (1.0 + (-lin).exp()))));
        let rate = (lin * 0.5 + time.ln()).exp();
        yc.push(Poisson::new(rate).unwrap().sample(&mut rng) as i64);
        // Some missing ages: complete cases only.
        age.push(if i % 97 == 0 { None } else { Some(a) });
        sex.push(s);
        grp.push(g);
        t.push(time);
        w.push(rng.random_range(0.5..2.0));
        person.push(i as i64);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("person_id", DataType::Int64, false),
        Field::new("age", DataType::Float64, true),
        Field::new("sex", DataType::Int64, false),
        Field::new("grp", DataType::Utf8, false),
        Field::new("t", DataType::Float64, false),
        Field::new("w", DataType::Float64, false),
        Field::new("yg", DataType::Float64, true),
        Field::new("yb", DataType::Int64, false),
        Field::new("yc", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(person)),
            Arc::new(Float64Array::from(age)),
            Arc::new(Int64Array::from(sex)),
            Arc::new(StringArray::from(grp)),
            Arc::new(Float64Array::from(t)),
            Arc::new(Float64Array::from(w)),
            Arc::new(Float64Array::from(yg)),
            Arc::new(Int64Array::from(yb)),
            Arc::new(Int64Array::from(yc)),
        ],
    )
    .unwrap();
    let ctx = SessionContext::new();
    let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
    ctx.register_table("obs", Arc::new(table)).unwrap();
    ctx
}

fn spec(formula: &str, family: Family) -> GlmSpec {
    GlmSpec {
        table: "obs".into(),
        formula: formula.into(),
        family,
        weights: None,
        filter: None,
    }
}

/// No kernel: every iteration as an aggregate query.
type NoKernel<E> = fn(Step, KernelTask) -> std::future::Ready<Result<KernelRound, E>>;

async fn fitted(ctx: &SessionContext, spec: &GlmSpec) -> Result<GlmFit, GlmError> {
    let run = |_: Step, sql: String| async move { run_local(ctx, &sql).await };
    fit(
        &ctx.state(),
        spec,
        &Default::default(),
        run,
        None::<NoKernel<_>>,
    )
    .await
    .map_err(|e| match e {
        FitError::Glm(e) => e,
        FitError::Run(e) => panic!("query failed: {e}"),
    })
}

/// The same fit with every iteration a GLM kernel over `ctx` as one site.
async fn fitted_by_kernel(ctx: &SessionContext, spec: &GlmSpec) -> Result<GlmFit, GlmError> {
    let run = |_: Step, sql: String| async move { run_local(ctx, &sql).await };
    let kernel = |_: Step, task: KernelTask| async move {
        let rows = crate::kernel::prepare(&ctx.state(), &task.rows)
            .await
            .unwrap();
        let answer = crate::kernel::run(ctx, &rows, &task.step, 10, None)
            .await
            .unwrap();
        let mut round = KernelRound::default();
        round.answers.insert("one".into(), answer);
        Ok(round)
    };
    // The summary's site set is empty (run_local names no sites): so is the kernel round's.
    fit(&ctx.state(), spec, &Default::default(), run, Some(kernel))
        .await
        .map_err(|e| match e {
            FitError::Glm(e) => e,
            FitError::Run(e) => panic!("query failed: {e}"),
        })
}

fn assert_matches_pooled(f: &GlmFit, p: &pooled::PooledFit) {
    assert_eq!(f.n as usize, p.n);
    let names: Vec<&str> = f.coefficients.0.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        p.names.iter().map(String::as_str).collect::<Vec<_>>()
    );
    for ((name, c), (b, se)) in f
        .coefficients
        .0
        .iter()
        .zip(p.beta.iter().zip(&p.std_errors))
    {
        assert!(
            (c.estimate - b).abs() <= 1e-8 * b.abs().max(1.0),
            "{name}: {} vs {b}",
            c.estimate
        );
        assert!(
            (c.std_error - se).abs() <= 1e-8 * se.max(1.0),
            "{name} se: {} vs {se}",
            c.std_error
        );
    }
    assert!((f.deviance - p.deviance).abs() <= 1e-8 * p.deviance.max(1.0));
}

#[tokio::test]
async fn all_three_families_equal_the_pooled_fit() {
    let ctx = context();
    for (formula, family, weights) in [
        ("yg ~ age * sex + grp", Family::Gaussian, None),
        ("yg ~ age + factor(sex) + grp", Family::Gaussian, Some("w")),
        ("yb ~ age * sex + grp", Family::Binomial, None),
        ("yb ~ age + grp", Family::Binomial, Some("w")),
        (
            "yc ~ age + sex + grp + offset(log(t))",
            Family::Poisson,
            None,
        ),
        ("yc ~ 0 + age + grp", Family::Poisson, Some("w")),
    ] {
        let s = GlmSpec {
            weights: weights.map(String::from),
            ..spec(formula, family)
        };
        let f = fitted(&ctx, &s).await.unwrap();
        let p = pooled::fit(&ctx, &s).await.map_err(|_| "pooled").unwrap();
        assert!(f.converged, "{formula}");
        assert_matches_pooled(&f, &p);
        assert_eq!(f.df_residual, f.n - f.coefficients.0.len() as u64);
        // The native kernel computes the same sums as the SQL.
        let k = fitted_by_kernel(&ctx, &s).await.unwrap();
        assert_matches_pooled(&k, &p);
        assert!((k.aic - f.aic).abs() < 1e-8 * f.aic.abs(), "{formula}");
        assert_eq!(k.null_deviance.is_some(), f.null_deviance.is_some());
    }
}

#[tokio::test]
async fn names_and_reference_levels_follow_r() {
    let ctx = context();
    let f = fitted(
        &ctx,
        &spec("yb ~ age * factor(sex) + grp", Family::Binomial),
    )
    .await
    .unwrap();
    let names: Vec<&str> = f.coefficients.0.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "(Intercept)",
            "age",
            "factor(sex)1",
            "grpb",
            "grpc",
            "age:factor(sex)1"
        ]
    );
    assert_eq!(f.reference_levels["grp"], "a");
    assert_eq!(f.reference_levels["factor(sex)"], "0");
    assert_eq!(f.statistic, "z");
    // The data were made with age 0.04 and sex 0.5 on the logit scale.
    let age = f.coefficients.get("age").unwrap();
    assert!(age.ci95[0] < 0.04 && 0.04 < age.ci95[1], "{age:?}");
    assert!(f.null_deviance.unwrap() > f.deviance);
    // Binomial AIC is deviance + 2p for 0/1 outcomes.
    assert!((f.aic - (f.deviance + 12.0)).abs() < 1e-9);
    assert!(f.iterations >= 3 && f.iterations < 15, "{}", f.iterations);
}

#[tokio::test]
async fn gaussian_reports_t_and_the_dispersion() {
    let ctx = context();
    let f = fitted(&ctx, &spec("yg ~ age * sex + grp", Family::Gaussian))
        .await
        .unwrap();
    assert_eq!(f.statistic, "t");
    assert_eq!(f.iterations, 2);
    // σ = 2 in the simulation.
    assert!((f.dispersion.sqrt() - 2.0).abs() < 0.15, "{}", f.dispersion);
    let n = f.n as f64;
    // R: n(ln(2π·dev/n) + 1) + 2, plus 2 per coefficient (6 here).
    let aic = n * ((2.0 * std::f64::consts::PI * f.deviance / n).ln() + 1.0) + 2.0 + 12.0;
    assert!((f.aic - aic).abs() < 1e-9);
}

#[tokio::test]
async fn refusals_say_why() {
    let ctx = context();
    let cases = [
        (
            spec("yb ~ person_id", Family::Binomial),
            "identifies a person",
        ),
        (spec("yg ~ age + sex + grp", Family::Binomial), "coded 0/1"),
        (
            GlmSpec {
                filter: Some("age > 89.95".into()),
                ..spec("yg ~ age", Family::Gaussian)
            },
            "fewer than k",
        ),
        (
            GlmSpec {
                filter: Some("age < 20.6".into()),
                ..spec("yg ~ age * grp * sex", Family::Gaussian)
            },
            "coefficients are more than 37%",
        ),
        (
            GlmSpec {
                filter: Some("age < 20.3".into()),
                ..spec("yg ~ age + sex + t", Family::Gaussian)
            },
            "residual degrees of freedom",
        ),
        (
            GlmSpec {
                filter: Some("grp = 'a'".into()),
                ..spec("yg ~ grp", Family::Gaussian)
            },
            "1 level(s)",
        ),
        (spec("yg ~ nosuch", Family::Gaussian), "nosuch"),
        (spec("yg ~ age + age2", Family::Gaussian), "age2"),
        (
            GlmSpec {
                filter: Some("1=1; DROP TABLE obs".into()),
                ..spec("yg ~ age", Family::Gaussian)
            },
            "no ';'",
        ),
        (
            spec("yg ~ I(age)", Family::Gaussian),
            "I() is not supported",
        ),
    ];
    for (s, says) in cases {
        let e = fitted(&ctx, &s).await.unwrap_err().to_string();
        assert!(e.contains(says), "{}: {e}", s.formula);
    }
}

#[tokio::test]
async fn a_collinear_design_is_refused_not_fitted() {
    let ctx = context();
    ctx.sql("CREATE VIEW obs2 AS SELECT *, 2.0 * sex AS sex2 FROM obs")
        .await
        .unwrap();
    let s = GlmSpec {
        table: "obs2".into(),
        ..spec("yg ~ sex + sex2", Family::Gaussian)
    };
    let e = fitted(&ctx, &s).await.unwrap_err().to_string();
    assert!(e.contains("singular"), "{e}");
}

#[test]
fn iteration_sql_keeps_covariates_visible_to_the_checker() {
    let f = parse_formula("y ~ a + factor(g)").unwrap();
    let levels = vec![
        Level {
            sql: "1".into(),
            label: "1".into(),
        },
        Level {
            sql: "2".into(),
            label: "2".into(),
        },
    ];
    let kind = |v: &Var| {
        if v.factor {
            Kind::Categorical(levels.clone())
        } else {
            Kind::Numeric
        }
    };
    let d = Design::new(&f, "t", None, None, &kind);
    let names: Vec<&str> = d.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["(Intercept)", "a", "factor(g)2"]);
    let sql = d.iteration_sql(Family::Binomial, &[0.5, -1e-7, 2.0], false);
    assert!(
        sql.contains("SUM(__w * (CAST(a AS DOUBLE))) AS h_0_1"),
        "{sql}"
    );
    assert!(
        sql.contains("CASE WHEN g = 2 THEN 1.0 ELSE 0.0 END"),
        "{sql}"
    );
    assert!(sql.contains("(-1e-7) * (CAST(a AS DOUBLE))"), "{sql}");
}

/// A site that stops answering mid-IRLS ends the fit with a clear error: the later iterations
/// would otherwise be over other rows than the first, and the estimate would be neither
/// population's.
#[tokio::test]
async fn a_site_lost_mid_fit_abandons_it() {
    use medfed_core::result::{SiteOutcome, SiteStatus};
    let ctx = context();
    let outcome = |status| SiteOutcome {
        status,
        elapsed_ms: 1.0,
        message: None,
    };
    let run = |step: Step, sql: String| {
        let ctx = &ctx;
        async move {
            let mut r = run_local(ctx, &sql).await?;
            let late = matches!(step, Step::Iteration(i) if i >= 2);
            r.sites
                .insert("north".into(), outcome(SiteStatus::Answered));
            let south = if late {
                SiteStatus::Failed
            } else {
                SiteStatus::Answered
            };
            r.sites.insert("south".into(), outcome(south));
            Ok::<_, datafusion::error::DataFusionError>(r)
        }
    };
    let e = fit(
        &ctx.state(),
        &spec("yb ~ age + sex", Family::Binomial),
        &Default::default(),
        run,
        None::<NoKernel<_>>,
    )
    .await
    .map(|_| ())
    .unwrap_err();
    let FitError::Glm(GlmError::SitesChanged(why)) = e else {
        panic!("{e:?}")
    };
    assert!(
        why.contains("south") && why.contains("iteration 2"),
        "{why}"
    );
}

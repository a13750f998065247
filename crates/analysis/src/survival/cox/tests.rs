use medfed_core::kernel::{CoxSums, Ties};

use super::{CoxRows, parse_surv, pooled};

/// One stratum's time, event and covariate columns.
type Stratum = (Vec<f64>, Vec<f64>, Vec<Vec<f64>>);

/// Two strata with tied times.
fn strata() -> Vec<Stratum> {
    vec![
        (
            vec![5., 6., 6., 2., 4., 4., 8., 3., 7., 9., 1., 5., 6., 10.],
            vec![1., 1., 0., 1., 1., 1., 0., 1., 1., 0., 1., 1., 1., 0.],
            vec![
                vec![
                    0.5, 1.2, -0.3, 2.0, 0.8, 1.5, -1.0, 0.9, -0.2, -0.8, 1.8, 0.1, 0.4, -1.2,
                ],
                vec![0., 1., 0., 1., 1., 0., 0., 1., 0., 1., 1., 0., 1., 0.],
            ],
        ),
        (
            vec![3., 3., 3., 7., 2., 9., 4., 6., 1., 8., 5.],
            vec![1., 1., 0., 1., 1., 0., 1., 0., 1., 1., 1.],
            vec![
                vec![1.1, -0.4, 0.3, -0.9, 1.6, -1.4, 0.7, 0.0, 2.2, -0.6, 0.2],
                vec![1., 0., 1., 0., 1., 0., 0., 1., 1., 0., 1.],
            ],
        ),
    ]
}

fn rows() -> Vec<CoxRows> {
    strata()
        .iter()
        .map(|(t, e, x)| CoxRows::new(t, e, x))
        .collect()
}

/// Efron's partial log-likelihood straight from its definition: every event time, its risk
/// set by a scan of all rows, no centring or running sums.
fn naive_loglik(t: &[f64], e: &[f64], x: &[Vec<f64>], beta: &[f64], ties: Ties) -> f64 {
    let eta = |i: usize| x.iter().zip(beta).map(|(c, b)| c[i] * b).sum::<f64>();
    let mut times: Vec<f64> = (0..t.len())
        .filter(|&i| e[i] == 1.0)
        .map(|i| t[i])
        .collect();
    times.sort_by(f64::total_cmp);
    times.dedup();
    let mut ll = 0.0;
    for &s in &times {
        let dead: Vec<usize> = (0..t.len()).filter(|&i| t[i] == s && e[i] == 1.0).collect();
        let risk: f64 = (0..t.len())
            .filter(|&i| t[i] >= s)
            .map(|i| eta(i).exp())
            .sum();
        let tied: f64 = dead.iter().map(|&i| eta(i).exp()).sum();
        let d = dead.len() as f64;
        for (l, &i) in dead.iter().enumerate() {
            let a = if ties == Ties::Efron {
                l as f64 / d
            } else {
                0.0
            };
            ll += eta(i) - (risk - a * tied).ln();
        }
    }
    ll
}

fn total(beta: &[f64], ties: Ties) -> CoxSums {
    let mut out = CoxSums::default();
    for r in rows() {
        out.add(&r.sums(beta, ties));
    }
    out
}

#[test]
fn the_loglikelihood_equals_its_definition_and_centring_changes_nothing() {
    for ties in [Ties::Efron, Ties::Breslow] {
        for beta in [[0.0, 0.0], [0.4, -0.7], [-1.3, 2.1]] {
            let naive: f64 = strata()
                .iter()
                .map(|(t, e, x)| naive_loglik(t, e, x, &beta, ties))
                .sum();
            let fast = total(&beta, ties).loglik;
            assert!(
                (naive - fast).abs() < 1e-12,
                "{ties:?} {beta:?}: {naive} vs {fast}"
            );
        }
    }
}

#[test]
fn score_and_information_are_the_derivatives_of_the_loglikelihood() {
    let h = 1e-5;
    for ties in [Ties::Efron, Ties::Breslow] {
        let beta = [0.3, -0.5];
        let at = total(&beta, ties);
        for j in 0..2 {
            let mut up = beta;
            let mut down = beta;
            up[j] += h;
            down[j] -= h;
            let (su, sd) = (total(&up, ties), total(&down, ties));
            let score = (su.loglik - sd.loglik) / (2.0 * h);
            assert!(
                (score - at.score[j]).abs() < 1e-7,
                "{ties:?} U{j}: {score} vs {}",
                at.score[j]
            );
            for k in 0..2 {
                let info = -(su.score[k] - sd.score[k]) / (2.0 * h);
                let got = at.information[j * 2 + k];
                assert!(
                    (info - got).abs() < 1e-6,
                    "{ties:?} I{j}{k}: {info} vs {got}"
                );
            }
        }
        assert_eq!((at.n, at.events), (25, 18));
    }
}

#[test]
fn stratified_fit_matches_an_independent_implementation() {
    // lifelines 0.30.3 `CoxPHFitter().fit(df, "t", "e", strata=["s"])` (Efron) on these rows:
    // coefficients, standard errors, log-likelihood −20.929339186643226.
    let (beta, se, _) = pooled(&rows(), Ties::Efron, 2).unwrap();
    let expect = [
        (2.188799799535115, 0.514081651293896),
        (-0.354748718846151, 0.623814380112815),
    ];
    for j in 0..2 {
        assert!(
            (beta[j] - expect[j].0).abs() < 1e-6,
            "β{j} {} vs {}",
            beta[j],
            expect[j].0
        );
        assert!(
            (se[j] - expect[j].1).abs() < 1e-6,
            "se{j} {} vs {}",
            se[j],
            expect[j].1
        );
    }
    let at = total(&beta, Ties::Efron).loglik;
    assert!((at - -20.929339186643226).abs() < 1e-9, "{at}");
}

#[test]
fn the_formula_needs_surv_on_the_left() {
    assert_eq!(
        parse_surv("Surv(fu, died) ~ x + factor(g)").unwrap(),
        ("fu".into(), "died".into(), "x + factor(g)".into())
    );
    for bad in [
        "fu ~ x",
        "Surv(fu) ~ x",
        "Surv(fu, died; DROP) ~ x",
        "Surv(fu, died)",
    ] {
        assert!(parse_surv(bad).is_err(), "{bad}");
    }
}

/// A network of two "sites" in one process: each stratum of [`strata`] as a table `c`.
async fn site_contexts() -> Vec<datafusion::prelude::SessionContext> {
    let mut out = Vec::new();
    for (t, e, x) in strata() {
        let ctx = datafusion::prelude::SessionContext::new();
        let rows: Vec<String> = (0..t.len())
            .map(|i| format!("({:?}, {:?}, {:?}, {:?})", t[i], e[i], x[0][i], x[1][i]))
            .collect();
        ctx.sql(&format!(
            "CREATE TABLE c (t DOUBLE, e DOUBLE, x1 DOUBLE, x2 DOUBLE) AS VALUES {}",
            rows.join(", ")
        ))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
        out.push(ctx);
    }
    out
}

/// Runs `spec` over the in-process sites; `drop_after` loses site b from that iteration on.
async fn fit_in_process(
    spec: &super::CoxSpec,
    drop_after: Option<u32>,
) -> Result<medfed_core::survival::CoxFit, super::FitError<String>> {
    use medfed_core::result::{SiteOutcome, SiteStatus};
    let sites = site_contexts().await;
    let state = sites[0].state();
    let sites = &sites;
    // Planning queries (the outcome's coding) answered by site a's rows alone.
    let run_sql = |_, sql: String| async move {
        crate::glm::pooled::run_local(&sites[0], &sql)
            .await
            .map_err(|e| e.to_string())
    };
    let run_kernel = |iteration: u32, task: medfed_core::kernel::KernelTask| async move {
        let mut round = crate::kernel::KernelRound::default();
        for (name, ctx) in ["a", "b"].iter().zip(sites) {
            let mut outcome = SiteOutcome {
                status: SiteStatus::Answered,
                elapsed_ms: 0.0,
                message: None,
            };
            if *name == "b" && drop_after.is_some_and(|d| iteration >= d) {
                outcome.status = SiteStatus::Failed;
            } else {
                let rows = crate::kernel::prepare(&ctx.state(), &task.rows)
                    .await
                    .unwrap();
                let answer = crate::kernel::run(ctx, &rows, &task.step, 3, None)
                    .await
                    .unwrap();
                round.answers.insert(name.to_string(), answer);
            }
            round.sites.insert(name.to_string(), outcome);
        }
        Ok(round)
    };
    super::fit(&state, spec, run_sql, run_kernel).await
}

#[tokio::test]
async fn the_federated_fit_equals_the_pooled_one_and_a_site_lost_mid_fit_abandons_it() {
    let spec = super::CoxSpec {
        table: "c".into(),
        formula: "Surv(t, e) ~ x1 + x2".into(),
        ties: Ties::Efron,
        filter: None,
    };
    let fit = fit_in_process(&spec, None).await.unwrap();
    let (beta, se, _) = pooled(&rows(), Ties::Efron, 2).unwrap();
    for (j, (_, c)) in fit.coefficients.0.iter().enumerate() {
        assert!((c.estimate - beta[j]).abs() < 1e-10 && (c.std_error - se[j]).abs() < 1e-10);
    }
    assert!(fit.converged && fit.loglik > fit.loglik_null);
    assert_eq!((fit.n, fit.events), (25, 18));
    match fit_in_process(&spec, Some(2)).await {
        Err(super::FitError::Glm(super::GlmError::SitesChanged(m))) => {
            assert!(m.contains("iteration 2"), "{m}")
        }
        other => panic!("{:?}", other.map(|f| f.coefficients)),
    }
}

#[tokio::test]
async fn kernels_other_than_training_are_refused_in_dp_studies() {
    let sites = site_contexts().await;
    let task = medfed_core::kernel::KernelTask {
        rows: medfed_core::kernel::RowSource {
            table: "c".into(),
            columns: vec!["t".into(), "e".into(), "x1".into()],
            filter: None,
        },
        step: medfed_core::kernel::KernelStep::Cox {
            beta: vec![0.0],
            ties: Ties::Efron,
        },
    };
    let rows = crate::kernel::prepare(&sites[0].state(), &task.rows)
        .await
        .unwrap();
    let dp = medfed_privacy::DpRelease::default();
    let e = crate::kernel::run(&sites[0], &rows, &task.step, 3, Some(&dp))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("differentially private"), "{e}");
    // A row source reaching another table, or picking rows, is refused before it runs.
    for bad in ["x1 + (SELECT MAX(x2) FROM c)", "x1 FROM c LIMIT 1 --"] {
        let rows = medfed_core::kernel::RowSource {
            columns: vec!["t".into(), "e".into(), bad.into()],
            ..task.rows.clone()
        };
        assert!(
            crate::kernel::prepare(&sites[0].state(), &rows)
                .await
                .is_err(),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn a_fits_rows_are_read_once_and_kept_for_its_iterations() {
    let sites = site_contexts().await;
    let ctx = &sites[1];
    let source = medfed_core::kernel::RowSource {
        table: "c".into(),
        columns: vec!["t".into(), "e".into(), "x1".into()],
        filter: None,
    };
    let rows = crate::kernel::prepare(&ctx.state(), &source).await.unwrap();
    let cache = crate::kernel::RowCache::default();
    let first = cache.rows(ctx, &rows).await.unwrap();
    assert_eq!(first[0].len(), 11);
    ctx.sql("INSERT INTO c VALUES (1.0, 1.0, 0.0, 0.0)")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    // Within the fit the rows stay what they were; a fresh read sees the new one.
    assert!(std::sync::Arc::ptr_eq(
        &first,
        &cache.rows(ctx, &rows).await.unwrap()
    ));
    let fresh = crate::kernel::RowCache::default();
    assert_eq!(fresh.rows(ctx, &rows).await.unwrap()[0].len(), 12);
}

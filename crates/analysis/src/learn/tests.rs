use datafusion::prelude::SessionContext;
use medfed_core::kernel::KernelTask;
use medfed_core::learn::TrainedModel;
use medfed_core::result::{SiteOutcome, SiteStatus};
use rand::{Rng, SeedableRng};

use super::{Architecture, FedAvgSpec, RoundRequest, pooled};
use crate::glm::{FitError, GlmError};
use crate::kernel::KernelRound;

const SITES: [&str; 3] = ["a", "b", "c"];

/// Rows of site `s`: a ~ N-ish(shifted by site), b ∈ {0,1}, g ∈ {x,y}, y ~ logit⁻¹(…).
fn rows(s: usize) -> Vec<(f64, f64, f64, &'static str)> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7 + s as u64);
    (0..200 + 100 * s)
        .map(|_| {
            let a: f64 = rng.random_range(-2.0..2.0) + 0.5 * s as f64;
            let b = f64::from(u8::from(rng.random_bool(0.3 + 0.2 * s as f64)));
            let g = if rng.random_bool(0.5) { "x" } else { "y" };
            let lin = -0.5 + 1.2 * a - 0.8 * b + if g == "y" { 0.6 } else { 0.0 };
            let y = f64::from(u8::from(rng.random_bool(1.0 / (1.0 + (-lin).exp()))));
            (y, a, b, g)
        })
        .collect()
}

async fn context(rows: &[(f64, f64, f64, &str)]) -> SessionContext {
    let ctx = SessionContext::new();
    let values: Vec<String> = rows
        .iter()
        .map(|(y, a, b, g)| format!("({y:?}, {a:?}, {b:?}, '{g}')"))
        .collect();
    ctx.sql(&format!(
        "CREATE TABLE t (y DOUBLE, a DOUBLE, b DOUBLE, g VARCHAR) AS VALUES {}",
        values.join(", ")
    ))
    .await
    .unwrap()
    .collect()
    .await
    .unwrap();
    ctx
}

type Trained = Result<(TrainedModel, Vec<(f64, f64, f64, &'static str)>), FitError<String>>;

/// Trains `spec` over three in-process sites; `down(round, site)` makes a site fail a round.
async fn train(spec: &FedAvgSpec, down: impl Fn(u32, &str) -> bool) -> Trained {
    train_with(spec, down, None).await
}

/// [`train`], as a DP training run spending `dp` when given (no planning query may run then).
async fn train_with(
    spec: &FedAvgSpec,
    down: impl Fn(u32, &str) -> bool,
    dp: Option<medfed_privacy::DpRelease>,
) -> Trained {
    let per_site: Vec<_> = (0..3).map(rows).collect();
    let all: Vec<_> = per_site.iter().flatten().cloned().collect();
    let pooled_ctx = context(&all).await;
    let mut sites = Vec::new();
    for r in &per_site {
        sites.push(context(r).await);
    }
    let state = pooled_ctx.state();
    // The network's merged answers to the planning queries equal the pooled ones.
    let pooled_ctx = &pooled_ctx;
    let private = dp.is_some();
    let run_sql = |_, sql: String| async move {
        assert!(!private, "a DP run asked a planning query: {sql}");
        crate::glm::pooled::run_local(pooled_ctx, &sql)
            .await
            .map_err(|e| e.to_string())
    };
    let (sites, down, dp) = (&sites, &down, dp.as_ref());
    let run_round = |r: RoundRequest| async move {
        let mut round = KernelRound::default();
        for (name, ctx) in SITES.iter().zip(sites) {
            if !r.sites.iter().any(|s| s == name) {
                continue;
            }
            let mut outcome = SiteOutcome {
                status: SiteStatus::Answered,
                elapsed_ms: 0.0,
                message: None,
            };
            if down(r.round, name) {
                outcome.status = SiteStatus::Failed;
            } else {
                let task: &KernelTask = &r.task;
                let rows = crate::kernel::prepare(&ctx.state(), &task.rows)
                    .await
                    .unwrap();
                let answer = crate::kernel::run(ctx, &rows, &task.step, 5, dp)
                    .await
                    .map_err(|e| e.to_string())?;
                round.answers.insert(name.to_string(), answer);
            }
            round.sites.insert(name.to_string(), outcome);
        }
        Ok(round)
    };
    let names: Vec<String> = SITES.iter().map(|s| s.to_string()).collect();
    let run = dp.map(|_| "run-1");
    let model = super::train(&state, spec, 5, &names, run, run_sql, run_round).await?;
    Ok((model, all))
}

fn spec(model: Architecture) -> FedAvgSpec {
    FedAvgSpec {
        table: "t".into(),
        formula: "y ~ a + b + g".into(),
        model,
        rounds: 300,
        local_epochs: 1,
        batch_size: 10_000,
        learning_rate: 2.0,
        l2: 0.01,
        proximal_mu: 0.0,
        fraction: 1.0,
        min_sites: 2,
        tolerance: 1e-9,
        seed: 1,
        clip: None,
        bounds: Default::default(),
        filter: None,
    }
}

/// The pooled optimum on the model's own standardisation.
fn optimum(model: &TrainedModel, all: &[(f64, f64, f64, &str)], l2: f64) -> Vec<f64> {
    let raw = [
        all.iter().map(|r| r.1).collect::<Vec<_>>(),
        all.iter().map(|r| r.2).collect(),
        all.iter()
            .map(|r| f64::from(u8::from(r.3 == "y")))
            .collect(),
    ];
    let x: Vec<Vec<f64>> = raw
        .iter()
        .zip(&model.scaling)
        .map(|(c, [m, s])| c.iter().map(|v| (v - m) / s).collect())
        .collect();
    let y: Vec<f64> = all.iter().map(|r| r.0).collect();
    pooled::logistic_optimum(&y, &x, l2).unwrap()
}

#[tokio::test]
async fn full_batch_fedavg_reaches_the_pooled_optimum() {
    let s = spec(Architecture::Logistic);
    let (model, all) = train(&s, |_, _| false).await.unwrap();
    assert_eq!(model.features, ["a", "b", "gy"]);
    assert!(model.converged, "{:?}", model.history.last());
    let best = optimum(&model, &all, s.l2);
    for (w, b) in model.weights.iter().zip(&best) {
        assert!((w - b).abs() < 1e-6, "{:?} vs {best:?}", model.weights);
    }
    // Coefficients on the original scale: the simulated effects' signs and rough sizes.
    let c = model.coefficients.as_ref().unwrap();
    assert!(c["a"] > 0.8 && c["b"] < -0.3 && c["gy"] > 0.2, "{c:?}");
    let losses: Vec<f64> = model.history.iter().filter_map(|r| r.loss).collect();
    assert!(losses.last() < losses.first());
}

#[tokio::test]
async fn fedprox_with_sampled_sites_and_a_dropout_stays_near_the_optimum() {
    let s = FedAvgSpec {
        rounds: 200,
        local_epochs: 2,
        batch_size: 16,
        learning_rate: 0.05,
        proximal_mu: 0.1,
        fraction: 0.6,
        tolerance: 1e-4,
        ..spec(Architecture::Logistic)
    };
    // Site c is down for rounds 3–6: those rounds average the others' updates.
    let (model, all) = train(&s, |round, site| site == "c" && (3..=6).contains(&round))
        .await
        .unwrap();
    assert_eq!(model.algorithm, "fedprox");
    assert!(model.history.iter().all(|r| r.selected.len() == 2));
    let lost = &model.history[2];
    assert!(!lost.answered.contains(&"c".to_string()) || !lost.selected.contains(&"c".to_string()));
    // Stated tolerance for local SGD on heterogeneous sites: 0.1 on the standardised scale.
    let best = optimum(&model, &all, s.l2);
    for (w, b) in model.weights.iter().zip(&best) {
        assert!((w - b).abs() < 0.1, "{:?} vs {best:?}", model.weights);
    }
}

#[tokio::test]
async fn an_mlp_learns_and_too_many_lost_rounds_stop_training() {
    let s = FedAvgSpec {
        rounds: 30,
        local_epochs: 2,
        batch_size: 32,
        learning_rate: 0.1,
        ..spec(Architecture::Mlp { hidden: 8 })
    };
    let (model, _) = train(&s, |_, _| false).await.unwrap();
    assert_eq!(model.weights.len(), 3 * 8 + 8 + 8 + 1);
    assert!(model.coefficients.is_none());
    let losses: Vec<f64> = model.history.iter().filter_map(|r| r.loss).collect();
    assert!(
        losses.last().unwrap() < &(losses[0] - 0.05),
        "the MLP's loss fell from {} to {}",
        losses[0],
        losses.last().unwrap()
    );
    // Two sites down from round 2: rounds cannot reach min_sites; training stops.
    let stopped = train(&s, |round, site| round >= 2 && site != "a").await;
    match stopped {
        Err(FitError::Glm(GlmError::SitesChanged(m))) => assert!(m.contains("round 4"), "{m}"),
        other => panic!("{:?}", other.map(|(m, _)| m.rounds)),
    }
}

#[test]
fn dp_gradient_descent_clips_each_row_and_carries_no_count() {
    use medfed_core::kernel::{ModelKind, TrainStep, UpdateDp};
    let per_site = rows(0);
    let y: Vec<f64> = per_site.iter().map(|r| r.0).collect();
    let a: Vec<f64> = per_site.iter().map(|r| r.1).collect();
    let n = y.len() as f64;
    let step = TrainStep {
        model: ModelKind::Logistic { features: 1 },
        weights: vec![0.0, 0.0],
        epochs: 1,
        batch_size: 16,
        learning_rate: 0.5,
        l2: 0.0,
        proximal_mu: 0.0,
        seed: 1,
        dp: Some(UpdateDp {
            clip: 1e-3,
            run: "r".into(),
            rounds: 1,
        }),
    };
    let columns = [y.clone(), a.clone()];
    // A negligible σ shows the clipping alone. With a clip far below every row's gradient
    // (|σ(0) − y|·√(1 + a²) ≥ 0.5), each row adds a vector of norm exactly 1e-3: the step is
    // lr · mean of the rows' unit directions × 1e-3.
    let clipped = super::train_locally(&columns, &step, Some(1e-12)).unwrap();
    assert_eq!((clipped.n, clipped.loss), (0, None));
    let mut want = [0.0, 0.0];
    for (yi, ai) in y.iter().zip(&a) {
        let (g0, g1) = (0.5 - yi, (0.5 - yi) * ai);
        let norm = (g0 * g0 + g1 * g1).sqrt();
        want[0] -= 0.5 * 1e-3 * g0 / norm / n;
        want[1] -= 0.5 * 1e-3 * g1 / norm / n;
    }
    for (d, w) in clipped.delta.iter().zip(want) {
        assert!((d - w).abs() < 1e-12, "{:?} vs {want:?}", clipped.delta);
    }
    // The σ a site uses for ε = 1, δ = 1e-6 in a one-step run: sensitivity 2·clip over √(2ρ).
    let release = medfed_privacy::DpRelease {
        epsilon: 1.0,
        delta: 1e-6,
        ..Default::default()
    };
    let bound = step.dp.clone().unwrap();
    let sigma = crate::kernel::update_sigma(&bound, &release, 1);
    let rho = medfed_privacy::dp::gaussian_rho(2e-3, sigma);
    assert!((medfed_privacy::dp::zcdp_epsilon(rho, 1e-6) - 1.0).abs() < 1e-9);
    // Spread over 25 rounds of 2 epochs, each step's ρ is a 50th; the run's adds back up.
    let run = UpdateDp {
        rounds: 25,
        ..bound
    };
    let per_step =
        medfed_privacy::dp::gaussian_rho(2e-3, crate::kernel::update_sigma(&run, &release, 2));
    assert!((50.0 * per_step - rho).abs() < 1e-9 * rho);
    // A DP request without a clip bound is refused.
    let unbounded = TrainStep { dp: None, ..step };
    assert!(super::train_locally(&columns, &unbounded, Some(sigma)).is_err());
}

#[test]
fn the_mlps_per_row_clipped_gradients_equal_one_backward_pass_per_row() {
    use candle_core::{Device, Tensor};
    let per_site = rows(1);
    let y: Vec<f64> = per_site.iter().take(40).map(|r| r.0).collect();
    let x = [
        per_site.iter().take(40).map(|r| r.1).collect::<Vec<_>>(),
        per_site.iter().take(40).map(|r| r.2).collect(),
    ];
    let rows = super::local::Rows { y: &y, x: &x };
    let (f, h) = (2, 3);
    let weights: Vec<f64> = (0..f * h + 2 * h + 1)
        .map(|j| ((j * 7 % 11) as f64 - 5.0) / 7.0)
        .collect();
    for clip in [1e9, 0.05] {
        let fast = super::mlp::clipped_gradient_sum(&rows, &weights, h, clip).unwrap();
        // The slow way: candle's gradient of each row's loss alone, clipped, summed.
        let mut slow = vec![0.0; weights.len()];
        for i in 0..y.len() {
            let net = super::mlp::Mlp::from_flat(&weights, f, h).unwrap();
            let xi = Tensor::from_vec(vec![x[0][i], x[1][i]], (1, 2), &Device::Cpu).unwrap();
            let z = net.logits(&xi).unwrap();
            let softplus = (z.relu().unwrap()
                + (z.abs().unwrap().neg().unwrap().exp().unwrap() + 1.0)
                    .unwrap()
                    .log()
                    .unwrap())
            .unwrap();
            let loss = (softplus - (&z * y[i]).unwrap())
                .unwrap()
                .sum_all()
                .unwrap();
            let grads = loss.backward().unwrap();
            let g: Vec<f64> = net
                .vars()
                .iter()
                .flat_map(|v| {
                    grads
                        .get(v.as_tensor())
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f64>()
                        .unwrap()
                })
                .collect();
            let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
            let scale = if norm > clip { clip / norm } else { 1.0 };
            slow.iter_mut().zip(&g).for_each(|(s, v)| *s += scale * v);
        }
        for (a, b) in fast.iter().zip(&slow) {
            assert!((a - b).abs() < 1e-10, "clip {clip}: {fast:?} vs {slow:?}");
        }
    }
}

#[test]
fn a_site_scores_its_personalised_model_on_its_held_out_rows_only() {
    use medfed_core::kernel::{FineTune, ModelKind};
    let per_site = rows(2);
    let y: Vec<f64> = per_site.iter().map(|r| r.0).collect();
    let a: Vec<f64> = per_site.iter().map(|r| r.1).collect();
    let split: Vec<f64> = (0..y.len())
        .map(|i| f64::from(u8::from(i % 5 == 0)))
        .collect();
    let held_out = split.iter().filter(|s| **s == 1.0).count() as u64;
    let model = ModelKind::Logistic { features: 1 };
    // A global model that knows nothing (all zeros) ranks every row alike.
    let blank = [0.0, 0.0];
    let columns = [y.clone(), a.clone(), split.clone()];
    let tune = FineTune {
        epochs: 5,
        batch_size: 16,
        learning_rate: 0.2,
        l2: 0.0,
        proximal_mu: 0.0,
        seed: 3,
    };
    let tuned = super::evaluate_locally(&columns, model, &blank, Some(&tune), 5).unwrap();
    assert_eq!(tuned.n, held_out);
    let plain = super::evaluate_locally(&[y, a], model, &blank, None, 5).unwrap();
    assert_eq!(plain.auroc, 0.5);
    assert!(tuned.auroc > 0.75, "{}", tuned.auroc);
    // Too few rows to fine-tune on is refused, not answered.
    assert!(super::evaluate_locally(&columns, model, &blank, Some(&tune), 10_000).is_err());
}

#[tokio::test]
async fn dp_fedavg_asks_nothing_first_scales_from_bounds_and_its_noise_shrinks_with_epsilon() {
    let s = FedAvgSpec {
        formula: "y ~ a + b".into(),
        rounds: 100,
        local_epochs: 2,
        batch_size: 10_000,
        learning_rate: 2.0,
        clip: Some(2.0),
        bounds: [
            ("a".to_string(), [-2.0, 3.0]),
            ("b".to_string(), [0.0, 1.0]),
        ]
        .into(),
        ..spec(Architecture::Logistic)
    };
    let release = |epsilon: f64| medfed_privacy::DpRelease {
        epsilon,
        delta: 1e-6,
        ..Default::default()
    };
    let converged = FedAvgSpec {
        clip: None,
        rounds: 300,
        ..s.clone()
    };
    let (exact, _) = train(&converged, |_, _| false).await.unwrap();
    // Distance on the inputs' own scale (the runs scale differently: moments vs bounds).
    let distance = |m: &TrainedModel, to: &TrainedModel| {
        let (c, e) = (
            m.coefficients.as_ref().unwrap(),
            to.coefficients.as_ref().unwrap(),
        );
        c.iter()
            .map(|(k, v)| (v - e[k]).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let (limit, _) = train_with(&s, |_, _| false, Some(release(1e12)))
        .await
        .unwrap();
    let (loose, _) = train_with(&s, |_, _| false, Some(release(1e4)))
        .await
        .unwrap();
    let (tight, _) = train_with(&s, |_, _| false, Some(release(1.0)))
        .await
        .unwrap();
    assert_eq!(
        loose.scaling,
        [[0.5, 2.5], [0.5, 0.5]],
        "from the declared bounds"
    );
    assert_eq!(loose.n, 0, "no row count is released under DP");
    assert!(loose.history.iter().all(|r| r.loss.is_none()));
    // Without noise DP-FedAvg lands near the exact fit (not on it: it averages the three
    // unequal sites unweighted, as no row count may be released).
    assert!(distance(&limit, &exact) < 0.25, "{:?}", limit.coefficients);
    assert!(
        distance(&loose, &limit) < 0.05,
        "ε = 10⁴: {}",
        distance(&loose, &limit)
    );
    assert!(
        distance(&tight, &limit) > 4.0 * distance(&loose, &limit),
        "ε = 1 over 200 steps on a few hundred rows a site is noisier: {} vs {}",
        distance(&tight, &limit),
        distance(&loose, &limit)
    );
    // Declared bounds are required, factor() inputs refused, and a clip bound is needed.
    let unbounded = FedAvgSpec {
        bounds: Default::default(),
        ..s.clone()
    };
    let err = train_with(&unbounded, |_, _| false, Some(release(1.0))).await;
    assert!(matches!(&err, Err(FitError::Glm(GlmError::Model(m))) if m.contains("bounds")));
    let factor = FedAvgSpec {
        formula: "y ~ a + factor(g)".into(),
        ..s.clone()
    };
    let err = train_with(&factor, |_, _| false, Some(release(1.0))).await;
    assert!(matches!(&err, Err(FitError::Glm(GlmError::Model(m))) if m.contains("factor(g)")));
    let unclipped = FedAvgSpec { clip: None, ..s };
    let err = train_with(&unclipped, |_, _| false, Some(release(1.0))).await;
    assert!(matches!(&err, Err(FitError::Glm(GlmError::Model(m))) if m.contains("clip")));
}

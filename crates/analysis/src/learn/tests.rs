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

/// Trains `spec` over three in-process sites; `down(round, site)` makes a site fail a round.
async fn train(
    spec: &FedAvgSpec,
    down: impl Fn(u32, &str) -> bool,
) -> Result<(TrainedModel, Vec<(f64, f64, f64, &'static str)>), FitError<String>> {
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
    let run_sql = |_, sql: String| async move {
        crate::glm::pooled::run_local(pooled_ctx, &sql)
            .await
            .map_err(|e| e.to_string())
    };
    let (sites, down) = (&sites, &down);
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
                let answer = crate::kernel::run(ctx, &rows, &task.step, 5, None)
                    .await
                    .map_err(|e| e.to_string())?;
                round.answers.insert(name.to_string(), answer);
            }
            round.sites.insert(name.to_string(), outcome);
        }
        Ok(round)
    };
    let names: Vec<String> = SITES.iter().map(|s| s.to_string()).collect();
    let model = super::train(&state, spec, 5, &names, run_sql, run_round).await?;
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
fn a_dp_update_is_clipped_noised_and_carries_no_count() {
    use medfed_core::kernel::{ModelKind, TrainStep, UpdateDp};
    let per_site = rows(0);
    let y: Vec<f64> = per_site.iter().map(|r| r.0).collect();
    let a: Vec<f64> = per_site.iter().map(|r| r.1).collect();
    let step = TrainStep {
        model: ModelKind::Logistic { features: 1 },
        weights: vec![0.0, 0.0],
        epochs: 1,
        batch_size: 16,
        learning_rate: 0.5,
        l2: 0.0,
        proximal_mu: 0.0,
        seed: 1,
        dp: Some(UpdateDp { clip: 0.01 }),
    };
    let columns = [y, a];
    let plain = super::train_locally(&columns, &step, None).unwrap();
    assert!(plain.delta.iter().map(|d| d * d).sum::<f64>().sqrt() > 0.1);
    // A negligible σ shows the clipping alone: the update's norm is the bound.
    let clipped = super::train_locally(&columns, &step, Some(1e-9)).unwrap();
    let norm = clipped.delta.iter().map(|d| d * d).sum::<f64>().sqrt();
    assert!((norm - 0.01).abs() < 1e-6, "{norm}");
    assert_eq!((clipped.n, clipped.loss), (0, None));
    // The σ a site uses for ε = 1, δ = 1e-6: sensitivity 2·clip over √(2ρ).
    let release = medfed_privacy::DpRelease {
        epsilon: 1.0,
        delta: 1e-6,
        ..Default::default()
    };
    let sigma = crate::kernel::update_sigma(0.01, &release);
    let rho = medfed_privacy::dp::gaussian_rho(0.02, sigma);
    assert!((medfed_privacy::dp::zcdp_epsilon(rho, 1e-6) - 1.0).abs() < 1e-9);
    // A DP request without a clip bound is refused.
    let unbounded = TrainStep { dp: None, ..step };
    assert!(super::train_locally(&columns, &unbounded, Some(sigma)).is_err());
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

//! Iterative federated learning: FedAvg (McMahan et al. 2017) and FedProx (Li et al. 2020) for
//! logistic regression and a small MLP, each round a `train` site kernel.
//!
//! ```text
//!  y ~ features ─► levels, outcome classes, network means/SDs (federated queries)
//!               ─► rounds: select ⌈C·K⌉ sites ─► each trains E epochs of SGD from w
//!                                 ▲                 on its standardised rows, answers Δw, n
//!                                 └── w += Σ nₖΔwₖ / Σ nₖ ◄──┘  (sites that fail are skipped)
//! ```
//! Inputs are standardised with the network's means and SDs (one aggregate query), so one
//! learning rate suits every feature and the weights mean the same at every site. A site that
//! fails a round is left out of that round's average (dropout tolerance); fewer than
//! `min_sites` answers skips the round, and three such rounds in a row stop training.
//!
//! Under DP (DP-FedAvg, McMahan et al. 2018) the run asks the network nothing before it trains:
//! every input is a number with declared `bounds`, scaled from them to [−1, 1], so no planning
//! query spends budget or reveals a count. Each site trains by DP gradient descent: every
//! local epoch is one full-batch step on the sum of its rows' gradients, each clipped to
//! `clip`, plus Gaussian noise the site sizes itself. The run's (ε, δ) is one zCDP budget ρ
//! shared by the declared `rounds` × epochs steps; the site charges the run once and refuses a
//! round past its number. Neighbouring datasets differ in one row replaced (so the row count
//! is not what is protected; it is still not released), and the hub averages the sites' noisy
//! updates unweighted.

mod evaluate;
mod local;
mod mlp;
pub mod pooled;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::future::Future;

use datafusion::execution::SessionState;
use medfed_core::kernel::{
    KernelAnswer, KernelStep, KernelTask, ModelKind, RowSource, TrainStep, UpdateDp,
};
use medfed_core::learn::{RoundRecord, TrainedModel};
use medfed_core::result::QueryResult;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

pub use crate::glm::FitError;
use crate::glm::{self, Answer, Family, GlmError, GlmSpec, Step};
use crate::kernel::KernelRound;
pub(crate) use evaluate::at_site as evaluate_locally;
pub use evaluate::{CALIBRATION_BINS, EvaluateSpec, Evaluation, evaluate};
pub(crate) use local::train as train_locally;

/// Consecutive rounds with too few answers after which training stops.
pub const MAX_FAILED_ROUNDS: u32 = 3;

/// Most rounds one training run may ask for.
pub const MAX_ROUNDS: u32 = 1_000;

/// The model to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// Logistic regression.
    Logistic,
    /// One hidden ReLU layer of `hidden` units.
    Mlp {
        /// Hidden units.
        hidden: u32,
    },
}

fn d_rounds() -> u32 {
    50
}
fn d_epochs() -> u32 {
    1
}
fn d_batch() -> u32 {
    64
}
fn d_lr() -> f64 {
    0.1
}
fn d_fraction() -> f64 {
    1.0
}
fn d_min_sites() -> usize {
    2
}
fn d_tolerance() -> f64 {
    1e-6
}

/// What a researcher asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FedAvgSpec {
    /// Table whose rows are the training examples.
    pub table: String,
    /// `outcome ~ features` in R's syntax (0/1 outcome; `factor()`, `*`, `:`).
    pub formula: String,
    /// The model.
    pub model: Architecture,
    /// Rounds at most.
    #[serde(default = "d_rounds")]
    pub rounds: u32,
    /// Local epochs per round (E).
    #[serde(default = "d_epochs")]
    pub local_epochs: u32,
    /// Local mini-batch size (B); under DP every epoch is one full-batch step.
    #[serde(default = "d_batch")]
    pub batch_size: u32,
    /// Local SGD step size.
    #[serde(default = "d_lr")]
    pub learning_rate: f64,
    /// L2 penalty on the weights.
    #[serde(default)]
    pub l2: f64,
    /// FedProx's μ (0: FedAvg).
    #[serde(default)]
    pub proximal_mu: f64,
    /// Share of the sites selected each round (C).
    #[serde(default = "d_fraction")]
    pub fraction: f64,
    /// Fewest answering sites for a round to count.
    #[serde(default = "d_min_sites")]
    pub min_sites: usize,
    /// Stop when the averaged update's norm falls below this.
    #[serde(default = "d_tolerance")]
    pub tolerance: f64,
    /// Seeds selection, initialisation and the sites' shuffling.
    #[serde(default)]
    pub seed: u64,
    /// DP studies (required there): clip each row's gradient to this L2 norm.
    #[serde(default)]
    pub clip: Option<f64>,
    /// DP studies: each input's declared range `[low, high]`, by feature name; inputs are
    /// scaled from these instead of the network's means and SDs (which would cost budget).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(schema_with = medfed_core::schema::intervals_by_name)]
    pub bounds: BTreeMap<String, [f64; 2]>,
    /// SQL condition selecting the training rows.
    #[serde(default, rename = "where")]
    pub filter: Option<String>,
}

/// One round as the orchestrator asks the caller to run it.
pub struct RoundRequest {
    /// Round number (1-based).
    pub round: u32,
    /// The step.
    pub task: KernelTask,
    /// Sites selected for it.
    pub sites: Vec<String>,
}

/// What [`plan`] learned from the network before training.
struct Prepared {
    features: Vec<String>,
    scaling: Vec<[f64; 2]>,
    rows: RowSource,
    n: u64,
}

/// The model's inputs: the design of `formula` over `table` (levels of its factors asked of
/// the network), the feature names, and the raw rows (outcome first).
pub(super) async fn inputs<E, F, Fut>(
    state: &SessionState,
    table: &str,
    formula: &str,
    filter: Option<&str>,
    run_sql: &mut F,
) -> Result<(glm::design::Design, Vec<String>, RowSource), FitError<E>>
where
    F: FnMut(Step, String) -> Fut,
    Fut: Future<Output = Result<QueryResult, E>>,
{
    let as_glm = GlmSpec {
        table: table.to_string(),
        formula: formula.to_string(),
        family: Family::Binomial,
        weights: None,
        filter: filter.map(str::to_string),
    };
    let planned = glm::plan(state, &as_glm, run_sql).await?;
    let (formula, design) = (planned.formula, planned.design);
    if !formula.offsets.is_empty() || !formula.intercept {
        return Err(GlmError::Formula(
            "a learned model has its own intercept and no offsets".into(),
        )
        .into());
    }
    let features: Vec<String> = design
        .columns
        .iter()
        .filter(|c| c.sql.is_some())
        .map(|c| c.name.clone())
        .collect();
    let raw = design.row_source(&[design.response_sql().to_string()]);
    Ok((design, features, raw))
}

/// `raw` with every feature standardised by its `[mean, sd]`.
pub(super) fn standardised(raw: RowSource, scaling: &[[f64; 2]]) -> RowSource {
    let mut columns = vec![raw.columns[0].clone()];
    for (c, [mean, sd]) in raw.columns[1..].iter().zip(scaling) {
        columns.push(format!("(({c}) - {mean:?}) / {sd:?}"));
    }
    RowSource { columns, ..raw }
}

/// Checks the formula, the outcome's classes and the network's means and SDs; under DP
/// (`dp`), only the formula, with the inputs scaled from their declared bounds.
async fn plan<E, F, Fut>(
    state: &SessionState,
    spec: &FedAvgSpec,
    k: u64,
    dp: bool,
    run_sql: &mut F,
) -> Result<Prepared, FitError<E>>
where
    F: FnMut(Step, String) -> Fut,
    Fut: Future<Output = Result<QueryResult, E>>,
{
    if dp {
        let formula = glm::parse_formula(&spec.formula)?;
        if let Some(v) = formula.terms.iter().flatten().find(|v| v.factor) {
            return Err(GlmError::Model(format!(
                "a DP training run asks no planning queries, so factor({}) has no levels: use \
                 0/1 indicator columns",
                v.column
            ))
            .into());
        }
    }
    let (design, features, raw) = inputs(
        state,
        &spec.table,
        &spec.formula,
        spec.filter.as_deref(),
        run_sql,
    )
    .await?;
    if dp {
        let scaling = declared_scaling(&features, &spec.bounds)?;
        return Ok(Prepared {
            rows: standardised(raw, &scaling),
            features,
            scaling,
            n: 0,
        });
    }
    let response = raw.columns[0].clone();
    let summary = run_sql(Step::Summary, design.summary_sql(Family::Binomial, false))
        .await
        .map_err(FitError::Run)?;
    if Answer::read(&summary)?.count("bad_y")? > 0 {
        return Err(
            GlmError::Model(format!("the outcome of {} must be coded 0/1", spec.formula)).into(),
        );
    }
    let classes = run_sql(Step::Levels(response.clone()), design.response_levels_sql())
        .await
        .map_err(FitError::Run)?;
    let classes = glm::read_levels(&response, &classes)?;
    if classes.iter().map(|l| l.label.as_str()).ne(["0", "1"]) {
        return Err(GlmError::Model(format!(
            "the outcome of {} must be coded 0/1 with both values present",
            spec.formula
        ))
        .into());
    }
    let moments = run_sql(Step::Summary, design.moments_sql())
        .await
        .map_err(FitError::Run)?;
    let m = Answer::read(&moments)?;
    let n = m.count("n")?;
    if n < k.max(1) {
        return Err(GlmError::Disclosive(format!("fewer than k = {k} training rows")).into());
    }
    let mut scaling = Vec::new();
    for (j, name) in features.iter().enumerate() {
        let (mean, square) = (m.number(&format!("m_{j}"))?, m.number(&format!("q_{j}"))?);
        let sd = (square - mean * mean).max(0.0).sqrt();
        if sd.is_nan() || sd <= 1e-12 * mean.abs().max(1.0) {
            return Err(GlmError::Numeric(format!("{name} is constant over the network")).into());
        }
        scaling.push([mean, sd]);
    }
    Ok(Prepared {
        rows: standardised(raw, &scaling),
        features,
        scaling,
        n,
    })
}

/// Each feature's centre and half-range from its declared bounds (so it lies in [−1, 1]).
fn declared_scaling(
    features: &[String],
    bounds: &BTreeMap<String, [f64; 2]>,
) -> Result<Vec<[f64; 2]>, GlmError> {
    features
        .iter()
        .map(|name| match bounds.get(name) {
            Some(&[lo, hi]) if lo.is_finite() && hi.is_finite() && hi > lo => {
                Ok([(lo + hi) / 2.0, (hi - lo) / 2.0])
            }
            Some([lo, hi]) => Err(GlmError::Model(format!(
                "the bounds of {name} must be finite with low < high, not [{lo}, {hi}]"
            ))),
            None => Err(GlmError::Model(format!(
                "under differential privacy every input needs declared bounds: add \
                 \"bounds\": {{\"{name}\": [low, high]}}"
            ))),
        })
        .collect()
}

/// Starting weights: zeros for logistic regression; for the MLP, He-normal first-layer
/// weights (seeded), small second-layer weights and zero biases.
fn initial_weights(model: ModelKind, seed: u64) -> Vec<f64> {
    let mut w = vec![0.0; model.parameters()];
    if let ModelKind::Mlp { features, hidden } = model {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
        let (f, h) = (features as usize, hidden as usize);
        let first = Normal::new(0.0, (2.0 / f as f64).sqrt()).expect("positive sd");
        let second = Normal::new(0.0, (1.0 / h as f64).sqrt()).expect("positive sd");
        for v in &mut w[..h * f] {
            *v = first.sample(&mut rng);
        }
        for v in &mut w[h * f + h..h * f + 2 * h] {
            *v = second.sample(&mut rng);
        }
    }
    w
}

/// Trains `spec` over `sites` (the study's approved sites): the outcome, levels and moments
/// through `run_sql` (federated queries), each round through `run_round` (the `train` kernel
/// at the round's selected sites). `dp_run` names the training run in a DP study (DP-FedAvg,
/// see the module docs); the caller's DP release then covers the whole run.
pub async fn train<E, F, Fut, R, RFut>(
    state: &SessionState,
    spec: &FedAvgSpec,
    k: u64,
    sites: &[String],
    dp_run: Option<&str>,
    mut run_sql: F,
    mut run_round: R,
) -> Result<TrainedModel, FitError<E>>
where
    F: FnMut(Step, String) -> Fut,
    Fut: Future<Output = Result<QueryResult, E>>,
    R: FnMut(RoundRequest) -> RFut,
    RFut: Future<Output = Result<KernelRound, E>>,
{
    check(spec, sites.len())?;
    let dp = match (dp_run, spec.clip) {
        (Some(run), Some(clip)) => Some((run, clip)),
        (Some(_), None) => {
            return Err(GlmError::Model(
                "DP-FedAvg clips each site's update: set clip (e.g. 1.0)".into(),
            )
            .into());
        }
        (None, _) => None,
    };
    let prepared = plan(state, spec, k, dp.is_some(), &mut run_sql).await?;
    let features = prepared.features.len() as u32;
    let model = match spec.model {
        Architecture::Logistic => ModelKind::Logistic { features },
        Architecture::Mlp { hidden } => ModelKind::Mlp { features, hidden },
    };
    let mut weights = initial_weights(model, spec.seed);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(spec.seed);
    let per_round = ((spec.fraction * sites.len() as f64).ceil() as usize)
        .clamp(spec.min_sites.min(sites.len()), sites.len());
    let (mut history, mut failed, mut converged) = (Vec::new(), 0, false);
    let mut last = KernelRound::default();
    let mut n = prepared.n;
    for round in 1..=spec.rounds {
        let mut selected: Vec<String> = sites.to_vec();
        selected.shuffle(&mut rng);
        selected.truncate(per_round);
        selected.sort();
        let task = KernelTask {
            rows: prepared.rows.clone(),
            step: KernelStep::Train(TrainStep {
                model,
                weights: weights.clone(),
                epochs: spec.local_epochs,
                batch_size: spec.batch_size,
                learning_rate: spec.learning_rate,
                l2: spec.l2,
                proximal_mu: spec.proximal_mu,
                seed: spec
                    .seed
                    .wrapping_mul(1_000_003)
                    .wrapping_add(u64::from(round)),
                dp: dp.map(|(run, clip)| UpdateDp {
                    clip,
                    run: run.to_string(),
                    rounds: spec.rounds,
                }),
            }),
        };
        let request = RoundRequest {
            round,
            task,
            sites: selected.clone(),
        };
        let answers = run_round(request).await.map_err(FitError::Run)?;
        let updates: Vec<(&String, &medfed_core::kernel::ModelUpdate)> = answers
            .answers
            .iter()
            .filter_map(|(s, a)| match a {
                KernelAnswer::Update(u) if u.delta.len() == weights.len() => Some((s, u)),
                _ => None,
            })
            .collect();
        // Under secure aggregation the one update is the sum of the answering sites'.
        let answered: Vec<String> = if answers.is_secure() {
            answers.answered().into_iter().collect()
        } else {
            updates.iter().map(|(s, _)| (*s).clone()).collect()
        };
        if updates.is_empty() || answered.len() < spec.min_sites.min(sites.len()) {
            failed += 1;
            history.push(RoundRecord {
                round,
                selected,
                answered,
                loss: None,
                update_norm: 0.0,
            });
            if failed >= MAX_FAILED_ROUNDS {
                return Err(GlmError::SitesChanged(format!(
                    "{failed} rounds in a row had fewer than {} answering sites; training \
                     stopped at round {round}",
                    spec.min_sites
                ))
                .into());
            }
            continue;
        }
        failed = 0;
        // Weighted by rows (FedAvg); unweighted under DP, where n would be a further release.
        let weight = |u: &medfed_core::kernel::ModelUpdate| {
            if dp.is_some() { 1.0 } else { u.n as f64 }
        };
        let total: f64 = updates.iter().map(|(_, u)| weight(u)).sum();
        let mut step = vec![0.0; weights.len()];
        for (_, u) in &updates {
            let share = weight(u) / total;
            step.iter_mut()
                .zip(&u.delta)
                .for_each(|(s, d)| *s += share * d);
        }
        if step.iter().any(|s| !s.is_finite()) {
            return Err(GlmError::Numeric(
                "an update is not finite: lower the learning rate".into(),
            )
            .into());
        }
        let norm = step.iter().map(|s| s * s).sum::<f64>().sqrt();
        weights.iter_mut().zip(&step).for_each(|(w, s)| *w += s);
        let rows: u64 = updates.iter().map(|(_, u)| u.n).sum();
        let loss = updates
            .iter()
            .map(|(_, u)| u.loss.map(|l| l * u.n as f64))
            .sum::<Option<f64>>()
            .map(|l| l / rows.max(1) as f64);
        history.push(RoundRecord {
            round,
            selected,
            answered,
            loss,
            update_norm: norm,
        });
        n = rows;
        last = answers;
        if norm < spec.tolerance {
            converged = true;
            break;
        }
    }
    let coefficients = matches!(model, ModelKind::Logistic { .. })
        .then(|| original_scale(&weights, &prepared.features, &prepared.scaling));
    Ok(TrainedModel {
        formula: spec.formula.clone(),
        model,
        algorithm: if spec.proximal_mu > 0.0 {
            "fedprox"
        } else {
            "fedavg"
        }
        .into(),
        rounds: history.len() as u32,
        converged,
        n,
        features: prepared.features,
        scaling: prepared.scaling,
        weights,
        coefficients,
        history,
        epsilon: None,
        sites: last.sites,
        privacy: Default::default(),
    })
}

/// Refuses settings that cannot train.
fn check(spec: &FedAvgSpec, sites: usize) -> Result<(), GlmError> {
    let bad = |m: &str| Err(GlmError::Model(m.into()));
    if sites == 0 {
        return bad("the study has no approved site");
    }
    if !(1..=MAX_ROUNDS).contains(&spec.rounds) {
        return bad("rounds must be 1–1000");
    }
    if !(spec.fraction > 0.0 && spec.fraction <= 1.0) {
        return bad("fraction must be in (0, 1]");
    }
    if let Architecture::Mlp { hidden } = spec.model
        && !(1..=256).contains(&hidden)
    {
        return bad("an MLP here has 1–256 hidden units");
    }
    if spec.clip.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
        return bad("clip must be positive");
    }
    Ok(())
}

/// Logistic coefficients back on the inputs' own scale: βⱼ = γⱼ/sⱼ and
/// β₀ = γ₀ − Σ γⱼ·mⱼ/sⱼ.
fn original_scale(w: &[f64], features: &[String], scaling: &[[f64; 2]]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let mut intercept = w[0];
    for (j, (name, [m, s])) in features.iter().zip(scaling).enumerate() {
        let beta = w[j + 1] / s;
        intercept -= beta * m;
        out.insert(name.clone(), beta);
    }
    out.insert("(Intercept)".into(), intercept);
    out
}

//! Cox proportional hazards, stratified by site: the same estimate as the pooled stratified fit.
//!
//! ```text
//!  Surv(t, e) ~ rhs ─► factor levels (federated counts, each ≥ k at every site)
//!                   ─► Newton–Raphson: β ─► kernel `cox` at every site ─► loglik, U, I per site
//!                            ▲                                                   │ Σ over sites
//!                            └──────────────── β' = β + I⁻¹U ◄───────────────────┘
//! ```
//! With the site as stratum, each hospital keeps its own baseline hazard and the stratified
//! partial likelihood is the sum of the sites' own: its score U and information I are sums of
//! per-site sums, so the hub's Newton step is the pooled one exactly. The risk sets are running
//! sums over each site's rows in time order, which aggregate SQL cannot express without
//! row-picking window functions, so the local step is a site kernel ([`crate::kernel`]); the
//! design (dummies, interactions, R's names) and the factor-level queries are the GLM's.
//!
//! Disclosure: each site refuses fewer than k rows or k events, and a model with more
//! coefficients than [`glm::MAX_PARAMETER_SHARE`] of its rows; each factor level must have k people
//! at every site (the level query is an ordinary federated count).

mod sums;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use datafusion::execution::SessionState;
use medfed_core::glm::{Coefficient, Coefficients};
use medfed_core::kernel::{CoxSums, KernelAnswer, KernelStep, KernelTask, RowSource, Ties};
use medfed_core::result::QueryResult;
use medfed_core::survival::{CoxFit, HazardRatio, Test};
use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF, Normal};

use crate::glm::{self, Family, FitError, GlmError, GlmSpec, Step};
use crate::kernel::KernelRound;
use crate::variables::{self, VariableError};
pub use sums::CoxRows;

/// Newton–Raphson iterations before giving up (R's `coxph.control(iter.max = 20)`, with room
/// for step halving).
pub const MAX_ITERATIONS: u32 = 30;

/// Relative step below which Newton–Raphson has converged (as the GLM's [`glm::TOLERANCE`]).
pub const TOLERANCE: f64 = 1e-10;

/// What a researcher asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CoxSpec {
    /// Table with one row per person (or episode).
    pub table: String,
    /// `Surv(time, event) ~ covariates` in R's syntax (`factor()`, `*`, `:`).
    pub formula: String,
    /// Tied event times (default Efron, as R).
    #[serde(default)]
    pub ties: Ties,
    /// SQL condition selecting the rows to use (besides complete cases).
    #[serde(default, rename = "where")]
    pub filter: Option<String>,
}

/// The formula's parts: time column, event column, right-hand side.
fn parse_surv(formula: &str) -> Result<(String, String, String), GlmError> {
    let bad = || {
        GlmError::Formula(format!(
            "a Cox model is written `Surv(time, event) ~ covariates`, not {formula:?}"
        ))
    };
    let (lhs, rhs) = formula.split_once('~').ok_or_else(bad)?;
    let inner = lhs
        .trim()
        .strip_prefix("Surv(")
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(bad)?;
    let (time, event) = inner.split_once(',').ok_or_else(bad)?;
    let ident = |s: &str| {
        let s = s.trim();
        let ok = s
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        ok.then(|| s.to_string()).ok_or_else(bad)
    };
    Ok((ident(time)?, ident(event)?, rhs.trim().to_string()))
}

/// The model's covariates and where its rows come from.
struct Model {
    names: Vec<String>,
    rows: RowSource,
    reference_levels: BTreeMap<String, String>,
}

/// Checks the columns and asks the network for the levels of every factor.
async fn plan<E, F, Fut>(
    state: &SessionState,
    spec: &CoxSpec,
    run_sql: &mut F,
) -> Result<Model, FitError<E>>
where
    F: FnMut(Step, String) -> Fut,
    Fut: Future<Output = Result<QueryResult, E>>,
{
    let (time, event, rhs) = parse_surv(&spec.formula)?;
    variables::check_filter(spec.filter.as_deref()).map_err(GlmError::Model)?;
    let types = variables::resolve(state, &spec.table, std::slice::from_ref(&event))
        .await
        .map_err(|e| match e {
            VariableError::Identifier(_) => GlmError::Disclosive(e.to_string()),
            VariableError::Unknown(m) => GlmError::Model(m),
        })?;
    if !variables::is_numeric(&types[&event.to_ascii_lowercase()]) {
        return Err(GlmError::Model(format!("the event {event} must be 1/0")).into());
    }
    // The GLM's planner with the time as the response: its checks, levels and design.
    let filter = match &spec.filter {
        Some(f) => format!("{event} IS NOT NULL AND ({f})"),
        None => format!("{event} IS NOT NULL"),
    };
    let as_glm = GlmSpec {
        table: spec.table.clone(),
        formula: format!("{time} ~ {rhs}"),
        family: Family::Gaussian,
        weights: None,
        filter: Some(filter),
    };
    let planned = glm::plan(state, &as_glm, run_sql).await?;
    if !planned.formula.offsets.is_empty() {
        return Err(GlmError::Formula("offset() has no meaning in a Cox model".into()).into());
    }
    if !planned.formula.intercept {
        return Err(GlmError::Formula(
            "a Cox model has no intercept to remove (its baseline hazard takes that role); \
             drop the `- 1`"
                .into(),
        )
        .into());
    }
    let names: Vec<String> = planned
        .design
        .columns
        .iter()
        .filter(|c| c.sql.is_some())
        .map(|c| c.name.clone())
        .collect();
    if names.is_empty() {
        return Err(GlmError::Formula("a Cox model needs at least one covariate".into()).into());
    }
    let rows = planned.design.row_source(&[time.clone(), event.clone()]);
    // The outcome's coding, asked of the network before any kernel runs.
    let check = format!(
        "SELECT COUNT(*) AS n, COUNT(*) FILTER (WHERE {event} <> 0 AND {event} <> 1) AS bad_e, \
         COUNT(*) FILTER (WHERE {time} < 0) AS bad_t FROM {} WHERE {}",
        rows.table,
        rows.filter.as_deref().unwrap_or("TRUE")
    );
    let answer = run_sql(Step::Summary, check).await.map_err(FitError::Run)?;
    let a = glm::Answer::read(&answer)?;
    if a.count("bad_e")? > 0 {
        return Err(GlmError::Model(format!(
            "the event {event} must be 1 (event) or 0 (censored)"
        ))
        .into());
    }
    if a.count("bad_t")? > 0 {
        return Err(GlmError::Model(format!("the time {time} cannot be negative")).into());
    }
    Ok(Model {
        names,
        rows,
        reference_levels: planned.reference_levels,
    })
}

/// Fits `spec`: factor levels through `run_sql` (a federated query for the hub), each
/// Newton–Raphson step through `run_kernel` (the `cox` kernel at every site).
pub async fn fit<E, F, Fut, K, KFut>(
    state: &SessionState,
    spec: &CoxSpec,
    mut run_sql: F,
    mut run_kernel: K,
) -> Result<CoxFit, FitError<E>>
where
    F: FnMut(Step, String) -> Fut,
    Fut: Future<Output = Result<QueryResult, E>>,
    K: FnMut(u32, KernelTask) -> KFut,
    KFut: Future<Output = Result<KernelRound, E>>,
{
    let model = plan(state, spec, &mut run_sql).await?;
    let p = model.names.len();
    let mut beta = vec![0.0; p];
    let mut sites: Option<BTreeSet<String>> = None;
    let mut best: Option<(Vec<f64>, CoxSums)> = None;
    let mut null = None;
    let mut converged = false;
    let mut iterations = 0;
    let mut last_round = KernelRound::default();
    let mut estimate = beta.clone();
    while iterations < MAX_ITERATIONS {
        iterations += 1;
        let task = KernelTask {
            rows: model.rows.clone(),
            step: KernelStep::Cox {
                beta: beta.clone(),
                ties: spec.ties,
            },
        };
        let round = run_kernel(iterations, task).await.map_err(FitError::Run)?;
        let total = sum_round(&round, p, iterations, &mut sites)?;
        last_round = round;
        null.get_or_insert(total.loglik);
        if let Some((b0, s0)) = &best
            && total.loglik < s0.loglik - 1e-12 * s0.loglik.abs()
        {
            // Overshot: halve the step back towards the best point so far (as `coxph`).
            beta = beta.iter().zip(b0).map(|(b, b0)| (b + b0) / 2.0).collect();
            continue;
        }
        let step = newton_step(&total)?;
        let next: Vec<f64> = beta.iter().zip(&step).map(|(b, s)| b + s).collect();
        let small = step
            .iter()
            .zip(&beta)
            .all(|(s, b)| s.abs() <= TOLERANCE * (b.abs() + 0.1));
        best = Some((beta.clone(), total));
        estimate = next.clone();
        if small {
            converged = true;
            break;
        }
        beta = next;
    }
    let (_, at) = best.expect("the first round sets the best point");
    let names = &model.names;
    let (coefficients, hazard_ratios) = inference(&at, &estimate, names)?;
    let lr = 2.0 * (at.loglik - null.unwrap_or(at.loglik));
    let chi = ChiSquared::new(p as f64).expect("p > 0");
    Ok(CoxFit {
        formula: spec.formula.clone(),
        ties: match spec.ties {
            Ties::Efron => "efron",
            Ties::Breslow => "breslow",
        }
        .into(),
        strata: "site".into(),
        n: at.n,
        events: at.events,
        iterations,
        converged,
        loglik: at.loglik,
        loglik_null: null.unwrap_or(at.loglik),
        likelihood_ratio: Test {
            statistic: lr,
            df: p as u32,
            p: chi.sf(lr.max(0.0)),
        },
        coefficients,
        hazard_ratios,
        reference_levels: model.reference_levels,
        sites: last_round.sites,
        privacy: Default::default(),
    })
}

/// The network's sums of one round; the sites must be those of the first round.
fn sum_round(
    round: &KernelRound,
    p: usize,
    iteration: u32,
    sites: &mut Option<BTreeSet<String>>,
) -> Result<CoxSums, GlmError> {
    let now = round.answered();
    match sites {
        None => *sites = Some(now),
        Some(first) if *first != now => {
            let lost: Vec<&String> = first.symmetric_difference(&now).collect();
            return Err(GlmError::SitesChanged(format!(
                "site(s) {lost:?} answered the model's first step but not iteration {iteration} \
                 (or the other way round); refit to use the sites that answer now"
            )));
        }
        Some(_) => {}
    }
    let mut total = CoxSums::default();
    for answer in round.answers.values() {
        let KernelAnswer::Cox(s) = answer else {
            return Err(GlmError::Numeric(
                "a site answered another kernel's sums".into(),
            ));
        };
        if s.score.len() != p || s.information.len() != p * p {
            return Err(GlmError::Numeric(
                "a site answered sums of the wrong size".into(),
            ));
        }
        total.add(s);
    }
    if round.answers.is_empty() {
        return Err(GlmError::Numeric("no site answered".into()));
    }
    if !total.loglik.is_finite() || total.score.iter().any(|s| !s.is_finite()) {
        return Err(GlmError::Numeric(
            "the partial likelihood is not finite: the fit diverged (a covariate separates \
             events from non-events, or is on a huge scale)"
                .into(),
        ));
    }
    Ok(total)
}

fn information(s: &CoxSums) -> DMatrix<f64> {
    let p = s.score.len();
    DMatrix::from_row_slice(p, p, &s.information)
}

fn singular() -> GlmError {
    GlmError::Numeric(
        "the information matrix is singular: a covariate is constant within every site, \
         duplicated or a combination of others, or a level has no events"
            .into(),
    )
}

/// Solves I·δ = U.
fn newton_step(s: &CoxSums) -> Result<Vec<f64>, GlmError> {
    let chol = information(s).cholesky().ok_or_else(singular)?;
    let step = chol.solve(&DVector::from_column_slice(&s.score));
    Ok(step.iter().copied().collect())
}

/// Wald inference from the information at the estimate (as `summary.coxph`).
fn inference(
    at: &CoxSums,
    beta: &[f64],
    names: &[String],
) -> Result<(Coefficients, BTreeMap<String, HazardRatio>), GlmError> {
    let inverse = information(at).cholesky().ok_or_else(singular)?.inverse();
    let normal = Normal::standard();
    let q = normal.inverse_cdf(0.975);
    let mut coefficients = Vec::new();
    let mut ratios = BTreeMap::new();
    for (j, name) in names.iter().enumerate() {
        let se = inverse[(j, j)].sqrt();
        let z = beta[j] / se;
        let ci95 = [beta[j] - q * se, beta[j] + q * se];
        ratios.insert(
            name.clone(),
            HazardRatio {
                estimate: beta[j].exp(),
                lower: ci95[0].exp(),
                upper: ci95[1].exp(),
            },
        );
        let c = Coefficient {
            estimate: beta[j],
            std_error: se,
            z,
            p: 2.0 * normal.sf(z.abs()),
            ci95,
        };
        coefficients.push((name.clone(), c));
    }
    Ok((Coefficients(coefficients), ratios))
}

/// The same fit in one process over pooled rows, one [`CoxRows`] per stratum: the reference
/// the federated fit is checked and timed against. Returns (β, standard errors, iterations).
pub fn pooled(
    strata: &[CoxRows],
    ties: Ties,
    p: usize,
) -> Result<(Vec<f64>, Vec<f64>, u32), GlmError> {
    let mut beta = vec![0.0; p];
    for iteration in 1..=MAX_ITERATIONS {
        let mut total = CoxSums::default();
        for s in strata {
            total.add(&s.sums(&beta, ties));
        }
        let step = newton_step(&total)?;
        let small = step
            .iter()
            .zip(&beta)
            .all(|(s, b)| s.abs() <= TOLERANCE * (b.abs() + 0.1));
        beta = beta.iter().zip(&step).map(|(b, s)| b + s).collect();
        if small {
            let inverse = information(&total)
                .cholesky()
                .ok_or_else(singular)?
                .inverse();
            let se = (0..p).map(|j| inverse[(j, j)].sqrt()).collect();
            return Ok((beta, se, iteration));
        }
    }
    Err(GlmError::Numeric("no convergence".into()))
}

//! Exact federated generalised linear models: the same coefficients as pooling the data.
//!
//! ```text
//!  formula ─► levels of each factor ─► summary (n, Σy) ─► IRLS: β ─► SQL ─► sites ─► XᵀWX, XᵀWz
//!            (grouped COUNTs: each       (k, saturation,     ▲                           │
//!             level ≥ k at every site)    starting values)   └──── β' = (XᵀWX)⁻¹ XᵀWz ◄──┘
//! ```
//! Fisher scoring by iteratively reweighted least squares needs, per iteration, only XᵀWX and
//! XᵀWz — sums over rows, so the network's sum is the pooled sum and the fit equals the pooled
//! fit to rounding. Levels and the summary are ordinary aggregate queries run by the caller
//! (the hub runs them as federated queries under the study, so study terms, both sides' Rego
//! policies, the minimum cell count, dominance and both audit trails apply). An iteration is
//! either one more aggregate query (p² SUMs; the path secure aggregation takes) or, faster, a
//! GLM site kernel ([`crate::kernel`]): the same sums computed natively in one pass over the
//! site's checked rows, under the same gate. This module plans the steps, reads their answers
//! and does the algebra; [`fit`] is the entry point.
//!
//! Disclosure rules (after DataSHIELD's `glmDS`): fewer than k observations, a factor level or
//! (binomial) an outcome class under k at any site, or more coefficients than
//! [`MAX_PARAMETER_SHARE`] × n (a saturated model reproduces its data) — refused.

pub(crate) mod design;
mod family;
mod formula;
mod inference;
pub(crate) mod kernel;
pub mod pooled;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use datafusion::arrow::datatypes::DataType;
use datafusion::execution::SessionState;
use medfed_core::glm::GlmFit;
use medfed_core::kernel::{KernelStep, KernelTask};
use medfed_core::result::{PrivacySummary, QueryResult, SiteOutcome};
use serde::{Deserialize, Serialize};

use crate::kernel::KernelRound;
use crate::variables::{self, VariableError};
use design::{Design, Kind, Level};
pub use family::Family;
use family::FamilySql;
pub use formula::{Formula, Term, Var, parse_formula};

/// DataSHIELD's `nfilter.glm` default: a model may have at most this share of n as
/// coefficients (configurable: [`medfed_privacy::ModelRules`]).
pub const MAX_PARAMETER_SHARE: f64 = 0.37;

/// R's `glm.control(maxit = 25)`.
pub const MAX_ITERATIONS: u32 = 25;

/// Relative change of every coefficient below which IRLS has converged. Tighter than R's
/// deviance criterion (1e-8) so that the estimate is the maximum-likelihood one to ~1e-12
/// whatever the starting point, and federated and pooled fits agree far past 1e-8.
pub const TOLERANCE: f64 = 1e-10;

/// What a researcher asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GlmSpec {
    /// The table (OMOP or an extra table the sites declare) whose rows are the observations.
    pub table: String,
    /// R model formula.
    pub formula: String,
    /// The family (canonical link).
    pub family: Family,
    /// Column of prior weights.
    #[serde(default)]
    pub weights: Option<String>,
    /// SQL condition selecting the rows to use (besides complete cases).
    #[serde(default, rename = "where")]
    pub filter: Option<String>,
}

/// One query of a fit, for progress and audit.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Levels of a categorical variable (or the binomial outcome's classes).
    Levels(String),
    /// Every site's say on the model (its rows, its policy) before anything about the cohort
    /// is released: a site that refuses is left out of every later step, with its reason.
    Check,
    /// Observation count and starting values.
    Summary,
    /// IRLS iteration (1-based).
    Iteration(u32),
    /// Deviance of the intercept-only model.
    NullDeviance,
}

/// Why a model cannot be fitted or released.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum GlmError {
    /// The formula does not parse.
    #[error("formula: {0}")]
    Formula(String),
    /// A variable, table or weight is unknown or unusable.
    #[error("{0}")]
    Model(String),
    /// Releasing the model would disclose individuals.
    #[error("refused (disclosure control): {0}")]
    Disclosive(String),
    /// The design or the data does not identify the coefficients.
    #[error("cannot fit: {0}")]
    Numeric(String),
    /// A site stopped (or started) answering between steps: IRLS must see the same rows in
    /// every step, so the fit is abandoned rather than mixing populations.
    #[error("the fit was abandoned: {0}")]
    SitesChanged(String),
}

/// Why a fit stopped: the model, or the query runner's own error.
#[derive(Debug)]
pub enum FitError<E> {
    /// The model or its disclosure rules.
    Glm(GlmError),
    /// Running a step's query failed.
    Run(E),
}

impl<E> From<GlmError> for FitError<E> {
    fn from(e: GlmError) -> Self {
        Self::Glm(e)
    }
}

/// Fits `spec`, running each step's SQL with `run` (for the hub: one federated query) and,
/// given `kernel`, each IRLS iteration as a GLM site kernel instead (the same sums computed
/// natively at the sites: one pass over the rows rather than p² SQL aggregates).
///
/// `state` resolves the table's columns (the hub's catalogue); `rules` are the network's: k,
/// which the hub also applies to every answer, and the model rules (saturation, residual
/// degrees of freedom) judged on the network's n.
pub async fn fit<E, F, Fut, K, KFut>(
    state: &SessionState,
    spec: &GlmSpec,
    rules: &medfed_privacy::DisclosureRules,
    mut run: F,
    mut kernel: Option<K>,
) -> Result<GlmFit, FitError<E>>
where
    F: FnMut(Step, String) -> Fut,
    Fut: std::future::Future<Output = Result<QueryResult, E>>,
    K: FnMut(Step, KernelTask) -> KFut,
    KFut: std::future::Future<Output = Result<KernelRound, E>>,
{
    let Planned {
        formula,
        design,
        reference_levels,
    } = plan(state, spec, &mut run).await?;
    let min_cell_count = rules.min_cell_count;
    let family = spec.family;
    let p = design.columns.len();
    let rows = design.glm_row_source();
    let task = |beta: &[f64]| KernelTask {
        rows: rows.clone(),
        step: KernelStep::Glm {
            family,
            beta: beta.to_vec(),
            intercept: formula.intercept,
        },
    };
    let summary_sql = design.summary_sql(family, spec.weights.is_some());
    let mut summary = run(Step::Summary, summary_sql.clone())
        .await
        .map_err(FitError::Run)?;
    let s = Answer::read(&summary)?;
    let n = s.count("n")?;
    if n < min_cell_count.max(1) {
        return Err(GlmError::Disclosive(format!(
            "fewer than k = {min_cell_count} complete observations"
        ))
        .into());
    }
    if s.count_or_zero("bad_w") > 0 {
        return Err(GlmError::Model("prior weights must be positive".into()).into());
    }
    if s.count_or_zero("bad_y") > 0 {
        return Err(GlmError::Model(match family {
            Family::Binomial => format!(
                "binomial needs the outcome {} coded 0/1; it has other values",
                formula.response
            ),
            _ => "poisson needs a count outcome (non-negative whole numbers)".into(),
        })
        .into());
    }
    if family == Family::Binomial {
        // Both classes present, each with at least k people at every site (the grouped query
        // lets each site suppress its own small class).
        let r = run(
            Step::Levels(formula.response.clone()),
            design.response_levels_sql(),
        )
        .await
        .map_err(FitError::Run)?;
        let classes = read_levels(&formula.response, &r)?;
        let labels: Vec<&str> = classes.iter().map(|l| l.label.as_str()).collect();
        if labels != ["0", "1"] {
            return Err(GlmError::Model(format!(
                "binomial needs both outcomes of {} among the complete cases; it has {}",
                formula.response,
                labels.join(", ")
            ))
            .into());
        }
    }
    // Every site's say on the model itself (its rows for p coefficients, its policy): a site
    // that refuses is left out of every later step, and the summary is taken again without it
    // (a second release, held to the differencing rule like any other).
    if let Some(k) = kernel.as_mut() {
        let check = k(Step::Check, task(&vec![0.0; p]))
            .await
            .map_err(FitError::Run)?;
        if check.answered() != answered(&summary) {
            summary = run(Step::Summary, summary_sql)
                .await
                .map_err(FitError::Run)?;
        }
    }
    let s = Answer::read(&summary)?;
    let n = s.count("n")?;
    let sites = answered(&summary);
    if n < min_cell_count.max(1) {
        return Err(GlmError::Disclosive(format!(
            "fewer than k = {min_cell_count} complete observations"
        ))
        .into());
    }
    if let Some(why) = rules.models.refuse(p, n, "the network's") {
        return Err(GlmError::Disclosive(why).into());
    }
    let (sw, swy, swo) = (s.number("sw")?, s.number("swy")?, s.number("swo")?);
    let mean_y = swy / sw;
    if family == Family::Poisson && mean_y <= 0.0 {
        return Err(GlmError::Numeric("every outcome is 0".into()).into());
    }
    let start = |with_offset: bool| {
        let mut b = vec![0.0; p];
        if formula.intercept {
            b[0] = family.link_of(mean_y) - if with_offset { swo / sw } else { 0.0 };
        }
        b
    };

    let mut beta = start(true);
    let mut last: Option<(Released, inference::Sums)> = None;
    let mut converged = false;
    let mut iterations = 0;
    while iterations < MAX_ITERATIONS {
        iterations += 1;
        let step = Step::Iteration(iterations);
        let (released, sums) = match kernel.as_mut() {
            Some(k) => {
                let round = k(step, task(&beta)).await.map_err(FitError::Run)?;
                let sums = inference::Sums::from_round(&round, p)?;
                (Released::from_round(round, min_cell_count), sums)
            }
            None => {
                let sql = design.iteration_sql(family, &beta, false);
                let result = run(step, sql).await.map_err(FitError::Run)?;
                let sums = inference::Sums::read(&Answer::read(&result)?, p)?;
                (Released::from_result(result), sums)
            }
        };
        if released.answered != sites {
            let lost: Vec<&String> = sites.symmetric_difference(&released.answered).collect();
            return Err(GlmError::SitesChanged(format!(
                "site(s) {lost:?} answered the model's first step but not iteration {iterations} \
                 (or the other way round); refit to use the sites that answer now"
            ))
            .into());
        }
        if sums.n != n {
            return Err(GlmError::Numeric(format!(
                "the data changed during the fit ({n} then {} observations)",
                sums.n
            ))
            .into());
        }
        let next = sums.solve()?;
        let moved = next
            .iter()
            .zip(&beta)
            .all(|(b1, b0)| (b1 - b0).abs() <= TOLERANCE * (b0.abs() + 0.1));
        beta = next;
        last = Some((released, sums));
        if moved {
            converged = true;
            break;
        }
    }
    let (released, sums) = last.expect("at least one iteration");
    let null_deviance = if formula.intercept && formula.offsets.is_empty() {
        let null = start(false);
        Some(match kernel.as_mut() {
            Some(k) => {
                let round = k(Step::NullDeviance, task(&null))
                    .await
                    .map_err(FitError::Run)?;
                inference::Sums::from_round(&round, p)?.deviance
            }
            None => {
                let sql = design.iteration_sql(family, &null, true);
                let r = run(Step::NullDeviance, sql).await.map_err(FitError::Run)?;
                Answer::read(&r)?.number("dev")?
            }
        })
    } else {
        None
    };
    let aic = family.aic(&family::AicTerms {
        n,
        p,
        deviance: sums.deviance,
        sum_log_w: s.number_or_zero("slw"),
        sum_w_y: swy,
        sum_w_ylny: s.number_or_zero("swylny"),
        sum_w_lfact: s.number_or_zero("swlf"),
    });
    let names: Vec<String> = design.columns.iter().map(|c| c.name.clone()).collect();
    let estimates = inference::estimates(&sums, &beta, &names, family, n)?;
    Ok(GlmFit {
        formula: spec.formula.clone(),
        family: family.name().into(),
        link: family.link().into(),
        n,
        df_residual: n - p as u64,
        iterations,
        converged,
        deviance: sums.deviance,
        null_deviance,
        aic,
        dispersion: estimates.dispersion,
        statistic: if family.estimates_dispersion() {
            "t"
        } else {
            "z"
        }
        .into(),
        coefficients: estimates.coefficients,
        reference_levels,
        sites: released.sites,
        privacy: released.privacy,
        registered: None,
    })
}

/// Who answered an iteration and how it was protected (for the fit's report).
struct Released {
    answered: BTreeSet<String>,
    sites: BTreeMap<String, SiteOutcome>,
    privacy: PrivacySummary,
}

impl Released {
    fn from_result(r: QueryResult) -> Self {
        Self {
            answered: answered(&r),
            sites: r.sites,
            privacy: r.privacy,
        }
    }

    fn from_round(r: KernelRound, min_cell_count: u64) -> Self {
        Self {
            answered: r.answered(),
            // Each site applied the stricter of the network's k and its own to its rows.
            privacy: PrivacySummary {
                mode: "exact".into(),
                min_cell_count,
                secure_aggregation: r.is_secure(),
                ..PrivacySummary::default()
            },
            sites: r.sites,
        }
    }
}

/// A formula resolved against the catalogue and the network's levels.
pub(crate) struct Planned {
    pub formula: Formula,
    pub design: Design,
    pub reference_levels: BTreeMap<String, String>,
}

/// Parses the formula, learns each variable's type from the catalogue, refuses identifiers,
/// and asks the network for the levels of every categorical variable.
pub(crate) async fn plan<E, F, Fut>(
    state: &SessionState,
    spec: &GlmSpec,
    run: &mut F,
) -> Result<Planned, FitError<E>>
where
    F: FnMut(Step, String) -> Fut,
    Fut: std::future::Future<Output = Result<QueryResult, E>>,
{
    let formula = parse_formula(&spec.formula)?;
    variables::check_filter(spec.filter.as_deref()).map_err(GlmError::Model)?;
    let mut columns = formula.columns();
    columns.extend(spec.weights.clone());
    let types = variables::resolve(state, &spec.table, &columns)
        .await
        .map_err(|e| match e {
            VariableError::Identifier(_) => GlmError::Disclosive(e.to_string()),
            VariableError::Unknown(m) => GlmError::Model(m),
        })?;
    let type_of = |c: &str| types[&c.to_ascii_lowercase()].clone();
    let numeric = variables::is_numeric;
    if !numeric(&type_of(&formula.response)) {
        return Err(GlmError::Model(format!(
            "the outcome {} must be a number (0/1 for binomial)",
            formula.response
        ))
        .into());
    }
    let is_text = variables::is_text;
    // Placeholder kinds: the level queries need only the design's rows.
    let rows = Design::new(
        &formula,
        &spec.table,
        spec.weights.as_deref(),
        spec.filter.as_deref(),
        &|_| Kind::Numeric,
    );
    let mut levels: BTreeMap<String, Vec<Level>> = BTreeMap::new();
    for v in formula.terms.iter().flatten() {
        let t = type_of(&v.column);
        if !(v.factor || is_text(&t)) {
            if !numeric(&t) {
                return Err(GlmError::Model(format!(
                    "{} is a {t} column; use a number, or factor({}) for categories",
                    v.column, v.column
                ))
                .into());
            }
            continue;
        }
        if levels.contains_key(&v.column) {
            continue;
        }
        let r = run(Step::Levels(v.label()), rows.level_sql(&v.column))
            .await
            .map_err(FitError::Run)?;
        levels.insert(v.column.clone(), read_levels(&v.label(), &r)?);
    }
    for (_, offset_column) in formula.offsets.iter().map(|(c, l)| (l, c)) {
        if !numeric(&type_of(offset_column)) {
            return Err(GlmError::Model(format!("offset {offset_column} must be a number")).into());
        }
    }
    let kind_of = |v: &Var| match levels.get(&v.column) {
        Some(l) => Kind::Categorical(l.clone()),
        None if type_of(&v.column) == DataType::Boolean => Kind::Boolean,
        None => Kind::Numeric,
    };
    let design = Design::new(
        &formula,
        &spec.table,
        spec.weights.as_deref(),
        spec.filter.as_deref(),
        &kind_of,
    );
    let mut reference_levels = BTreeMap::new();
    for v in formula.terms.iter().flatten() {
        if let Some(l) = levels.get(&v.column) {
            reference_levels.insert(v.label(), l[0].label.clone());
        }
    }
    Ok(Planned {
        formula,
        design,
        reference_levels,
    })
}

/// The levels of a grouped `level, n` answer, in R's order (numbers numerically, text by
/// code point). A level withheld at any site (fewer than k there) refuses the model.
pub(crate) fn read_levels(label: &str, r: &QueryResult) -> Result<Vec<Level>, GlmError> {
    if let Some(s) = r.privacy.suppressed.first() {
        return Err(GlmError::Disclosive(format!(
            "a level of {label} has too few observations: {}",
            s.reason
        )));
    }
    let mut levels: Vec<(Option<f64>, Level)> = Vec::new();
    for row in &r.rows {
        let level = match &row[0] {
            serde_json::Value::Number(n) => {
                let x = n.as_f64().unwrap_or(f64::NAN);
                let label = if x.fract() == 0.0 && x.abs() < 1e15 {
                    format!("{}", x as i64)
                } else {
                    n.to_string()
                };
                (
                    Some(x),
                    Level {
                        sql: n.to_string(),
                        label,
                    },
                )
            }
            serde_json::Value::String(s) => (
                None,
                Level {
                    sql: format!("'{}'", s.replace('\'', "''")),
                    label: s.clone(),
                },
            ),
            serde_json::Value::Bool(b) => (
                Some(f64::from(u8::from(*b))),
                Level {
                    sql: b.to_string(),
                    label: b.to_string().to_uppercase(),
                },
            ),
            _ => continue,
        };
        levels.push(level);
    }
    levels.sort_by(|(a, la), (b, lb)| match (a, b) {
        (Some(a), Some(b)) => a.total_cmp(b),
        _ => la.label.cmp(&lb.label),
    });
    if levels.len() < 2 {
        return Err(GlmError::Model(format!(
            "{label} has {} level(s) among the complete cases; a categorical variable needs two",
            levels.len()
        )));
    }
    Ok(levels.into_iter().map(|(_, l)| l).collect())
}

/// The sites whose partial is in `r`.
pub(crate) fn answered(r: &QueryResult) -> BTreeSet<String> {
    r.sites
        .iter()
        .filter(|(_, o)| o.status == medfed_core::result::SiteStatus::Answered)
        .map(|(name, _)| name.clone())
        .collect()
}

/// The single row of a step's answer, by column name.
pub(crate) struct Answer<'a> {
    columns: &'a [String],
    row: &'a [serde_json::Value],
}

impl<'a> Answer<'a> {
    pub(crate) fn read(r: &'a QueryResult) -> Result<Self, GlmError> {
        if let Some(s) = r.privacy.suppressed.first() {
            return Err(GlmError::Disclosive(s.reason.clone()));
        }
        let row = r
            .rows
            .first()
            .ok_or_else(|| GlmError::Numeric("no rows matched".into()))?;
        Ok(Answer {
            columns: &r.columns,
            row,
        })
    }

    fn value(&self, name: &str) -> Option<&serde_json::Value> {
        let i = self.columns.iter().position(|c| c == name)?;
        self.row.get(i)
    }

    pub(crate) fn number(&self, name: &str) -> Result<f64, GlmError> {
        match self.value(name).and_then(serde_json::Value::as_f64) {
            Some(x) if x.is_finite() => Ok(x),
            Some(_) => Err(GlmError::Numeric(format!(
                "{name} is not finite: the fit diverged (separation, or a covariate on a huge \
                 scale)"
            ))),
            None => Err(GlmError::Disclosive(format!("{name} was withheld"))),
        }
    }

    fn number_or_zero(&self, name: &str) -> f64 {
        self.number(name).unwrap_or(0.0)
    }

    pub(crate) fn count(&self, name: &str) -> Result<u64, GlmError> {
        self.value(name)
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| GlmError::Disclosive(format!("{name} was withheld")))
    }

    fn count_or_zero(&self, name: &str) -> u64 {
        self.count(name).unwrap_or(0)
    }
}

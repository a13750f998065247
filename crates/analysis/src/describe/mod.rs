//! Descriptive statistics, federated: summaries, histograms with quantiles, two-way tables with
//! chi-square, correlation matrices.
//!
//! Like the GLM and Kaplan–Meier, each description is one or two aggregate queries that go
//! through the ordinary federated path, so every disclosure rule, DP noise, secure aggregation,
//! the study's terms and both audit trails apply without a line of analysis-specific site code:
//!
//! | kind | queries | the sites return |
//! |---|---|---|
//! | `summary` | 2 | n and Σx per variable; then Σ(x − x̄)² around the pooled mean |
//! | `correlation` | 2 | n and Σxᵢ over complete cases; then Σ(xᵢ − x̄ᵢ)(xⱼ − x̄ⱼ) |
//! | `histogram` | 1 | a count per declared bin (plus below/above) |
//! | `table` | 1 | a count per pair of levels |
//!
//! Centring on the pooled mean in a second round (rather than Σx² in one) keeps the variance
//! exact to rounding: the answer equals the pooled computation, not a cancellation-prone
//! formula. Counts are what DP studies add noise to, so a histogram in a DP study is a DP
//! histogram and its quantiles are DP quantiles.
//!
//! # Example
//! ```
//! use medfed_analysis::describe::{DescribeSpec, Kind};
//! let spec: DescribeSpec = serde_json::from_str(
//!     r#"{"table": "person", "kind": "histogram", "variable": "2024 - year_of_birth",
//!         "low": 0, "width": 10, "bins": 10, "quantiles": [0.25, 0.5, 0.75]}"#,
//! ).unwrap();
//! assert!(matches!(spec.kind, Kind::Histogram { bins: 10, .. }));
//! ```

mod crosstab;
mod histogram;
mod moments;

use std::collections::BTreeMap;

use datafusion::execution::SessionState;
use medfed_core::describe::Description;
use medfed_core::result::QueryResult;
use serde::{Deserialize, Serialize};

use crate::variables::{self, VariableError};

/// Most variables of a summary or a correlation matrix.
pub const MAX_VARIABLES: usize = 20;
/// Most bins of a histogram.
pub const MAX_BINS: usize = 200;
/// Most levels on either side of a two-way table.
pub const MAX_LEVELS: usize = 50;

/// What a researcher asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DescribeSpec {
    /// The table whose rows are described.
    pub table: String,
    /// SQL condition selecting the rows.
    #[serde(default, rename = "where")]
    pub filter: Option<String>,
    /// Which description.
    #[serde(flatten)]
    pub kind: Kind,
}

/// The descriptions. Variables are column names or SQL expressions over the table's columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Kind {
    /// Count, mean, variance, standard deviation per variable.
    Summary {
        /// The variables.
        variables: Vec<String>,
    },
    /// Counts in `bins` bins of `width` from `low`, and quantiles read off them.
    Histogram {
        /// The variable.
        variable: String,
        /// First bin's lower edge.
        low: f64,
        /// Bin width.
        width: f64,
        /// Number of bins.
        bins: usize,
        /// Probabilities of the quantiles to report (e.g. 0.5 for the median).
        #[serde(default)]
        quantiles: Vec<f64>,
    },
    /// Two-way contingency table with Pearson's chi-square.
    Table {
        /// Row variable.
        rows: String,
        /// Column variable.
        columns: String,
    },
    /// Pearson correlation matrix over complete cases.
    Correlation {
        /// The variables (two or more).
        variables: Vec<String>,
    },
}

/// Why a description cannot be computed or released.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DescribeError {
    /// The request itself is wrong.
    #[error("{0}")]
    Invalid(String),
    /// Releasing it would disclose individuals.
    #[error("refused (disclosure control): {0}")]
    Disclosive(String),
    /// A site answered one round of a two-round statistic but not the other: the rounds would
    /// describe different rows, so nothing is released.
    #[error("abandoned: {0}")]
    SitesChanged(String),
}

impl From<VariableError> for DescribeError {
    fn from(e: VariableError) -> Self {
        match e {
            VariableError::Identifier(_) => Self::Disclosive(e.to_string()),
            VariableError::Unknown(m) => Self::Invalid(m),
        }
    }
}

/// A description failed: by its own rules, or running one of its queries.
#[derive(Debug)]
pub enum Failure<E> {
    /// The request or its disclosure rules.
    Describe(DescribeError),
    /// Running a query failed (the hub's error: refused, a site down, …).
    Run(E),
}

impl<E> From<DescribeError> for Failure<E> {
    fn from(e: DescribeError) -> Self {
        Self::Describe(e)
    }
}

/// Computes `spec`, running each query with `run` (for the hub: one federated query).
///
/// `state` resolves the table's columns (the hub's catalogue); `min_cell_count` is the network's
/// k, which the hub also applies to every answer.
pub async fn describe<E, F, Fut>(
    state: &SessionState,
    spec: &DescribeSpec,
    min_cell_count: u64,
    run: F,
) -> Result<Description, Failure<E>>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<QueryResult, E>>,
{
    variables::check_filter(spec.filter.as_deref()).map_err(DescribeError::Invalid)?;
    let mut runner = Runner {
        run,
        sites: BTreeMap::new(),
        last: None,
        queries: 0,
    };
    let k = min_cell_count.max(1);
    let statistics = match &spec.kind {
        Kind::Summary { variables } => {
            let source = Source::resolve(state, spec, variables, 1).await?;
            moments::summary(&source, k, &mut runner).await?
        }
        Kind::Correlation { variables } => {
            let source = Source::resolve(state, spec, variables, 2).await?;
            moments::correlation(&source, k, &mut runner).await?
        }
        Kind::Histogram {
            variable,
            low,
            width,
            bins,
            quantiles,
        } => {
            let source = Source::resolve(state, spec, std::slice::from_ref(variable), 1).await?;
            let bins = histogram::Bins::new(*low, *width, *bins, quantiles)?;
            histogram::histogram(&source, &bins, &mut runner).await?
        }
        Kind::Table { rows, columns } => {
            let source = Source::resolve_any(state, spec, &[rows.clone(), columns.clone()]).await?;
            crosstab::crosstab(&source, &mut runner).await?
        }
    };
    let last = runner.last.expect("every description runs a query");
    Ok(Description {
        statistics,
        sites: runner.sites,
        privacy: last.privacy,
        queries: runner.queries,
    })
}

/// Runs queries and keeps what the description reports about them.
struct Runner<F> {
    run: F,
    sites: BTreeMap<String, medfed_core::result::SiteOutcome>,
    last: Option<QueryResult>,
    queries: usize,
}

impl<F> Runner<F> {
    async fn query<E, Fut>(&mut self, sql: String) -> Result<QueryResult, Failure<E>>
    where
        F: FnMut(String) -> Fut,
        Fut: std::future::Future<Output = Result<QueryResult, E>>,
    {
        let answer = (self.run)(sql).await.map_err(Failure::Run)?;
        self.queries += 1;
        let answered = |r: &QueryResult| -> Vec<String> {
            r.sites
                .iter()
                .filter(|(_, o)| o.status == medfed_core::result::SiteStatus::Answered)
                .map(|(name, _)| name.clone())
                .collect()
        };
        if let Some(first) = &self.last
            && answered(first) != answered(&answer)
        {
            return Err(DescribeError::SitesChanged(format!(
                "the sites answering changed between rounds ({:?}, then {:?}); ask again",
                answered(first),
                answered(&answer)
            ))
            .into());
        }
        self.sites.extend(answer.sites.clone());
        self.last = Some(answer.clone());
        Ok(answer)
    }
}

/// The rows described: the variables cast to numbers (or kept as they are, for a table's
/// levels) in a sub-select over the table and the researcher's filter.
struct Source {
    /// The variables as the researcher wrote them.
    names: Vec<String>,
    /// `FROM (SELECT … AS __v0, … FROM table WHERE filter) AS __d`.
    from: String,
    /// Whether the rows carry `person_id` (a query nesting another select keeps it too).
    person: bool,
}

impl Source {
    /// Numeric variables: at least `min` of them, at most [`MAX_VARIABLES`].
    async fn resolve(
        state: &SessionState,
        spec: &DescribeSpec,
        names: &[String],
        min: usize,
    ) -> Result<Self, DescribeError> {
        if names.len() < min || names.len() > MAX_VARIABLES {
            return Err(DescribeError::Invalid(format!(
                "{} variables; between {min} and {MAX_VARIABLES}",
                names.len()
            )));
        }
        let types = variables::resolve_expressions(state, &spec.table, names).await?;
        let person = has_person(state, &spec.table).await;
        if let Some((name, _)) = names
            .iter()
            .zip(&types)
            .find(|(_, t)| !variables::is_numeric(t))
        {
            return Err(DescribeError::Invalid(format!(
                "{name} is not a number (a two-way table counts categories)"
            )));
        }
        Ok(Self::new(spec, names, person, |e| {
            format!("CAST(({e}) AS DOUBLE)")
        }))
    }

    /// Variables of any type (levels of a table).
    async fn resolve_any(
        state: &SessionState,
        spec: &DescribeSpec,
        names: &[String],
    ) -> Result<Self, DescribeError> {
        variables::resolve_expressions(state, &spec.table, names).await?;
        let person = has_person(state, &spec.table).await;
        Ok(Self::new(spec, names, person, |e| format!("({e})")))
    }

    /// `person`: carry `person_id` through, so that a DP study can bound each person's
    /// contribution (the unit of privacy is the person).
    fn new(
        spec: &DescribeSpec,
        names: &[String],
        person: bool,
        wrap: impl Fn(&str) -> String,
    ) -> Self {
        let mut select: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, e)| format!("{} AS __v{i}", wrap(e)))
            .collect();
        if person {
            select.push("person_id".into());
        }
        let filter = spec
            .filter
            .as_deref()
            .map(|f| format!(" WHERE ({f})"))
            .unwrap_or_default();
        Self {
            names: names.to_vec(),
            from: format!(
                "FROM (SELECT {} FROM {}{filter}) AS __d",
                select.join(", "),
                spec.table
            ),
            person,
        }
    }

    /// `__v0 IS NOT NULL AND …` for every variable.
    fn complete(&self) -> String {
        (0..self.names.len())
            .map(|i| format!("__v{i} IS NOT NULL"))
            .collect::<Vec<_>>()
            .join(" AND ")
    }
}

/// Whether `table` has a `person_id` column.
async fn has_person(state: &SessionState, table: &str) -> bool {
    state
        .create_logical_plan(&format!("SELECT person_id FROM {table}"))
        .await
        .is_ok()
}

/// A number of an ungrouped answer's single row, by column name.
fn number(answer: &QueryResult, name: &str) -> Result<f64, DescribeError> {
    if let Some(s) = answer.privacy.suppressed.first() {
        return Err(DescribeError::Disclosive(s.reason.clone()));
    }
    let row = answer
        .rows
        .first()
        .ok_or_else(|| DescribeError::Disclosive("no rows matched".into()))?;
    let i = answer.columns.iter().position(|c| c == name);
    match i
        .and_then(|i| row.get(i))
        .and_then(serde_json::Value::as_f64)
    {
        Some(x) if x.is_finite() => Ok(x),
        Some(_) => Err(DescribeError::Invalid(format!("{name} is not finite"))),
        None => Err(DescribeError::Disclosive(format!("{name} was withheld"))),
    }
}

/// A JSON scalar as a level's label.
fn label(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;

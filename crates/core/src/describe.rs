//! Descriptive statistics as a researcher receives them (`POST /v1/analyses/describe`,
//! `medfed describe … --format json`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::result::{PrivacySummary, SiteOutcome};

/// One descriptive analysis's answer, with where it came from and how it was protected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Description {
    /// The statistics.
    #[serde(flatten)]
    pub statistics: Statistics,
    /// What each site did, over every query the analysis sent.
    pub sites: BTreeMap<String, SiteOutcome>,
    /// How the last query's answer was protected (the same rules held for every query).
    #[serde(default)]
    pub privacy: PrivacySummary,
    /// Federated queries the analysis sent.
    pub queries: usize,
}

/// The statistics of one kind of description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Statistics {
    /// Count, mean, variance per variable.
    Summary {
        /// One per variable, in request order.
        variables: Vec<Moments>,
    },
    /// Counts in declared bins, and quantiles read off them.
    Histogram(Histogram),
    /// A two-way contingency table and its chi-square test of independence.
    Table(Crosstab),
    /// Pearson correlations over the rows where every variable is present.
    Correlation(Correlation),
}

/// Count, mean and spread of one variable (rows where it is not null).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Moments {
    /// The variable as the researcher wrote it.
    pub variable: String,
    /// Rows with a value.
    pub n: u64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample variance (n − 1 denominator).
    pub variance: f64,
    /// Sample standard deviation.
    pub sd: f64,
    /// Standard error of the mean.
    pub std_error: f64,
}

/// A histogram on declared, equal-width bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Histogram {
    /// The variable.
    pub variable: String,
    /// Bin edges: `bins + 1` numbers.
    pub breaks: Vec<f64>,
    /// Count per bin; `null` where withheld (fewer than k) — never a guess.
    pub counts: Vec<Option<f64>>,
    /// Values below the first edge, and at or above the last (`null` when withheld).
    pub below: Option<f64>,
    /// See `below`.
    pub above: Option<f64>,
    /// Quantiles by linear interpolation inside the bin that holds them (`"0.5"` → median).
    /// Absent when a withheld bin makes them uncertain.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quantiles: BTreeMap<String, f64>,
    /// Why quantiles are absent or approximate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A two-way table of counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Crosstab {
    /// The row variable.
    pub rows: String,
    /// The column variable.
    pub columns: String,
    /// Row levels, sorted.
    pub row_levels: Vec<String>,
    /// Column levels, sorted.
    pub column_levels: Vec<String>,
    /// `counts[r][c]`; `null` where withheld (fewer than k), 0 where no site had the pair.
    pub counts: Vec<Vec<Option<f64>>>,
    /// Pearson's chi-square test of independence; absent when a cell is withheld.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chi_square: Option<ChiSquare>,
    /// Why the test is absent, or a caution about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Pearson's chi-square statistic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChiSquare {
    /// Σ (observed − expected)² / expected.
    pub statistic: f64,
    /// (rows − 1)(columns − 1).
    pub df: u64,
    /// Upper-tail probability.
    pub p: f64,
}

/// A correlation matrix over complete cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Correlation {
    /// The variables, in request order.
    pub variables: Vec<String>,
    /// Rows where every variable is present.
    pub n: u64,
    /// Means over those rows.
    pub means: Vec<f64>,
    /// Sample standard deviations over those rows.
    pub sds: Vec<f64>,
    /// Pearson correlations, `matrix[i][j]`.
    pub matrix: Vec<Vec<f64>>,
}

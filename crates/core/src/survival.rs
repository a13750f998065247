//! Federated survival analyses as a researcher receives them: Kaplan–Meier curves
//! (`POST /v1/analyses/km`, `medfed km`) and Cox models (`POST /v1/analyses/cox`, `medfed cox`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::glm::Coefficients;
use crate::result::{PrivacySummary, SiteOutcome};

/// Survival curves per group, on declared time bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KmFit {
    /// The time column and its unit as the researcher stated them.
    pub time: String,
    /// The event column (1 = event, 0 = censored).
    pub event: String,
    /// The grouping column, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// One curve per released group.
    pub curves: Vec<KmCurve>,
    /// Groups withheld (fewer than k people), by their label.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub withheld_groups: Vec<String>,
    /// What each site did.
    pub sites: BTreeMap<String, SiteOutcome>,
    /// How the counts were protected.
    #[serde(default)]
    pub privacy: PrivacySummary,
}

/// One group's curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KmCurve {
    /// The group's value (`all` without a grouping).
    pub group: String,
    /// People in the group.
    pub n: u64,
    /// Bins in time order, up to where the risk set falls under k.
    pub bins: Vec<KmBin>,
    /// Start of the first bin not shown because fewer than k were still at risk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated_at: Option<f64>,
}

/// One time bin `[start, end)` of a curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KmBin {
    /// Bin start (inclusive).
    pub start: f64,
    /// Bin end (exclusive).
    pub end: f64,
    /// People still followed at the bin's start.
    pub at_risk: u64,
    /// Events in the bin.
    pub events: u64,
    /// Estimated survival at the bin's end.
    pub survival: f64,
    /// Lower 95 % bound (Greenwood, log scale, as R's `survfit` default).
    pub lower: f64,
    /// Upper 95 % bound.
    pub upper: f64,
}

/// A Cox proportional-hazards model stratified by site, named as R's `summary(coxph(...))`.
///
/// Coefficients are log hazard ratios (`estimate`, `std_error`, Wald `z` and `p`, `ci95` on the
/// log scale); `hazard_ratios` gives `exp` of the estimate and of its interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CoxFit {
    /// The formula as written (`Surv(time, event) ~ …`).
    pub formula: String,
    /// How ties were handled (`efron` or `breslow`).
    pub ties: String,
    /// Strata: one per site (baseline hazards differ by hospital).
    pub strata: String,
    /// Observations used.
    pub n: u64,
    /// Events among them.
    pub events: u64,
    /// Newton–Raphson iterations.
    pub iterations: u32,
    /// Whether the partial likelihood converged.
    pub converged: bool,
    /// Partial log-likelihood at the estimate.
    pub loglik: f64,
    /// Partial log-likelihood at β = 0.
    pub loglik_null: f64,
    /// Likelihood-ratio test against the null model: statistic, df, p.
    pub likelihood_ratio: Test,
    /// Log hazard ratios with their inference, in model order.
    pub coefficients: Coefficients,
    /// `exp(coef)` with its 95 % interval, by coefficient.
    pub hazard_ratios: BTreeMap<String, HazardRatio>,
    /// Reference level of each categorical covariate.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reference_levels: BTreeMap<String, String>,
    /// What each site did.
    pub sites: BTreeMap<String, SiteOutcome>,
    /// How the sums were protected.
    #[serde(default)]
    pub privacy: PrivacySummary,
}

/// A test statistic with its degrees of freedom and p-value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Test {
    /// The statistic.
    pub statistic: f64,
    /// Degrees of freedom.
    pub df: u32,
    /// Upper-tail p-value.
    pub p: f64,
}

/// A hazard ratio and its 95 % Wald interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HazardRatio {
    /// `exp(coef)`.
    pub estimate: f64,
    /// Lower 95 % bound.
    pub lower: f64,
    /// Upper 95 % bound.
    pub upper: f64,
}

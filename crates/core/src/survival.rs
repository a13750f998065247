//! A federated Kaplan–Meier estimate as a researcher receives it (`POST /v1/analyses/km`,
//! `medfed km --format json`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::result::{PrivacySummary, SiteOutcome};

/// Survival curves per group, on declared time bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

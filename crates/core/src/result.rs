//! A federated answer as a researcher receives it: one merged table and what each site did.
//!
//! This is the JSON the hub returns from `POST /v1/queries` and `medfed query --format json` prints:
//! `{"columns": [...], "rows": [[...]], "sites": {"north": {"status": "answered", ...}}}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The merged result of one federated query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueryResult {
    /// Output column names, in SELECT order.
    pub columns: Vec<String>,
    /// Rows of JSON scalars (numbers, strings, booleans, null), one entry per column.
    pub rows: Vec<Vec<serde_json::Value>>,
    /// What happened at each site that was asked, by site name.
    pub sites: BTreeMap<String, SiteOutcome>,
    /// How the result was protected: suppressed rows, noise, ε spent and left.
    #[serde(default)]
    pub privacy: PrivacySummary,
}

/// How a released result was protected, stated with the result.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PrivacySummary {
    /// `exact` (disclosure rules only) or `dp` (noise as well).
    pub mode: String,
    /// The network's minimum cell count (sites may apply a larger one).
    pub min_cell_count: u64,
    /// Rows whose statistics are withheld (null in `rows`), with why.
    pub suppressed: Vec<SuppressedRow>,
    /// The noise mechanism, for DP results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<String>,
    /// ε this release spent at each answering site.
    pub epsilon: f64,
    /// δ this release spent at each answering site.
    pub delta: f64,
    /// Noise added to each site statistic, by what it computes (`count(*)`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub noise: BTreeMap<String, NoiseNote>,
    /// Per site: suppression and budget.
    pub sites: BTreeMap<String, SitePrivacy>,
    /// Whether the hub saw only the masked sum of the sites' partials.
    pub secure_aggregation: bool,
    /// Where the minimum cell count was applied: `network` (to the sum of all sites, under
    /// secure aggregation) or `site` (to each site's own groups).
    #[serde(default)]
    pub k_applied_to: String,
    /// Groups summed under secure aggregation but withheld, by reason; the hub never learned
    /// their keys, so they have no row.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub withheld_groups: BTreeMap<String, usize>,
    /// Why the result was protected as it was, where that is not the network's default (e.g.
    /// per-site k because secure aggregation is off or too few sites answered).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// How released counts were rounded, when they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rounding: Option<String>,
    /// Every check the airlock ran on this release and each row's outcome (as ACRO's
    /// evidence); also in the release's audit entry.
    #[serde(default, skip_serializing_if = "Evidence::is_empty")]
    pub evidence: Evidence,
}

/// What the airlock checked on one release.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Evidence {
    /// Each check that ran on every cell, with its setting and outcome.
    pub checks: Vec<CheckRun>,
    /// One per row of `rows`, in order: `released` when every check passed for it, else the
    /// check that blanked its statistics. Groups withheld without a row are counted in the
    /// checks' `withheld`.
    pub rows: Vec<String>,
}

impl Evidence {
    /// True when nothing was recorded (results built before evidence existed).
    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }
}

/// One check of the airlock on one release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckRun {
    /// `min_cell_count`, `dominance`, `class_disclosure`, `complementary`, `differencing`,
    /// `rounding` or `differential_privacy`.
    pub check: String,
    /// Its setting, e.g. `k = 10`.
    pub setting: String,
    /// What it was judged on, e.g. `the network's total`.
    pub judged_on: String,
    /// `pass` (nothing withheld), `withheld` (some groups withheld or blanked), `applied`
    /// (rounding, noise) or `review` (held for a custodian's review).
    pub outcome: String,
    /// Groups it withheld or blanked.
    pub withheld: usize,
}

/// A row whose statistics were withheld.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SuppressedRow {
    /// Index into `rows`.
    pub row: usize,
    /// Why, in words.
    pub reason: String,
}

/// The noise on one statistic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NoiseNote {
    /// The distribution the noise was drawn from, as the sites applied it (`discrete
    /// Laplace`, `Laplace`, `discrete Gaussian`, or an AVG's centred sum), of which
    /// `scale_per_site` is the scale.
    #[serde(default)]
    pub distribution: String,
    /// Scale of the noise each site added: the Laplace scale, or under secure aggregation the
    /// standard deviation of its Gaussian share.
    pub scale_per_site: f64,
    /// Half-width of the 95 % interval of the merged statistic's noise.
    pub ci95: f64,
}

/// What one site's privacy layer did.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SitePrivacy {
    /// Groups it suppressed before sending.
    pub suppressed: usize,
    /// ε this release spent there.
    pub epsilon_spent: f64,
    /// ε left for the study there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon_remaining: Option<f64>,
    /// δ left for the study there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_remaining: Option<f64>,
    /// Noisy group size a group needed to be released there (DP with groups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
}

impl QueryResult {
    /// Names of the sites whose partials are in this result.
    pub fn answered(&self) -> impl Iterator<Item = &str> {
        self.sites
            .iter()
            .filter(|(_, o)| o.status == SiteStatus::Answered)
            .map(|(n, _)| n.as_str())
    }

    /// True when some asked site is missing from the result.
    pub fn is_partial(&self) -> bool {
        self.sites
            .values()
            .any(|o| o.status != SiteStatus::Answered)
    }
}

/// What one site did with its part of a query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SiteOutcome {
    /// How it ended.
    pub status: SiteStatus,
    /// Wall time from fan-out to answer (or failure), in milliseconds.
    pub elapsed_ms: f64,
    /// Why it failed or refused; absent when it answered. Never carries row-level data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The end state of a site's part of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SiteStatus {
    /// The site returned its partial and it is merged into the result.
    Answered,
    /// The site could not be reached or failed while running.
    Failed,
    /// The site refused the request under its own rules.
    Refused,
    /// The site did not answer within the per-site deadline.
    TimedOut,
}

impl std::fmt::Display for SiteStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SiteStatus::Answered => "answered",
            SiteStatus::Failed => "failed",
            SiteStatus::Refused => "refused",
            SiteStatus::TimedOut => "timed out",
        })
    }
}

//! A model trained by federated learning, as a researcher receives it
//! (`POST /v1/analyses/fedavg`, `medfed train`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::kernel::ModelKind;
use crate::result::{PrivacySummary, SiteOutcome};

/// A federated model and how it was trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TrainedModel {
    /// The formula (`y ~ features`) its inputs were built from.
    pub formula: String,
    /// The model.
    pub model: ModelKind,
    /// `fedavg`, or `fedprox` with a proximal term.
    pub algorithm: String,
    /// Rounds run.
    pub rounds: u32,
    /// Whether the updates shrank below the tolerance.
    pub converged: bool,
    /// Training rows over the sites of the last round.
    pub n: u64,
    /// Input features in model order (R's names for the design columns).
    pub features: Vec<String>,
    /// Each feature's standardisation `[mean, sd]` (network-wide), applied before the model.
    pub scaling: Vec<[f64; 2]>,
    /// Flat parameters on the standardised inputs ([`ModelKind::parameters`] of them).
    pub weights: Vec<f64>,
    /// Logistic regression only: coefficients on the original scale, by R's names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coefficients: Option<BTreeMap<String, f64>>,
    /// What happened in each round.
    pub history: Vec<RoundRecord>,
    /// ε spent at each site (DP training), by zCDP over the rounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
    /// What each site did in the last round.
    pub sites: BTreeMap<String, SiteOutcome>,
    /// How the updates were protected.
    #[serde(default)]
    pub privacy: PrivacySummary,
}

/// One round of training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RoundRecord {
    /// Round number (1-based).
    pub round: u32,
    /// Sites selected for the round.
    pub selected: Vec<String>,
    /// Sites whose update was averaged in.
    pub answered: Vec<String>,
    /// Mean log-loss of the round's global model on the answering sites' rows (not under DP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// L2 norm of the averaged update.
    pub update_norm: f64,
}

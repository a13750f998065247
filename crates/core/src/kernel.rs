//! Site kernels: local steps that are not one aggregate SQL query.
//!
//! Most analyses compile to aggregate SQL and travel the federated query path. A few need a
//! computation over a site's rows that SQL's mergeable aggregates cannot express without
//! row-picking window functions (which the checker refuses): a Cox model's risk sets are
//! cumulative sums over the rows ordered by time. A [`KernelTask`] names the rows (a table,
//! row-level expressions, a filter — planned, checked and judged by the site's policy like any
//! SQL) and the step to run over them; the site answers only the step's sums
//! ([`KernelAnswer`]), after its own disclosure checks, and audits the release.
//!
//! # Example
//! ```
//! use medfed_core::kernel::{KernelStep, KernelTask, RowSource, Ties};
//! let task = KernelTask {
//!     rows: RowSource {
//!         table: "cohort".into(),
//!         columns: vec!["CAST(days AS DOUBLE)".into(), "CAST(died AS DOUBLE)".into(), "CAST(age AS DOUBLE)".into()],
//!         filter: Some("days IS NOT NULL".into()),
//!     },
//!     step: KernelStep::Cox { beta: vec![0.0], ties: Ties::Efron },
//! };
//! let json = serde_json::to_string(&task).unwrap();
//! assert!(json.contains(r#""kind":"cox""#));
//! assert_eq!(serde_json::from_str::<KernelTask>(&json).unwrap(), task);
//! ```

use serde::{Deserialize, Serialize};

/// Most columns a row source may have (a model's covariates plus its outcome columns).
pub const MAX_KERNEL_COLUMNS: usize = 128;

/// One kernel step at one site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelTask {
    /// The rows it runs over.
    pub rows: RowSource,
    /// What it computes.
    pub step: KernelStep,
}

/// The rows of a kernel: `SELECT columns… FROM table WHERE filter`, as numbers.
///
/// Untrusted at the site: it is planned there, must be a plain projection and filter of one
/// table (no joins, sub-selects, aggregates, windows or limits), must not compute any column from
/// an identifier, and what it reads goes through the site's policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowSource {
    /// The table.
    pub table: String,
    /// Row-level SQL expressions, each cast to a number by the site.
    pub columns: Vec<String>,
    /// Condition selecting the rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}

/// How tied event times enter a Cox partial likelihood.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Ties {
    /// Efron's approximation (R's `coxph` default).
    #[default]
    Efron,
    /// Breslow's approximation.
    Breslow,
}

/// The computation a kernel runs over its rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KernelStep {
    /// Cox partial likelihood at `beta` with the site as its own stratum. Rows: time, event
    /// (1/0), then one column per coefficient.
    Cox {
        /// Log hazard ratios, one per covariate column.
        beta: Vec<f64>,
        /// Handling of tied event times.
        ties: Ties,
    },
    /// One IRLS iteration of a GLM at `beta`. Rows: response, prior weight, offset, then one
    /// column per coefficient but the intercept.
    Glm {
        /// The family (canonical link).
        family: crate::glm::Family,
        /// Coefficients, the intercept first when `intercept`.
        beta: Vec<f64>,
        /// Whether the model has an intercept (a column of ones the rows do not carry).
        intercept: bool,
    },
    /// Local training from the global model (FedAvg; FedProx when `proximal_mu` > 0). Rows:
    /// the 0/1 outcome, then the features.
    Train(TrainStep),
    /// Scores a model on the site's rows (its held-out data) and answers how well it
    /// discriminates and how well it is calibrated. Rows: the 0/1 outcome, then the features,
    /// then with `fine_tune` a split column (0: fine-tune on the row, 1: score it).
    Evaluate {
        /// The model.
        model: ModelKind,
        /// Its flat parameters.
        weights: Vec<f64>,
        /// Personalise first: train the model further on the site's own split-0 rows, then
        /// score that site's own version (which never leaves it) on its split-1 rows.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fine_tune: Option<FineTune>,
    },
}

/// Local fine-tuning of a federated model at one site (seed 001's personalised model).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FineTune {
    /// Passes over the site's fine-tuning rows.
    pub epochs: u32,
    /// Rows per gradient step.
    pub batch_size: u32,
    /// Step size.
    pub learning_rate: f64,
    /// L2 penalty on the weights.
    pub l2: f64,
    /// Pull towards the federated model (FedProx's μ; keeps the personal model close).
    pub proximal_mu: f64,
    /// Seeds the shuffling.
    pub seed: u64,
}

/// What a site trains locally in one federated round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainStep {
    /// The model.
    pub model: ModelKind,
    /// The global model's parameters, flat ([`ModelKind::parameters`] of them).
    pub weights: Vec<f64>,
    /// Passes over the site's rows.
    pub epochs: u32,
    /// Rows per gradient step.
    pub batch_size: u32,
    /// Step size.
    pub learning_rate: f64,
    /// L2 penalty λ/2·‖w‖² on the weights (not the intercepts).
    pub l2: f64,
    /// FedProx's proximal term μ/2·‖w − w_global‖² (0 for plain FedAvg).
    pub proximal_mu: f64,
    /// Seeds the site's shuffling and initialisation (the round's, so a step is reproducible).
    pub seed: u64,
    /// Differential privacy of the update, if the study asks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp: Option<UpdateDp>,
}

/// DP-FedAvg at a site: the update is clipped to an L2 norm, then Gaussian noise is added,
/// its σ sized by the site itself from the request's ε and δ (so a hub cannot ask for less).
///
/// The request's (ε, δ) is the whole run's: the site charges it once, sizes each round's noise
/// for ρ/`rounds` (zCDP composes by adding ρ), and refuses round `rounds + 1` of the `run`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateDp {
    /// Largest L2 norm of an update.
    pub clip: f64,
    /// The training run whose rounds share the release.
    pub run: String,
    /// Rounds the run may take at this site.
    pub rounds: u32,
}

/// A model a site can train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ModelKind {
    /// Logistic regression on `features` inputs (plus an intercept).
    Logistic {
        /// Inputs.
        features: u32,
    },
    /// A multilayer perceptron: `features` → `hidden` (ReLU) → 1 (logit).
    Mlp {
        /// Inputs.
        features: u32,
        /// Hidden units.
        hidden: u32,
    },
}

impl ModelKind {
    /// Number of parameters, as the flat weight vector lays them out.
    ///
    /// ```
    /// use medfed_core::kernel::ModelKind;
    /// assert_eq!(ModelKind::Logistic { features: 4 }.parameters(), 5);
    /// assert_eq!(ModelKind::Mlp { features: 4, hidden: 8 }.parameters(), 4 * 8 + 8 + 8 + 1);
    /// ```
    pub fn parameters(self) -> usize {
        match self {
            Self::Logistic { features } => features as usize + 1,
            Self::Mlp { features, hidden } => {
                let (f, h) = (features as usize, hidden as usize);
                f * h + h + h + 1
            }
        }
    }

    /// Whether flat parameter `j` is a weight (penalised by L2) rather than an intercept or bias.
    ///
    /// ```
    /// use medfed_core::kernel::ModelKind;
    /// let mlp = ModelKind::Mlp { features: 2, hidden: 3 };
    /// let weights: Vec<bool> = (0..mlp.parameters()).map(|j| mlp.is_weight(j)).collect();
    /// assert_eq!(weights.iter().filter(|w| **w).count(), 2 * 3 + 3);
    /// assert!(!ModelKind::Logistic { features: 2 }.is_weight(0));
    /// ```
    pub fn is_weight(self, j: usize) -> bool {
        match self {
            Self::Logistic { .. } => j > 0,
            Self::Mlp { features, hidden } => {
                let (f, h) = (features as usize, hidden as usize);
                j < f * h || (f * h + h..f * h + 2 * h).contains(&j)
            }
        }
    }

    /// Number of input features.
    pub fn features(self) -> usize {
        match self {
            Self::Logistic { features } | Self::Mlp { features, .. } => features as usize,
        }
    }
}

/// A site's answer to a training step.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ModelUpdate {
    /// Rows trained on.
    pub n: u64,
    /// Local weights minus the global weights (clipped and noised under DP).
    pub delta: Vec<f64>,
    /// Mean log-loss of the global model on the site's rows before training (not under DP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
}

/// What a site releases from a kernel step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KernelAnswer {
    /// The site stratum's share of a Cox fit.
    Cox(CoxSums),
    /// The site's share of an IRLS iteration.
    Glm(GlmSums),
    /// A locally trained model's update.
    Update(ModelUpdate),
    /// A model's performance on the site's rows.
    Metrics(Metrics),
}

/// How well a model predicts a 0/1 outcome on one site's rows: summaries only, and a
/// calibration table whose every bin holds at least k rows.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Metrics {
    /// Rows scored.
    pub n: u64,
    /// Rows with outcome 1.
    pub positives: u64,
    /// Area under the ROC curve (ties counted half).
    pub auroc: f64,
    /// Area under the precision–recall curve (average precision).
    pub auprc: f64,
    /// Mean squared error of the predicted probabilities.
    pub brier: f64,
    /// Mean log-loss.
    pub log_loss: f64,
    /// Equal-count bins of predicted risk, lowest first.
    pub calibration: Vec<CalibrationBin>,
}

/// One bin of a calibration table.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CalibrationBin {
    /// Rows in the bin.
    pub n: u64,
    /// Mean predicted probability.
    pub predicted: f64,
    /// Observed share of outcome 1.
    pub observed: f64,
}

/// One site's sums of an IRLS iteration: the network's are the sums of the sites'.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GlmSums {
    /// Rows used.
    pub n: u64,
    /// XᵀWX, p × p row-major.
    pub xtwx: Vec<f64>,
    /// XᵀWz.
    pub xtwz: Vec<f64>,
    /// Deviance at the iteration's coefficients.
    pub deviance: f64,
}

/// One stratum's Cox partial log-likelihood at β with its gradient and information: sums over
/// event times, so the network's are the sums of the sites'.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CoxSums {
    /// Rows used.
    pub n: u64,
    /// Events among them.
    pub events: u64,
    /// Partial log-likelihood.
    pub loglik: f64,
    /// Its gradient (the score), one per coefficient.
    pub score: Vec<f64>,
    /// Minus its Hessian (the information), p × p row-major.
    pub information: Vec<f64>,
}

impl CoxSums {
    /// Adds another stratum's sums (a stratified likelihood is the sum over strata).
    ///
    /// ```
    /// use medfed_core::kernel::CoxSums;
    /// let a = CoxSums { n: 10, events: 4, loglik: -3.0, score: vec![1.0], information: vec![2.0] };
    /// let mut total = CoxSums::default();
    /// total.add(&a);
    /// total.add(&a);
    /// assert_eq!((total.n, total.events, total.score[0], total.information[0]), (20, 8, 2.0, 4.0));
    /// ```
    pub fn add(&mut self, other: &CoxSums) {
        if self.score.is_empty() && self.information.is_empty() {
            self.score = vec![0.0; other.score.len()];
            self.information = vec![0.0; other.information.len()];
        }
        self.n += other.n;
        self.events += other.events;
        self.loglik += other.loglik;
        for (a, b) in self.score.iter_mut().zip(&other.score) {
            *a += b;
        }
        for (a, b) in self.information.iter_mut().zip(&other.information) {
            *a += b;
        }
    }
}

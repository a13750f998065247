//! Federated learning through the hub (analysis `fedavg`): the outcome's classes, factor levels
//! and the network's means and SDs by federated queries, then each round a `train` kernel at
//! the round's selected sites, governed and audited like every step
//! (see [`medfed_analysis::learn`]).

use medfed_analysis::glm::Step;
use medfed_analysis::learn::{self, EvaluateSpec, Evaluation, FedAvgSpec, RoundRequest};
use medfed_audit::{Decision as Outcome, Entry};
use medfed_core::glm::ModelRef;
use medfed_core::learn::TrainedModel;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::Principal;
use crate::kernel::Steps;
use crate::models::valid_model_name;
use crate::state::{ModelVersion, StateError};
use crate::{Hub, HubError, QueryOptions};

/// A researcher's training request.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FedAvgRequest {
    /// The study it runs under (must allow the `fedavg` analysis).
    pub study: String,
    /// What to train and how.
    #[serde(flatten)]
    pub spec: FedAvgSpec,
    /// Train at these of the study's sites only.
    #[serde(default)]
    pub sites: Option<Vec<String>>,
    /// Register the trained model under this name (a new version).
    #[serde(default)]
    pub register: Option<String>,
    /// DP studies: the ε of the whole run at each site (default: the network's per-release ε).
    #[serde(default)]
    pub epsilon: Option<f64>,
    /// Sum each round's updates under secure aggregation (default: the network's setting):
    /// the hub sees only their weighted sum (under DP each site's update still carries its own
    /// full noise, added in every local step).
    #[serde(default)]
    pub secure_aggregation: Option<bool>,
}

/// A researcher's request to score a model on each site's (held-out) rows.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateRequest {
    /// The study it runs under (must allow the `fedavg` analysis).
    pub study: String,
    /// The model and the rows.
    #[serde(flatten)]
    pub spec: EvaluateSpec,
    /// Score at these of the study's sites only.
    #[serde(default)]
    pub sites: Option<Vec<String>>,
}

/// The trained model and its registry entry.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Trained {
    /// The model.
    #[serde(flatten)]
    pub model: TrainedModel,
    /// Where it was registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered: Option<ModelRef>,
}

impl Hub {
    /// Trains `req` by FedAvg/FedProx across the study's sites.
    pub async fn fedavg(&self, who: &Principal, req: &FedAvgRequest) -> Result<Trained, HubError> {
        let study = self.state.study(&req.study).await?;
        self.authorize(who, "query", Some(&study), None).await?;
        let options = QueryOptions {
            epsilon: req.epsilon,
            secure_aggregation: req.secure_aggregation,
            ..QueryOptions::default()
        };
        let secure = self.secure(req.secure_aggregation, &study.terms);
        let dp = self.protection(&study.terms, &options)?.dp;
        let run = dp
            .as_ref()
            .map(|_| format!("t-{}", crate::state::random_id(8)));
        if let Some(name) = req.register.as_deref().filter(|n| !valid_model_name(n)) {
            return Err(HubError::State(StateError::Invalid(format!(
                "{name:?} is not a model name: 1–64 letters, digits, '_', '-', '.'"
            ))));
        }
        let sites: Vec<String> = match &req.sites {
            Some(s) if !s.is_empty() => s.clone(),
            _ => study.approved_sites().into_iter().collect(),
        };
        let state = self.planning_state().await;
        let mut steps = Steps::new(self, who, &req.study, req.sites.as_deref(), "fedavg");
        steps.options = options;
        let steps = &steps;
        let dp_study = dp.is_some();
        let run_sql = |step: Step, sql: String| async move {
            if dp_study {
                // DP-FedAvg asks nothing before it trains (no count, no mean leaves a site).
                return Err(HubError::Forbidden(
                    "a DP training run asks the network no planning queries: give every \
                     input numeric bounds and no factor() or text inputs"
                        .into(),
                ));
            }
            steps.sql(step, sql).await
        };
        let run_round = |r: RoundRequest| async move { steps.kernel(r.task, Some(&r.sites)).await };
        let k = self.privacy.rules().min_cell_count;
        let trained = learn::train(
            &state,
            &req.spec,
            k,
            &sites,
            run.as_deref(),
            run_sql,
            run_round,
        )
        .await;
        let mut model = self.fitted(who, &req.study, "fedavg", trained).await?;
        model.privacy.min_cell_count = k;
        model.privacy.secure_aggregation = secure;
        match &dp {
            Some(release) => {
                model.privacy.mode = "dp".into();
                model.privacy.mechanism = Some(format!(
                    "DP-FedAvg: DP gradient descent at each site, every row's gradient clipped \
                     to L2 norm {} and Gaussian noise on their sum added by the site, ρ-zCDP \
                     over at most {} rounds (neighbours: one row replaced)",
                    req.spec.clip.unwrap_or_default(),
                    req.spec.rounds
                ));
                model.privacy.epsilon = release.epsilon;
                model.privacy.delta = release.delta;
                model.epsilon = Some(release.epsilon);
            }
            None => model.privacy.mode = "exact".into(),
        }
        let digest = hex::encode(Sha256::digest(
            serde_json::to_vec(&model.weights).expect("weights serialise"),
        ));
        let entry = Entry::new(
            &who.id,
            who.role(),
            "fedavg",
            Outcome::Allow,
            format!(
                "released {} model `{}` on {} ({} parameters, {} rounds, {})",
                model.algorithm,
                model.formula,
                req.spec.table,
                model.weights.len(),
                model.rounds,
                if model.converged {
                    "converged"
                } else {
                    "not converged"
                }
            ),
        )
        .study(&req.study)
        .sites(model.sites.keys().cloned())
        .result_digest(digest.clone());
        self.record(entry).await?;
        let registered = match &req.register {
            Some(name) => Some(
                self.register(who, &version(who, req, &model, &digest, name))
                    .await?,
            ),
            None => None,
        };
        Ok(Trained { model, registered })
    }
}

/// The registry entry of a trained model.
fn version(
    who: &Principal,
    req: &FedAvgRequest,
    m: &TrainedModel,
    digest: &str,
    name: &str,
) -> ModelVersion {
    let kind = match m.model {
        medfed_core::kernel::ModelKind::Logistic { .. } => "logistic",
        medfed_core::kernel::ModelKind::Mlp { .. } => "mlp",
    };
    let last = m.history.last();
    ModelVersion {
        model: name.to_string(),
        version: 0,
        kind: format!("{}/{kind}", m.algorithm),
        study: req.study.clone(),
        trained_by: who.id.clone(),
        parameters: serde_json::to_value(&req.spec).expect("spec serialises"),
        metrics: serde_json::json!({
            "n": m.n, "rounds": m.rounds, "converged": m.converged,
            "final_loss": last.and_then(|r| r.loss),
            "final_update_norm": last.map(|r| r.update_norm),
        }),
        artifact: serde_json::json!({
            "formula": m.formula, "model": m.model, "features": m.features,
            "scaling": m.scaling, "weights": m.weights, "coefficients": m.coefficients,
        }),
        epsilon: m.epsilon.unwrap_or(0.0),
        sites: m.sites.keys().cloned().collect(),
        audit_digest: digest.to_string(),
        created_us: 0,
    }
}

impl Hub {
    /// Scores a model at each of the study's sites: AUROC, AUPRC, Brier score, log-loss and a
    /// calibration table per site, computed there (an `evaluate` kernel).
    pub async fn evaluate(
        &self,
        who: &Principal,
        req: &EvaluateRequest,
    ) -> Result<Evaluation, HubError> {
        let study = self.state.study(&req.study).await?;
        self.authorize(who, "query", Some(&study), None).await?;
        let state = self.planning_state().await;
        let steps = &Steps::new(self, who, &req.study, req.sites.as_deref(), "fedavg");
        let run_sql = |step: Step, sql: String| steps.sql(step, sql);
        let run_kernel = |task| steps.kernel(task, None);
        let scored = learn::evaluate(&state, &req.spec, run_sql, run_kernel).await;
        self.fitted(who, &req.study, "fedavg", scored).await
    }
}

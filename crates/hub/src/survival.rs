//! Survival analysis through the hub (analysis `survival`):
//! - Kaplan–Meier: one federated query of per-bin counts, then the product-limit estimate here;
//! - Cox stratified by site: factor levels by federated counts, then Newton–Raphson on the
//!   sites' `cox` kernel sums (see [`medfed_analysis::survival::cox`]).

use medfed_analysis::glm::Step;
use medfed_analysis::survival::cox::{self, CoxSpec};
use medfed_analysis::survival::{KmError, KmSpec};
use medfed_audit::{Decision as Outcome, Entry};
use medfed_core::survival::{CoxFit, KmFit};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::auth::Principal;
use crate::kernel::Steps;
use crate::{Hub, HubError, QueryOptions};

/// A researcher's Cox model request.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CoxRequest {
    /// The study it runs under (must allow the `survival` analysis).
    pub study: String,
    /// The model.
    #[serde(flatten)]
    pub spec: CoxSpec,
    /// Limit to these of the study's sites.
    #[serde(default)]
    pub sites: Option<Vec<String>>,
    /// Sum each iteration's score and information under secure aggregation (default: the
    /// network's setting): the hub then sees only the network's sums, not each stratum's.
    #[serde(default)]
    pub secure_aggregation: Option<bool>,
}

/// A researcher's Kaplan–Meier request.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KmRequest {
    /// The study it runs under (must allow the `survival` analysis).
    pub study: String,
    /// What to estimate.
    #[serde(flatten)]
    pub spec: KmSpec,
    /// Limit to these of the study's sites.
    #[serde(default)]
    pub sites: Option<Vec<String>>,
    /// Sum the sites' counts under secure aggregation.
    #[serde(default)]
    pub secure_aggregation: Option<bool>,
}

impl Hub {
    /// Estimates survival curves across the study's sites.
    pub async fn km(&self, who: &Principal, req: &KmRequest) -> Result<KmFit, HubError> {
        let study = self.state.study(&req.study).await?;
        self.authorize(who, "query", Some(&study), None).await?;
        let state = self.planning_state().await;
        let sql = match req.spec.plan(&state).await {
            Ok(sql) => sql,
            Err(e) => return Err(self.refuse_km(who, &req.study, e).await),
        };
        let options = QueryOptions {
            secure_aggregation: req.secure_aggregation,
            ..QueryOptions::default()
        };
        let answer = self
            .query_as(
                who,
                &req.study,
                &sql,
                req.sites.as_deref(),
                &options,
                "survival",
            )
            .await?;
        match req
            .spec
            .curves(&answer, self.privacy.rules().min_cell_count)
        {
            Ok(fit) => Ok(fit),
            Err(e) => Err(self.refuse_km(who, &req.study, e).await),
        }
    }

    /// Audits a refused estimate and returns its error.
    async fn refuse_km(&self, who: &Principal, study: &str, e: KmError) -> HubError {
        self.refuse(who, study, "survival", e.to_string(), HubError::Km(e))
            .await
    }
}

impl Hub {
    /// Fits a Cox model stratified by site; the answer equals the pooled stratified fit.
    pub async fn cox(&self, who: &Principal, req: &CoxRequest) -> Result<CoxFit, HubError> {
        let why = "Cox models run in exact studies only for now: their sums have no declared \
                   bounds, so no differential-privacy noise can be calibrated";
        let study = self.exact_study(who, &req.study, "survival", why).await?;
        let state = self.planning_state().await;
        let mut steps = Steps::new(self, who, &req.study, req.sites.as_deref(), "survival");
        steps.options.secure_aggregation = req.secure_aggregation;
        let secure = self.secure(req.secure_aggregation, &study.terms);
        let steps = &steps;
        let run_sql = |step: Step, sql: String| steps.sql(step, sql);
        let run_kernel = |_: u32, task| steps.kernel(task, None);
        let fitted = cox::fit(&state, &req.spec, run_sql, run_kernel).await;
        let mut fit = self.fitted(who, &req.study, "survival", fitted).await?;
        fit.privacy.min_cell_count = self.privacy.rules().min_cell_count;
        fit.privacy.mode = "exact".into();
        fit.privacy.secure_aggregation = secure;
        let digest = hex::encode(Sha256::digest(
            serde_json::to_vec(&fit.coefficients).expect("coefficients serialise"),
        ));
        let entry = Entry::new(
            &who.id,
            who.role(),
            "survival",
            Outcome::Allow,
            format!(
                "released Cox model `{}` on {} stratified by site: {} coefficients, n = {}, \
                 {} events, {} iterations",
                fit.formula,
                req.spec.table,
                fit.coefficients.0.len(),
                fit.n,
                fit.events,
                fit.iterations
            ),
        )
        .study(&req.study)
        .sites(fit.sites.keys().cloned())
        .result_digest(digest);
        self.record(entry).await?;
        Ok(fit)
    }
}

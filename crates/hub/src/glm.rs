//! A federated GLM: the hub's IRLS loop, each step one governed federated query.
//!
//! ```text
//!  POST /v1/analyses/glm {study, table, formula, family}
//!    │ hub.rego, study approved for `glm`, study terms, DP studies refused
//!    │ levels of each factor ─┐
//!    │ summary (n, Σy)       ─┤ each: a federated query (`analysis = glm`): signed to every
//!    │ IRLS iterations       ─┤ approved site, checked there, site.rego, k and dominance at
//!    │ null deviance         ─┘ the site and at the hub, secure aggregation if asked, audited;
//!    │                          iterations as GLM site kernels unless secure aggregation
//!    ▼
//!  audit "glm" with the coefficients' digest, then 200 GlmFit
//! ```
//! The hub sees per iteration only XᵀWX and XᵀWz (their sum, under secure aggregation): the
//! sufficient statistics DataSHIELD's `glmDS2` returns as well.

use medfed_analysis::glm::{self, GlmSpec, Step};
use medfed_audit::{Decision as Outcome, Entry};
use medfed_core::glm::GlmFit;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::auth::Principal;
use crate::kernel::Steps;
use crate::models::valid_model_name;
use crate::state::StateError;
use crate::{Hub, HubError};

/// A researcher's GLM request.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GlmRequest {
    /// The study it runs under (must allow the `glm` analysis).
    pub study: String,
    /// The model.
    #[serde(flatten)]
    pub spec: GlmSpec,
    /// Limit to these of the study's sites.
    #[serde(default)]
    pub sites: Option<Vec<String>>,
    /// Sum each iteration's partials under secure aggregation (default: the network's setting).
    #[serde(default)]
    pub secure_aggregation: Option<bool>,
    /// Register the released fit in the model registry under this name (a new version).
    #[serde(default)]
    pub register: Option<String>,
}

impl Hub {
    /// Fits `req` across the study's sites; the answer equals the pooled fit.
    pub async fn glm(&self, who: &Principal, req: &GlmRequest) -> Result<GlmFit, HubError> {
        let why = "GLMs run in exact studies only for now: their sums have no declared \
                   bounds, so no differential-privacy noise can be calibrated";
        self.exact_study(who, &req.study, "glm", why).await?;
        let state = self.planning_state().await;
        let rules = self.privacy.rules();
        let mut steps = Steps::new(self, who, &req.study, req.sites.as_deref(), "glm");
        steps.options.secure_aggregation = req.secure_aggregation;
        let steps = &steps;
        let run = |step: Step, sql: String| steps.sql(step, sql);
        // Iterations as site kernels (summed under secure aggregation when asked): the same
        // sums as the SQL path, one native pass over each site's rows.
        // The first kernel step is the sites' check of the model: those that refuse are left
        // out of every later step (and listed in the result with their reason).
        let kernel = Some(|step: Step, task| async move {
            let round = steps.kernel(task, None).await?;
            if step == Step::Check {
                steps.leave_out_refusals(&round);
            }
            Ok(round)
        });
        if let Some(name) = req.register.as_deref().filter(|n| !valid_model_name(n)) {
            return Err(HubError::State(StateError::Invalid(format!(
                "{name:?} is not a model name: 1–64 letters, digits, '_', '-', '.'"
            ))));
        }
        let fitted = glm::fit(&state, &req.spec, &rules, run, kernel).await;
        let mut fit = self.fitted(who, &req.study, "glm", fitted).await?;
        fit.sites.extend(steps.left_out());
        let digest = hex::encode(Sha256::digest(
            serde_json::to_vec(&fit.coefficients).expect("coefficients serialise"),
        ));
        let entry = Entry::new(
            &who.id,
            who.role(),
            "glm",
            Outcome::Allow,
            format!(
                "released {} GLM `{}` on {}: {} coefficients, n = {}, {} iterations{}",
                fit.family,
                fit.formula,
                req.spec.table,
                fit.coefficients.0.len(),
                fit.n,
                fit.iterations,
                if fit.privacy.secure_aggregation {
                    "; secure aggregation (the hub saw only the sums)"
                } else {
                    ""
                }
            ),
        )
        .study(&req.study)
        .sites(fit.sites.keys().cloned())
        .result_digest(digest.clone());
        self.record(entry).await?;
        if let Some(name) = &req.register {
            fit.registered = Some(self.register_glm(who, req, &fit, &digest, name).await?);
        }
        Ok(fit)
    }
}

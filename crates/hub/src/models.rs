//! The model registry: released models, their versions (one per training run) with parameters,
//! metrics, ε spent, sites and the link to their audit entry. `GET /v1/models`,
//! `GET /v1/models/{name}`; a GLM or a federated model is registered by asking for it
//! (`"register": "name"`).

use medfed_audit::{Decision as Outcome, Entry};
use medfed_core::glm::{GlmFit, ModelRef};

use crate::auth::Principal;
use crate::glm::GlmRequest;
use crate::state::{ModelVersion, StateError};
use crate::{Hub, HubError};

/// Whether `name` can name a model: 1–64 letters, digits, `_`, `-`, `.`.
pub fn valid_model_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl Hub {
    /// Stores a released GLM as the next version of `name` and audits it.
    pub(crate) async fn register_glm(
        &self,
        who: &Principal,
        req: &GlmRequest,
        fit: &GlmFit,
        digest: &str,
        name: &str,
    ) -> Result<ModelRef, HubError> {
        let version = ModelVersion {
            model: name.to_string(),
            version: 0,
            kind: format!("glm/{}", fit.family),
            study: req.study.clone(),
            trained_by: who.id.clone(),
            parameters: serde_json::to_value(&req.spec).expect("spec serialises"),
            metrics: serde_json::json!({
                "n": fit.n, "df_residual": fit.df_residual, "deviance": fit.deviance,
                "null_deviance": fit.null_deviance, "aic": fit.aic, "iterations": fit.iterations,
                "converged": fit.converged, "dispersion": fit.dispersion,
            }),
            artifact: serde_json::json!({
                "formula": fit.formula, "family": fit.family, "link": fit.link,
                "coefficients": fit.coefficients, "reference_levels": fit.reference_levels,
            }),
            epsilon: fit.privacy.epsilon,
            sites: fit.sites.keys().cloned().collect(),
            audit_digest: digest.to_string(),
            created_us: 0,
        };
        self.register(who, &version).await
    }

    /// Stores `version` as the next version of its model and audits the registration under
    /// the release's digest.
    pub(crate) async fn register(
        &self,
        who: &Principal,
        version: &ModelVersion,
    ) -> Result<ModelRef, HubError> {
        let (name, digest) = (&version.model, &version.audit_digest);
        let n = self.state.register_version(version).await?;
        let entry = Entry::new(
            &who.id,
            who.role(),
            "model.register",
            Outcome::Allow,
            format!("registered {name} version {n} ({})", version.kind),
        )
        .study(&version.study)
        .sites(version.sites.iter().cloned())
        .result_digest(digest);
        self.record(entry).await?;
        Ok(ModelRef {
            model: name.to_string(),
            version: n,
        })
    }

    /// The versions of `model` (or of every model) whose study `who` may read.
    pub async fn models_for(
        &self,
        who: &Principal,
        model: Option<&str>,
    ) -> Result<Vec<ModelVersion>, HubError> {
        let versions = self.state.model_versions(model).await?;
        if model.is_some() && versions.is_empty() {
            return Err(StateError::NotFound(format!(
                "no model {:?} in the registry",
                model.unwrap_or_default()
            ))
            .into());
        }
        let mut studies: Vec<&str> = versions.iter().map(|v| v.study.as_str()).collect();
        studies.sort_unstable();
        studies.dedup();
        let mut readable = Vec::new();
        for s in studies {
            match self.study_for(who, s).await {
                Ok(_) => readable.push(s.to_string()),
                Err(HubError::Forbidden(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let visible: Vec<ModelVersion> = versions
            .into_iter()
            .filter(|v| readable.contains(&v.study))
            .collect();
        if model.is_some() && visible.is_empty() {
            return Err(HubError::Forbidden(
                "the model's studies are not yours to read".into(),
            ));
        }
        Ok(visible)
    }
}

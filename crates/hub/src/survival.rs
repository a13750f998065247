//! Kaplan–Meier through the hub: one federated `survival` query of per-bin counts, then the
//! product-limit estimate here (see [`medfed_analysis::survival`]).

use medfed_analysis::survival::{KmError, KmSpec};
use medfed_core::survival::KmFit;
use serde::Deserialize;

use crate::auth::Principal;
use crate::{Hub, HubError, QueryOptions};

/// A researcher's Kaplan–Meier request.
#[derive(Debug, Clone, Deserialize)]
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

//! Descriptive statistics through the hub: one or two governed federated queries (`stats`
//! analyses), then the combine step here (see [`medfed_analysis::describe`]).

use medfed_analysis::describe::{self, DescribeError, DescribeSpec, Failure};
use medfed_audit::{Decision as Outcome, Entry};
use medfed_core::describe::{Description, Statistics};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::auth::Principal;
use crate::{Hub, HubError, QueryOptions};

/// A researcher's request for a description. (Not `deny_unknown_fields`: serde cannot combine
/// it with the flattened, tagged kind; a misspelt optional field is ignored.)
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct DescribeRequest {
    /// The study it runs under (must allow the `stats` analysis).
    pub study: String,
    /// What to describe.
    #[serde(flatten)]
    pub spec: DescribeSpec,
    /// Limit to these of the study's sites.
    #[serde(default)]
    pub sites: Option<Vec<String>>,
    /// Sum the sites' partials under secure aggregation.
    #[serde(default)]
    pub secure_aggregation: Option<bool>,
}

impl Hub {
    /// Describes the study's data across its sites; the answer equals the pooled statistics
    /// (exactly, in exact studies; with the study's noise, in DP ones).
    pub async fn describe(
        &self,
        who: &Principal,
        req: &DescribeRequest,
    ) -> Result<Description, HubError> {
        let study = self.state.study(&req.study).await?;
        self.authorize(who, "query", Some(&study), None).await?;
        let state = self.planning_state().await;
        let options = QueryOptions {
            secure_aggregation: req.secure_aggregation,
            ..QueryOptions::default()
        };
        let (only, options) = (req.sites.as_deref(), &options);
        let run = |sql: String| async move {
            self.query_as(who, &req.study, &sql, only, options, "stats")
                .await
        };
        let k = self.privacy.rules().min_cell_count;
        let out = match describe::describe(&state, &req.spec, k, run).await {
            Ok(d) => d,
            Err(Failure::Run(e)) => return Err(e),
            Err(Failure::Describe(e)) => {
                let reason = e.to_string();
                return Err(self
                    .refuse(who, &req.study, "stats", reason, e.into())
                    .await);
            }
        };
        let digest = hex::encode(Sha256::digest(
            serde_json::to_vec(&out.statistics).expect("statistics serialise"),
        ));
        let what = match &out.statistics {
            Statistics::Summary { variables } => {
                format!("summary of {} variables", variables.len())
            }
            Statistics::Histogram(h) => {
                format!("histogram of {} ({} bins)", h.variable, h.counts.len())
            }
            Statistics::Table(t) => format!("{} × {} table", t.rows, t.columns),
            Statistics::Correlation(c) => format!("{0}×{0} correlation matrix", c.variables.len()),
        };
        let entry = Entry::new(
            &who.id,
            who.role(),
            "stats",
            Outcome::Allow,
            format!(
                "released {what} on {} from {} queries",
                req.spec.table, out.queries
            ),
        )
        .study(&req.study)
        .sites(out.sites.keys().cloned())
        .result_digest(digest);
        self.record(entry).await?;
        Ok(out)
    }
}

impl From<DescribeError> for HubError {
    fn from(e: DescribeError) -> Self {
        HubError::Describe(e)
    }
}

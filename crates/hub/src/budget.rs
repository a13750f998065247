//! A study's privacy budget across the network, as its researchers see it: each approved site
//! asked for its own ledger's balance (the sites keep the budgets; the hub keeps none of its
//! own to drift from theirs).
//!
//! ```text
//!  GET /v1/studies/{id}/budget ─► hub.rego (study.read), DP studies only
//!    └─► each approved site: signed Work::Budget ─► its gate, its ledger, its audit trail
//!  ◄── {study, sites: {north: {status, epsilon, epsilon_spent, epsilon_remaining, …}}}
//! ```

use std::collections::BTreeMap;

use medfed_audit::{Decision as Outcome, Entry};
use medfed_core::result::SiteStatus;
use medfed_core::study::PrivacyMode;
use medfed_privacy::Protection;
use medfed_protocol::wire::{SiteRequest, Work};
use serde::Serialize;

use crate::auth::Principal;
use crate::query::request_context;
use crate::secure::call_site;
use crate::state::StateError;
use crate::{Hub, HubError};

/// A study's budget at each of its approved sites.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StudyBudget {
    /// The study.
    pub study: String,
    /// By site.
    pub sites: BTreeMap<String, SiteBudget>,
}

/// One site's ledger for a study, or why it did not say.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SiteBudget {
    /// `answered`, or how asking it failed.
    pub status: SiteStatus,
    /// The site's balance, when it answered.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub balance: Option<SiteBalance>,
    /// Why the site did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What a site's ledger says of a study: allowed, spent and left, for ε and δ.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SiteBalance {
    /// ε the site's custodian allows the study.
    pub epsilon: f64,
    /// ε releases have spent there.
    pub epsilon_spent: f64,
    /// ε left.
    pub epsilon_remaining: f64,
    /// δ allowed.
    pub delta: f64,
    /// δ spent.
    pub delta_spent: f64,
    /// δ left.
    pub delta_remaining: f64,
}

impl From<&medfed_privacy::ledger::Balance> for SiteBalance {
    fn from(b: &medfed_privacy::ledger::Balance) -> Self {
        Self {
            epsilon: b.total.epsilon,
            epsilon_spent: b.spent.epsilon,
            epsilon_remaining: b.epsilon_remaining(),
            delta: b.total.delta,
            delta_spent: b.spent.delta,
            delta_remaining: b.delta_remaining(),
        }
    }
}

impl Hub {
    /// Asks each site that approved `study_id` for its balance (a DP study's only).
    pub async fn budget(&self, who: &Principal, study_id: &str) -> Result<StudyBudget, HubError> {
        let study = self.state.study(study_id).await?;
        self.authorize(who, "study.read", Some(&study), None)
            .await?;
        if study.terms.privacy != PrivacyMode::Dp {
            return Err(HubError::State(StateError::Invalid(format!(
                "study {study_id} is exact (disclosure control only): it spends no privacy budget"
            ))));
        }
        let protection = Protection {
            rules: self.privacy.rules(),
            dp: None,
            secure_aggregation: false,
            model_step: false,
        };
        let id = format!("b-{}", crate::state::random_id(8));
        let approved = study.approved_sites();
        let calls = self
            .sites
            .iter()
            .filter(|s| approved.iter().any(|a| a == s.name().as_str()))
            .map(|site| {
                let name = site.name().to_string();
                let context = request_context(&study, &name, who, "budget", &protection);
                let request = SiteRequest::new(&id, &name, context, Work::Budget);
                async move {
                    let answer = call_site(self.deadline, site.budget(&request, &self.key)).await;
                    let entry = match answer {
                        Ok(b) => SiteBudget {
                            status: SiteStatus::Answered,
                            balance: Some(SiteBalance::from(&b)),
                            message: None,
                        },
                        Err((status, message)) => SiteBudget {
                            status,
                            balance: None,
                            message: Some(message),
                        },
                    };
                    (name, entry)
                }
            });
        let sites: BTreeMap<String, SiteBudget> =
            futures::future::join_all(calls).await.into_iter().collect();
        let answered = sites
            .values()
            .filter(|s| s.status == SiteStatus::Answered)
            .count();
        let reason = format!("privacy budget read at {answered} of {} sites", sites.len());
        self.record(
            Entry::new(&who.id, who.role(), "budget", Outcome::Allow, reason)
                .study(study_id)
                .request_id(id),
        )
        .await?;
        Ok(StudyBudget {
            study: study_id.into(),
            sites,
        })
    }
}

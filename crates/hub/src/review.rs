//! The review queue: releases held because a check the network or a site marked "review" fired
//! ([`medfed_privacy::Review`]), waiting for a custodian of every contributing site.
//!
//! Trust boundary: a held result stays in the hub's state. Custodians of the contributing sites
//! (and admins and auditors) see it with its evidence; the researcher sees only that it awaits
//! review, and receives it once every contributing site has approved; one rejection closes it
//! unreleased. Holding, each decision and the release are audited; the release is recorded
//! for later releases' checks only when it happens.

use std::collections::BTreeMap;

use medfed_audit::{Decision as Outcome, Entry};
use medfed_core::result::{Evidence, QueryResult};
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::state::{HeldRelease, StateError, StoredReview};
use crate::{Hub, HubError};

/// A review as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReviewView {
    /// Review id (`r-…`).
    pub id: String,
    /// The query's request id (its audit entries carry it).
    pub request_id: String,
    pub study: String,
    pub researcher: String,
    /// The researcher's SQL.
    pub sql: String,
    /// `awaiting_review`, `approved` or `rejected`.
    pub status: String,
    /// The checks that fired: name → rows they flagged.
    pub checks: BTreeMap<String, usize>,
    /// Each contributing site's decision.
    pub sites: BTreeMap<String, SiteReview>,
    pub created_at_us: i64,
    /// What the airlock checked, as on a released result.
    pub evidence: Evidence,
    /// The held result: shown to reviewers, and to the researcher once approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<QueryResult>,
}

/// One site's decision on a review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SiteReview {
    /// `pending`, `approved` or `rejected`.
    pub decision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_us: Option<i64>,
}

/// `POST /v1/reviews/{id}`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewDecisionRequest {
    /// `approve` or `reject`.
    pub decision: String,
    /// The site decided for (default: every contributing site the caller is custodian of).
    #[serde(default)]
    pub site: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// What `who` may see of `r`: `None` nothing, `Some(true)` with the held result.
fn visibility(who: &Principal, r: &StoredReview) -> Option<bool> {
    let has = |role: &str| who.roles.iter().any(|r| r == role);
    if has("admin") || has("auditor") {
        return Some(true);
    }
    if has("custodian") && r.sites.iter().any(|s| who.sites.contains(s)) {
        return Some(true);
    }
    (who.id == r.researcher).then_some(r.status == "approved")
}

fn view(r: StoredReview, with_result: bool) -> ReviewView {
    let sites = r
        .sites
        .iter()
        .map(|s| {
            let d = r.decisions.get(s);
            let review = SiteReview {
                decision: d.map_or("pending".into(), |d| d.0.clone()),
                decided_by: d.map(|d| d.1.clone()),
                reason: d.and_then(|d| d.2.clone()),
                at_us: d.map(|d| d.3),
            };
            (s.clone(), review)
        })
        .collect();
    ReviewView {
        id: r.id,
        request_id: r.held.release.request_id.clone(),
        study: r.study_id,
        researcher: r.researcher,
        sql: r.sql,
        status: r.status,
        checks: r.checks,
        sites,
        created_at_us: r.created_at_us,
        evidence: r.held.result.privacy.evidence.clone(),
        result: with_result.then_some(r.held.result),
    }
}

impl Hub {
    /// Holds `held` for review because `checks` fired; audited. Returns the review as its
    /// researcher sees it.
    pub(crate) async fn hold(
        &self,
        who: &Principal,
        sql: &str,
        held: HeldRelease,
        checks: &BTreeMap<&'static str, usize>,
    ) -> Result<ReviewView, HubError> {
        let checks: BTreeMap<String, usize> =
            checks.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let r = &held.release;
        let id = self
            .state
            .hold_for_review(&r.study_id, &who.id, sql, &checks, &r.sites, &held)
            .await?;
        let names: Vec<&str> = checks.keys().map(String::as_str).collect();
        let entry = Entry::new(
            &who.id,
            who.role(),
            &held.action,
            Outcome::Allow,
            format!(
                "held for review {id} ({} fired; a custodian of every contributing site must \
                 approve); {}",
                names.join(", "),
                crate::evidence::audit_line(&held.result.privacy.evidence)
            ),
        )
        .study(&r.study_id)
        .sites(r.sites.iter().cloned())
        .request_id(&r.request_id);
        self.record(entry).await?;
        let stored = self.state.review(&id).await?;
        Ok(view(stored, false))
    }

    /// The reviews `who` may see, newest first.
    pub async fn reviews(&self, who: &Principal) -> Result<Vec<ReviewView>, HubError> {
        self.allow_read(who, "review.read").await?;
        Ok(self
            .state
            .reviews()
            .await?
            .into_iter()
            .filter_map(|r| visibility(who, &r).map(|with| view(r, with)))
            .collect())
    }

    /// Review `id`, if `who` may see it (404 otherwise: its existence is not confirmed).
    pub async fn review(&self, who: &Principal, id: &str) -> Result<ReviewView, HubError> {
        self.allow_read(who, "review.read").await?;
        let r = self.state.review(id).await?;
        match visibility(who, &r) {
            Some(with) => Ok(view(r, with)),
            None => Err(StateError::NotFound(format!("review {id}")).into()),
        }
    }

    /// A custodian's decision on review `id` for their site(s); audited. When every
    /// contributing site has approved, the result is released (recorded and audited); one
    /// rejection closes the review unreleased.
    pub async fn decide_review(
        &self,
        who: &Principal,
        id: &str,
        req: &ReviewDecisionRequest,
    ) -> Result<ReviewView, HubError> {
        let approve = match req.decision.as_str() {
            "approve" => true,
            "reject" => false,
            other => {
                return Err(StateError::Invalid(format!(
                    "decision must be \"approve\" or \"reject\", not {other:?}"
                ))
                .into());
            }
        };
        let r = self.state.review(id).await?;
        if visibility(who, &r).is_none() {
            return Err(StateError::NotFound(format!("review {id}")).into());
        }
        let (study_id, request_id) = (&r.study_id, &r.held.release.request_id);
        let deny = |reason: String| async move {
            let entry = Entry::new(&who.id, who.role(), "review.decide", Outcome::Deny, &reason)
                .study(study_id)
                .request_id(request_id);
            self.record(entry).await?;
            Err::<ReviewView, _>(HubError::Forbidden(reason))
        };
        if r.status != "awaiting_review" {
            return deny(format!("review {id} is already {}", r.status)).await;
        }
        let sites: Vec<String> = match &req.site {
            Some(s) => vec![s.clone()],
            None => r
                .sites
                .iter()
                .filter(|s| who.sites.contains(s))
                .cloned()
                .collect(),
        };
        if sites.is_empty() || sites.iter().any(|s| !r.sites.contains(s)) {
            return deny(format!(
                "{} is not the custodian of a site that contributed to review {id}",
                who.id
            ))
            .await;
        }
        let study = self.state.study(&r.study_id).await?;
        for site in &sites {
            self.authorize(who, "review.decide", Some(&study), Some(site))
                .await?;
            self.state
                .decide_review(id, site, &who.id, approve, req.reason.as_deref())
                .await?;
            let entry = Entry::new(
                &who.id,
                who.role(),
                "review.decide",
                Outcome::Allow,
                format!(
                    "{} review {id} for {site}{}",
                    if approve { "approved" } else { "rejected" },
                    req.reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ),
            )
            .study(&r.study_id)
            .sites([site.clone()])
            .request_id(&r.held.release.request_id);
            self.record(entry).await?;
        }
        let r = self.state.review(id).await?;
        let decided = |d: &str| {
            r.sites
                .iter()
                .filter(|s| r.decisions.get(*s).is_some_and(|x| x.0 == d))
                .count()
        };
        if decided("rejected") > 0 {
            self.state.close_review(id, "rejected").await?;
        } else if decided("approved") == r.sites.len()
            && self.state.close_review(id, "approved").await?
        {
            self.release(&r.held).await?;
        }
        let r = self.state.review(id).await?;
        Ok(view(r, true))
    }
}

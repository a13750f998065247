//! The hub's governance: who is calling, whether hub.rego lets them, studies and their approval,
//! and the audit trail every call ends in.

use medfed_analysis::glm::FitError;
use medfed_audit::{Decision as Outcome, Entry, Record};
use medfed_core::study::{ApprovalState, PrivacyMode};
use medfed_policy::input::{HubInput, INPUT_VERSION, Now, StudyDoc};

use crate::auth::{AuthError, Principal};
use crate::state::{NewStudy, Study};
use crate::{Hub, HubError};

impl Hub {
    /// Authenticates an `Authorization` header; failures are audited (without the token).
    pub async fn authenticate(
        &self,
        header: Option<&str>,
        what: &str,
    ) -> Result<Principal, HubError> {
        match self.auth.authenticate(header).await {
            Ok(p) => Ok(p),
            Err(e) => {
                let actor = if e == AuthError::Missing {
                    "anonymous"
                } else {
                    "unauthenticated"
                };
                self.record(Entry::new(actor, "-", what, Outcome::Deny, e.to_string()))
                    .await?;
                Err(HubError::Unauthenticated(e.to_string()))
            }
        }
    }

    /// Asks hub.rego whether `who` may do `action`. Denials are audited and become 403; allowed
    /// reads are audited here, other allowed actions by the caller once their outcome is known.
    pub(crate) async fn authorize(
        &self,
        who: &Principal,
        action: &str,
        study: Option<&Study>,
        site: Option<&str>,
    ) -> Result<(), HubError> {
        let input = HubInput {
            version: INPUT_VERSION,
            action: action.into(),
            subject: who.subject(),
            study: study.map(study_doc),
            site: site.map(String::from),
            now: Now::current(),
        };
        let decision = self.policy.evaluate(&input)?;
        let is_read = action.ends_with(".read") || action == "whoami";
        if decision.allow && !is_read {
            return Ok(());
        }
        let outcome = if decision.allow {
            Outcome::Allow
        } else {
            Outcome::Deny
        };
        let mut entry = Entry::new(&who.id, who.role(), action, outcome, decision.reason());
        entry.study = study.map(|s| s.id.clone());
        entry.sites = site.map(|s| vec![s.to_string()]).unwrap_or_default();
        self.record(entry).await?;
        if decision.allow {
            Ok(())
        } else {
            Err(HubError::Forbidden(decision.reason()))
        }
    }

    /// Appends to the audit trail.
    pub(crate) async fn record(&self, entry: Entry) -> Result<(), HubError> {
        self.audit.append(entry).await?;
        Ok(())
    }

    /// Audits a refused analysis (`action` under `study`, `reason` as the researcher sees it)
    /// and hands back `error` to return; an audit failure wins, since nothing may go unrecorded.
    pub(crate) async fn refuse(
        &self,
        who: &Principal,
        study: &str,
        action: &str,
        reason: String,
        error: HubError,
    ) -> HubError {
        let entry = Entry::new(&who.id, who.role(), action, Outcome::Deny, reason).study(study);
        match self.record(entry).await {
            Ok(()) => error,
            Err(audit) => audit,
        }
    }

    /// A model fit's outcome as the hub returns it: a refusal of the model itself (disclosure,
    /// formula, numerics) is audited under `action`; a step's own error passes through.
    pub(crate) async fn fitted<T>(
        &self,
        who: &Principal,
        study: &str,
        action: &str,
        outcome: Result<T, FitError<HubError>>,
    ) -> Result<T, HubError> {
        match outcome {
            Ok(t) => Ok(t),
            Err(FitError::Run(e)) => Err(e),
            Err(FitError::Glm(e)) => {
                let reason = e.to_string();
                Err(self.refuse(who, study, action, reason, e.into()).await)
            }
        }
    }

    /// Loads `study_id` for `who` to run `action` in, refusing (audited) a DP study: `why`
    /// says what the analysis lacks to be released with noise.
    pub(crate) async fn exact_study(
        &self,
        who: &Principal,
        study_id: &str,
        action: &str,
        why: &str,
    ) -> Result<Study, HubError> {
        let study = self.state.study(study_id).await?;
        self.authorize(who, "query", Some(&study), None).await?;
        if study.terms.privacy == PrivacyMode::Dp {
            let error = HubError::Forbidden(why.into());
            return Err(self.refuse(who, study_id, action, why.into(), error).await);
        }
        Ok(study)
    }

    /// A study, if `who` may read it.
    pub async fn study_for(&self, who: &Principal, id: &str) -> Result<Study, HubError> {
        let study = self.state.study(id).await?;
        self.authorize(who, "study.read", Some(&study), None)
            .await?;
        Ok(study)
    }

    /// Every study, if `who` may read them.
    pub async fn studies_for(&self, who: &Principal) -> Result<Vec<Study>, HubError> {
        self.authorize(who, "study.read", None, None).await?;
        Ok(self.state.studies().await?)
    }

    /// `who` proposes a study.
    pub async fn propose(&self, who: &Principal, new: &NewStudy) -> Result<Study, HubError> {
        self.authorize(who, "study.propose", None, None).await?;
        let sites: Vec<String> = self.site_names().iter().map(|s| s.to_string()).collect();
        let study = match self.state.propose(&who.id, new, &sites).await {
            Ok(s) => s,
            Err(e) => {
                let entry = Entry::new(
                    &who.id,
                    who.role(),
                    "study.propose",
                    Outcome::Deny,
                    e.to_string(),
                );
                self.record(entry).await?;
                return Err(e.into());
            }
        };
        let entry = Entry::new(
            &who.id,
            who.role(),
            "study.propose",
            Outcome::Allow,
            format!("proposed: {}", study.title),
        )
        .study(&study.id)
        .sites(study.sites.keys().cloned());
        self.record(entry).await?;
        Ok(study)
    }

    /// A custodian approves or rejects `study` for `site`.
    pub async fn decide(
        &self,
        who: &Principal,
        study: &str,
        site: &str,
        approve: bool,
        reason: Option<&str>,
    ) -> Result<Study, HubError> {
        let current = self.state.study(study).await?;
        self.authorize(who, "study.decide", Some(&current), Some(site))
            .await?;
        let state = if approve {
            ApprovalState::Approved
        } else {
            ApprovalState::Rejected
        };
        let updated = self
            .state
            .decide(study, site, &who.id, state, reason)
            .await?;
        let entry = Entry::new(
            &who.id,
            who.role(),
            "study.decide",
            Outcome::Allow,
            format!(
                "{} for {site}{}",
                state.as_str(),
                reason.map(|r| format!(": {r}")).unwrap_or_default()
            ),
        )
        .study(study)
        .sites([site]);
        self.record(entry).await?;
        Ok(updated)
    }

    /// Audit records after `after`, for an auditor.
    pub async fn audit_records(
        &self,
        who: &Principal,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Record>, HubError> {
        self.authorize(who, "audit.read", None, None).await?;
        Ok(self.audit.records(after, limit.clamp(1, 10_000)).await?)
    }

    /// Re-walks the hub's trail, for an auditor.
    pub async fn audit_verify(
        &self,
        who: &Principal,
    ) -> Result<medfed_audit::VerifyReport, HubError> {
        self.authorize(who, "audit.read", None, None).await?;
        let key = self.key.verifying_key();
        Ok(medfed_audit::verify(self.audit.database(), Some(&key)).await?)
    }

    /// Checks `who` may make a read-only call (`sites.read`, `catalog.read`, `whoami`).
    pub async fn allow_read(&self, who: &Principal, action: &str) -> Result<(), HubError> {
        self.authorize(who, action, None, None).await
    }
}

/// The policy's view of a study.
pub(crate) fn study_doc(s: &Study) -> StudyDoc {
    StudyDoc {
        id: s.id.clone(),
        title: s.title.clone(),
        proposer: s.proposer.clone(),
        members: s.members.clone(),
        sites: s.sites.keys().cloned().collect(),
        approvals: s
            .sites
            .iter()
            .map(|(site, d)| (site.clone(), d.state.as_str().to_string()))
            .collect(),
        terms: s.terms.clone(),
    }
}

//! The site's gate: every request from the hub passes it before any data is touched.
//!
//! 1. the ticket carries the hub's Ed25519 signature, is addressed to this site, is fresh and has
//!    not been served before (replay);
//! 2. this site's own Rego policy (`site.rego`, reloaded when the custodian edits it) allows the
//!    study, analysis, tables and columns the site itself found in the plan;
//! 3. everything — refusals included — is written to the site's own audit trail before the answer
//!    leaves.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use ed25519_dalek::VerifyingKey;
use medfed_audit::db::now_us;
use medfed_audit::{AuditLog, Decision as Outcome, Entry};
use medfed_core::SiteName;
use medfed_policy::input::{INPUT_VERSION, Now, RequestDoc, SiteInput, SiteStudyDoc, Subject};
use medfed_policy::{Decision, Policy};
use medfed_protocol::wire::{MAX_SKEW_US, SiteRequest, WireError};
use tonic::Status;

/// The site's gate.
pub(crate) struct Gate {
    site: SiteName,
    hub_key: VerifyingKey,
    policy: Policy,
    audit: AuditLog,
    /// Request ids served within the freshness window (replay protection).
    seen: Mutex<HashMap<String, i64>>,
}

impl Gate {
    pub(crate) fn new(
        site: SiteName,
        hub_key: VerifyingKey,
        policy: Policy,
        audit: AuditLog,
    ) -> Self {
        Self {
            site,
            hub_key,
            policy,
            audit,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// The site's audit trail.
    pub(crate) fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Step 1: verify the ticket. Failures are audited and answered without detail beyond why.
    pub(crate) async fn admit(&self, ticket: &[u8]) -> Result<SiteRequest, Status> {
        let now = now_us();
        let req = match SiteRequest::verify(ticket, &self.hub_key, self.site.as_str(), now) {
            Ok((req, _)) => req,
            Err(e) => {
                self.deny_unverified(&e).await?;
                return Err(match e {
                    WireError::Malformed(_) => Status::invalid_argument(e.to_string()),
                    _ => Status::permission_denied(format!("site {}: {e}", self.site)),
                });
            }
        };
        let replayed = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.retain(|_, at| now - *at <= 2 * MAX_SKEW_US);
            seen.insert(req.replay_key(), now).is_some()
        };
        if replayed {
            let reason = "request id already served (replay)";
            self.record(&req, Outcome::Deny, reason, None, None).await?;
            return Err(Status::permission_denied(format!(
                "site {}: {reason}",
                self.site
            )));
        }
        Ok(req)
    }

    async fn deny_unverified(&self, e: &WireError) -> Result<(), Status> {
        let entry = Entry::new("unverified", "-", "request", Outcome::Deny, e.to_string())
            .sites([self.site.to_string()]);
        self.append(entry).await
    }

    /// Step 2: this site's policy on what the site found the request reads.
    pub(crate) async fn judge(
        &self,
        req: &SiteRequest,
        reads: &BTreeMap<String, std::collections::BTreeSet<String>>,
    ) -> Result<Decision, Status> {
        match self.policy.reload_if_changed() {
            Ok(true) => tracing::info!(site = %self.site, "site policy reloaded"),
            Ok(false) => {}
            // The previous policy stays in force; the custodian sees why in the log.
            Err(e) => tracing::error!(site = %self.site, error = %e, "site policy not reloaded"),
        }
        let ctx = &req.context;
        let input = SiteInput {
            version: INPUT_VERSION,
            site: self.site.to_string(),
            researcher: Subject {
                id: ctx.researcher.id.clone(),
                roles: ctx.researcher.roles.clone(),
                sites: vec![],
                via: "hub".into(),
            },
            study: SiteStudyDoc {
                id: ctx.study.id.clone(),
                title: ctx.study.title.clone(),
                approval: ctx.study.approval.as_str().into(),
                approved_by: ctx.study.approved_by.clone(),
                terms: ctx.study.terms.clone(),
            },
            request: RequestDoc {
                id: req.request_id.clone(),
                analysis: ctx.analysis.clone(),
                tables: reads.keys().cloned().collect(),
                columns: reads
                    .iter()
                    .map(|(t, c)| (t.clone(), c.iter().cloned().collect()))
                    .collect(),
                secure_aggregation: ctx.privacy.secure_aggregation,
            },
            now: Now::current(),
        };
        let decision = match self.policy.evaluate(&input) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(site = %self.site, error = %e, "site policy failed; denying");
                Decision {
                    allow: false,
                    reasons: vec!["the site's policy could not be evaluated".into()],
                    extra: Default::default(),
                }
            }
        };
        if !decision.allow {
            let reason = format!("refused by site policy: {}", decision.reason());
            self.record(req, Outcome::Deny, &reason, None, None).await?;
            return Err(Status::permission_denied(format!(
                "site {}: {reason}",
                self.site
            )));
        }
        Ok(decision)
    }

    /// Step 3: records the outcome of a request (before its answer leaves).
    pub(crate) async fn record(
        &self,
        req: &SiteRequest,
        outcome: Outcome,
        reason: &str,
        digest: Option<String>,
        epsilon: Option<f64>,
    ) -> Result<(), Status> {
        let ctx = &req.context;
        let mut entry = Entry::new(
            ctx.researcher.id.as_str(),
            ctx.researcher.roles.join(","),
            format!("partial.{}", ctx.analysis),
            outcome,
            reason,
        )
        .study(ctx.study.id.as_str())
        .sites([self.site.to_string()])
        .request_id(req.request_id.as_str());
        entry.result_digest = digest;
        entry.epsilon = epsilon;
        self.append(entry).await
    }

    /// Records that the catalogue was listed (only the hub's certificate can ask) and what it
    /// said, before the listing leaves.
    pub(crate) async fn record_listing(&self, reason: String) -> Result<(), Status> {
        let entry = Entry::new("hub", "hub", "catalog.list", Outcome::Allow, reason)
            .sites([self.site.to_string()]);
        self.append(entry).await
    }

    async fn append(&self, entry: Entry) -> Result<(), Status> {
        self.audit.append(entry).await.map(|_| ()).map_err(|e| {
            // No audit, no answer.
            tracing::error!(site = %self.site, error = %e, "audit append failed; refusing");
            Status::unavailable(format!("site {}: audit trail unavailable", self.site))
        })
    }
}

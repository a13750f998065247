//! One site-kernel step across the network ([`medfed_core::kernel`]), governed as a query is:
//! hub.rego, the study's analyses and approvals, its terms on what the rows read (planned here
//! against the catalogue), a signed request per site, each site's own checks and policy, and
//! an audit entry for the step. The hub receives each site's sums (a stratified model needs
//! exactly those) and nothing row-level.

use std::time::Instant;

use medfed_analysis::kernel::{self, KernelRound};
use medfed_audit::{Decision as Outcome, Entry};
use medfed_core::kernel::KernelTask;
use medfed_core::result::{SiteOutcome, SiteStatus};
use medfed_protocol::wire::{SiteRequest, Work};
use sha2::{Digest, Sha256};

use crate::auth::Principal;
use crate::query::{action_name, request_context};
use crate::secure::call_site;
use crate::{Hub, HubError, QueryOptions};

impl Hub {
    /// Runs `task` for `who` under `study_id` as a step of `analysis` at the study's approved
    /// sites (or those of `only`), and returns each answering site's sums.
    pub(crate) async fn kernel_step(
        &self,
        who: &Principal,
        study_id: &str,
        task: &KernelTask,
        only: Option<&[String]>,
        analysis: &str,
    ) -> Result<KernelRound, HubError> {
        let (study, targets) = self.admit(who, study_id, only, analysis).await?;
        let action = action_name(analysis);
        let deny = |outcome: Outcome, reason: String| {
            Entry::new(&who.id, who.role(), action, outcome, reason).study(study_id)
        };
        let state = self.planning_state().await;
        let rows = match kernel::prepare(&state, &task.rows).await {
            Ok(rows) => rows,
            Err(e) => {
                self.record(deny(Outcome::Deny, e.to_string())).await?;
                return Err(e.into());
            }
        };
        let used = rows
            .reads
            .iter()
            .map(|(t, c)| (t.clone(), c.iter().cloned().collect::<Vec<_>>()));
        if let Some(outside) = study.terms.outside(used) {
            let reason =
                format!("{outside} is outside the terms of study {study_id} (data minimisation)");
            self.record(deny(Outcome::Deny, reason.clone())).await?;
            return Err(HubError::Forbidden(reason));
        }
        let mut protection = self.protection(&study.terms, &QueryOptions::default())?;
        protection.secure_aggregation = false;
        let id = format!("k-{}", crate::state::random_id(8));
        let calls = targets.iter().map(|site| {
            let name = site.name().to_string();
            let request = SiteRequest::new(
                &id,
                &name,
                request_context(&study, &name, who, analysis, &protection),
                Work::Kernel { task: task.clone() },
            );
            async move {
                let started = Instant::now();
                let answer = call_site(self.deadline, site.kernel(&request, &self.key)).await;
                let (status, message, answer) = match answer {
                    Ok(a) => (SiteStatus::Answered, None, Some(a)),
                    Err((status, message)) => (status, Some(message), None),
                };
                let outcome = SiteOutcome {
                    status,
                    elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
                    message,
                };
                (name, outcome, answer)
            }
        });
        let mut round = KernelRound::default();
        for (name, outcome, answer) in futures::future::join_all(calls).await {
            if outcome.status != SiteStatus::Answered {
                tracing::warn!(request_id = %id, site = %name, status = %outcome.status, message = ?outcome.message, "site did not answer");
            }
            if let Some(a) = answer {
                round.answers.insert(name.clone(), a);
            }
            round.sites.insert(name, outcome);
        }
        if round.answers.is_empty() {
            let refused = round
                .sites
                .values()
                .all(|o| o.status == SiteStatus::Refused);
            let outcome = if refused {
                Outcome::Deny
            } else {
                Outcome::Error
            };
            let entry = deny(outcome, "no site answered".into())
                .sites(round.sites.keys().cloned())
                .request_id(&id);
            self.record(entry).await?;
            if refused && !round.sites.is_empty() {
                // Every site judged it and said no: a refusal with their reasons, not an outage.
                let reasons: Vec<String> = round
                    .sites
                    .values()
                    .filter_map(|o| o.message.clone())
                    .collect();
                return Err(HubError::Forbidden(reasons.join("; ")));
            }
            return Err(HubError::NoSiteAnswered(round.sites));
        }
        let digest = hex::encode(Sha256::digest(
            serde_json::to_vec(&round.answers).expect("answers serialise"),
        ));
        let entry = Entry::new(
            &who.id,
            who.role(),
            action,
            Outcome::Allow,
            format!(
                "kernel step answered by {} of {} site(s)",
                round.answers.len(),
                round.sites.len()
            ),
        )
        .study(study_id)
        .sites(round.answers.keys().cloned())
        .result_digest(digest)
        .request_id(&id);
        self.record(entry).await?;
        Ok(round)
    }
}

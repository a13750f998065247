//! One site-kernel step across the network ([`medfed_core::kernel`]), governed as a query is:
//! hub.rego, the study's analyses and approvals, its terms on what the rows read (planned here
//! against the catalogue), a signed request per site, each site's own checks and policy, and
//! an audit entry for the step. The hub receives each site's sums (a stratified model needs
//! exactly those) and nothing row-level.

use std::collections::BTreeMap;
use std::time::Instant;

use arrow::datatypes::SchemaRef;
use medfed_analysis::kernel::{self, KernelRound, SECURE_SUM, summed};
use medfed_analysis::sql::SqlError;
use medfed_audit::{Decision as Outcome, Entry};
use medfed_core::kernel::KernelTask;
use medfed_core::result::{SiteOutcome, SiteStatus};
use medfed_privacy::{DisclosureRules, Protection};
use medfed_protocol::wire::{RequestContext, SiteRequest, Work};
use medfed_protocol::{SiteCallError, SiteClient};
use sha2::{Digest, Sha256};

use crate::auth::Principal;
use crate::query::{action_name, request_context};
use crate::secure::{Reveal, call_site, secure_fan_out};
use crate::{Hub, HubError, QueryOptions};

impl Hub {
    /// Runs `task` for `who` under `study_id` as a step of `analysis` at the study's approved
    /// sites (or those of `only`), with the researcher's `options` (ε in a DP study), and
    /// returns each answering site's sums.
    pub(crate) async fn kernel_step(
        &self,
        who: &Principal,
        study_id: &str,
        task: &KernelTask,
        only: Option<&[String]>,
        analysis: &str,
        options: &QueryOptions,
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
        let protection = self.protection(&study.terms, options)?;
        let id = format!("k-{}", crate::state::random_id(8));
        let context = |site: &str| request_context(&study, site, who, analysis, &protection);
        // With fewer than two sites there is no sum to hide one site's answer in: the per-site
        // rules apply (and the result says secure aggregation was not used).
        let plain = Protection {
            secure_aggregation: false,
            ..protection.clone()
        };
        let plain_context = |site: &str| request_context(&study, site, who, analysis, &plain);
        let round = if protection.secure_aggregation && targets.len() >= 2 {
            let schema = match summed::schema(&task.step) {
                Ok(schema) => schema,
                Err(e) => {
                    self.record(deny(Outcome::Deny, e.to_string())).await?;
                    return Err(HubError::Query(SqlError::Unsupported(e.to_string())));
                }
            };
            let (mut round, too_few, rules) = self
                .secure_kernel_fan_out(&id, task, &schema, &targets, &context)
                .await?;
            // The sites left k, events and saturation to the network's sum: judged here, by
            // the strictest rules any site holds the step to.
            if let Some(sum) = round.answers.get(SECURE_SUM) {
                let limits = kernel::Limits {
                    k: rules.min_cell_count,
                    models: rules.models,
                    class_disclosure: rules.class_disclosure,
                    local: false,
                };
                if let Err(e) = kernel::network_limits(sum, &task.step, &limits) {
                    self.record(deny(Outcome::Deny, e.to_string())).await?;
                    return Err(e.into());
                }
            }
            if !too_few.is_empty() {
                let left: Vec<&SiteClient> = targets
                    .iter()
                    .filter(|t| too_few.contains(&t.name().to_string()))
                    .copied()
                    .collect();
                let alone = self.kernel_fan_out(&id, task, &left, &plain_context).await;
                round.sites.extend(alone.sites);
                round.answers.extend(alone.answers);
            }
            round
        } else {
            self.kernel_fan_out(&id, task, &targets, &plain_context)
                .await
        };
        self.settle_kernel_step(who, study_id, analysis, &id, round)
            .await
    }

    /// Sums the answers of `task` at `targets` under secure aggregation: the round holds the
    /// network's sum under [`SECURE_SUM`] and what each site did.
    async fn secure_kernel_fan_out(
        &self,
        id: &str,
        task: &KernelTask,
        schema: &SchemaRef,
        targets: &[&SiteClient],
        context: &impl Fn(&str) -> RequestContext,
    ) -> Result<(KernelRound, Vec<String>, DisclosureRules), HubError> {
        let names: Vec<String> = targets.iter().map(|t| t.name().to_string()).collect();
        let fan = secure_fan_out(
            &names,
            schema,
            Reveal::Announced,
            self.deadline,
            |site: String, round| {
                let client = targets.iter().find(|t| t.name().as_str() == site).copied();
                let work = Work::SecureKernel {
                    task: task.clone(),
                    round,
                };
                let request = SiteRequest::new(id, &site, context(&site), work);
                async move {
                    match client {
                        Some(c) => c.secure_round(&request, &self.key).await,
                        None => Err(SiteCallError::Failed(format!("no site {site}"))),
                    }
                }
            },
        )
        .await;
        let rules = self
            .privacy
            .rules()
            .strictest(fan.reports.values().map(|r| &r.rules));
        let mut round = KernelRound {
            sites: fan.sites,
            ..KernelRound::default()
        };
        if let Some(sum) = fan.partials.first() {
            let answer = summed::from_row(&task.step, sum)
                .map_err(|e| HubError::Transport(e.to_string()))?;
            round.answers.insert(SECURE_SUM.into(), answer);
        }
        Ok((round, fan.too_few, rules))
    }

    /// Sends `task` to each of `targets` and collects their answers.
    async fn kernel_fan_out(
        &self,
        id: &str,
        task: &KernelTask,
        targets: &[&SiteClient],
        context: &impl Fn(&str) -> RequestContext,
    ) -> KernelRound {
        let calls = targets.iter().map(|site| {
            let name = site.name().to_string();
            let request = SiteRequest::new(
                id,
                &name,
                context(&name),
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
        round
    }

    /// Audits a kernel step's outcome: its answers' digest, or a refusal with the sites'
    /// reasons when every site said no (an outage when they could not answer).
    async fn settle_kernel_step(
        &self,
        who: &Principal,
        study_id: &str,
        analysis: &str,
        id: &str,
        round: KernelRound,
    ) -> Result<KernelRound, HubError> {
        let action = action_name(analysis);
        let deny = |outcome: Outcome, reason: String| {
            Entry::new(&who.id, who.role(), action, outcome, reason).study(study_id)
        };
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
                .request_id(id);
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
                "kernel step answered by {} of {} site(s){}",
                round.answered().len(),
                round.sites.len(),
                if round.is_secure() {
                    " (secure aggregation: the hub saw only their sum)"
                } else {
                    ""
                }
            ),
        )
        .study(study_id)
        .sites(round.answered())
        .result_digest(digest)
        .request_id(id);
        self.record(entry).await?;
        Ok(round)
    }
}

/// One analysis's steps for one researcher under one study, as the analysis modules'
/// orchestrators call them: planning queries through [`Hub::query_as`], kernel steps through
/// [`Hub::kernel_step`], each audited under `analysis`.
pub(crate) struct Steps<'a> {
    pub hub: &'a Hub,
    pub who: &'a Principal,
    pub study: &'a str,
    /// The sites the request named (all the study's approved sites when `None`).
    pub only: Option<&'a [String]>,
    pub analysis: &'a str,
    pub options: QueryOptions,
    /// Sites left out after refusing (or failing) the analysis's first step, with why: every
    /// later step goes to the others, and the result lists these as they answered then.
    left_out: std::sync::Mutex<BTreeMap<String, SiteOutcome>>,
    /// The sites still in the analysis once some were left out.
    narrowed: std::sync::Mutex<Option<Vec<String>>>,
}

impl<'a> Steps<'a> {
    /// Steps of `analysis` for `who` in `study` at `only`, queries without secure aggregation.
    pub(crate) fn new(
        hub: &'a Hub,
        who: &'a Principal,
        study: &'a str,
        only: Option<&'a [String]>,
        analysis: &'a str,
    ) -> Self {
        let options = QueryOptions {
            secure_aggregation: Some(false),
            ..QueryOptions::default()
        };
        Self {
            hub,
            who,
            study,
            only,
            analysis,
            options,
            left_out: Default::default(),
            narrowed: Default::default(),
        }
    }

    /// The sites the next step goes to (None: all the request's).
    fn sites(&self) -> Option<Vec<String>> {
        let narrowed = self.narrowed.lock().unwrap_or_else(|p| p.into_inner());
        narrowed
            .clone()
            .or_else(|| self.only.map(<[String]>::to_vec))
    }

    /// Leaves out, for every later step, the sites that did not answer `round` (the
    /// analysis's first step), keeping their outcome (status and reason) for the result.
    pub(crate) fn leave_out_refusals(&self, round: &KernelRound) {
        let out: BTreeMap<String, SiteOutcome> = round
            .sites
            .iter()
            .filter(|(_, o)| o.status != SiteStatus::Answered)
            .map(|(n, o)| (n.clone(), o.clone()))
            .collect();
        if out.is_empty() {
            return;
        }
        let answered: Vec<String> = round
            .sites
            .iter()
            .filter(|(_, o)| o.status == SiteStatus::Answered)
            .map(|(n, _)| n.clone())
            .collect();
        for (name, o) in &out {
            tracing::info!(study = self.study, analysis = self.analysis, site = %name, reason = ?o.message, "site left out of the analysis");
        }
        *self.narrowed.lock().unwrap_or_else(|p| p.into_inner()) = Some(answered);
        self.left_out
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(out);
    }

    /// The sites left out after the first step, with their status and reason.
    pub(crate) fn left_out(&self) -> BTreeMap<String, SiteOutcome> {
        self.left_out
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A planning query (levels, summaries) or, on the SQL path, an iteration.
    pub(crate) async fn sql(
        &self,
        step: medfed_analysis::glm::Step,
        sql: String,
    ) -> Result<medfed_core::result::QueryResult, HubError> {
        tracing::debug!(study = self.study, analysis = self.analysis, ?step, "step");
        let sites = self.sites();
        self.hub
            .query_as(
                self.who,
                self.study,
                &sql,
                sites.as_deref(),
                &self.options,
                self.analysis,
            )
            .await
    }

    /// A kernel step at `sites` (default: the request's).
    pub(crate) async fn kernel(
        &self,
        task: KernelTask,
        sites: Option<&[String]>,
    ) -> Result<KernelRound, HubError> {
        tracing::debug!(
            study = self.study,
            analysis = self.analysis,
            ?sites,
            "kernel step"
        );
        let ours = self.sites();
        self.hub
            .kernel_step(
                self.who,
                self.study,
                &task,
                sites.or(ours.as_deref()),
                self.analysis,
                &self.options,
            )
            .await
    }
}

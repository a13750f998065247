//! A federated query: authorise, plan, check against the study's terms, sign, fan out, merge,
//! audit, release.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use medfed_analysis::sql::{FederatedSql, SqlError};
use medfed_audit::{Decision as Outcome, Entry};
use medfed_core::result::{QueryResult, SiteOutcome, SiteStatus};
use medfed_core::study::{PrivacyMode, StudyTerms};
use medfed_privacy::{DpRelease, Protection, Suppression};
use medfed_protocol::SiteClient;
use medfed_protocol::wire::{RequestContext, Researcher, SiteRequest, StudyGrant};
use sha2::{Digest, Sha256};

use crate::auth::Principal;
use crate::secure::{FanOut, call_site};
use crate::state::{HeldRelease, Release, ReleasedTable, Study};
use crate::summary::{site_report, summary};
use crate::{Hub, HubError, json};

impl Hub {
    /// Runs `sql` for `who` under `study_id`, at the study's approved sites (or those of `only`).
    ///
    /// Refused (403, audited) unless hub.rego lets `who` query the study, the query reads only
    /// the study's tables and columns, and every site asked for approved the study.
    pub async fn query(
        &self,
        who: &Principal,
        study_id: &str,
        sql: &str,
        only: Option<&[String]>,
        options: &QueryOptions,
    ) -> Result<QueryResult, HubError> {
        match medfed_analysis::sql::grouping_sets::expand(sql) {
            Ok(None) => {
                self.query_as(who, study_id, sql, only, options, "sql")
                    .await
            }
            Ok(Some(groupings)) => {
                self.admit(who, study_id, only, "sql").await?;
                self.query_groupings(who, study_id, groupings, only, options)
                    .await
            }
            Err(e) => {
                let entry = Entry::new(&who.id, who.role(), "query", Outcome::Deny, e.to_string())
                    .study(study_id);
                self.record(entry).await?;
                Err(e.into())
            }
        }
    }

    /// [`Self::query`] as a step of `analysis` (`sql`, `glm`, …): the study must allow that
    /// analysis, and the sites' requests and both audit trails name it.
    pub(crate) async fn query_as(
        &self,
        who: &Principal,
        study_id: &str,
        sql: &str,
        only: Option<&[String]>,
        options: &QueryOptions,
        analysis: &str,
    ) -> Result<QueryResult, HubError> {
        let (study, targets) = self.admit(who, study_id, only, analysis).await?;
        let action = action_name(analysis);
        let deny = |reason: String| async move {
            let entry = Entry::new(&who.id, who.role(), action, Outcome::Deny, reason.clone())
                .study(study_id);
            self.record(entry).await?;
            Err::<QueryResult, _>(HubError::Forbidden(reason))
        };
        let mut state = self.planning_state().await;
        let plan = match FederatedSql::plan(&state, sql).await {
            // A table may be new since the catalogue was read (a site added an extract, or was
            // down at start-up): refresh once before calling the query invalid.
            Err(SqlError::Plan(_)) if self.catalog_age() > crate::catalog::RETRY_AFTER => {
                self.refresh_catalog().await;
                state = self.current_planning_state();
                FederatedSql::plan(&state, sql).await
            }
            other => other,
        };
        let plan = match plan {
            Ok(p) => p,
            Err(e) => {
                let entry = Entry::new(&who.id, who.role(), action, Outcome::Deny, e.to_string())
                    .study(study_id);
                self.record(entry).await?;
                return Err(e.into());
            }
        };
        let used = plan
            .reads()
            .iter()
            .map(|(t, c)| (t.clone(), c.iter().cloned().collect::<Vec<_>>()));
        if let Some(outside) = study.terms.outside(used) {
            return deny(format!(
                "{outside} is outside the terms of study {study_id} (data minimisation)"
            ))
            .await;
        }
        let mut asked = self.protection(&study.terms, options)?;
        asked.model_step = matches!(analysis, "glm" | "fedavg");
        // k applies to the network's sum when the partials are summed securely (VAR/STDDEV in
        // two sums). Per-site k is the fallback: secure aggregation off or fewer than two
        // sites; the result says which. DP has no mechanism for VAR/STDDEV.
        let mut notes = Vec::new();
        let summable = plan.is_additive() || asked.dp.is_none();
        let secure = asked.secure_aggregation && targets.len() >= 2 && summable;
        let plain = Protection {
            secure_aggregation: false,
            ..asked.clone()
        };
        let id = format!("q-{}", crate::state::random_id(8));
        tracing::info!(request_id = %id, study = study_id, sites = targets.len(), site_sql = plan.site_sql(), "fan-out");
        let request_for = |site: &str, protection: &Protection| {
            let context = request_context(&study, site, who, analysis, protection);
            SiteRequest::partial_sql(&id, site, context, plan.site_sql())
        };
        let mut fan = if secure {
            self.secure_sql(&id, &plan, &targets, &asked, |s| request_for(s, &asked))
                .await?
        } else {
            self.fan_out(&targets, &|s| request_for(s, &plain), &plan)
                .await
        };
        if !fan.too_few.is_empty() {
            let left: Vec<&SiteClient> = targets
                .iter()
                .filter(|t| fan.too_few.contains(&t.name().to_string()))
                .copied()
                .collect();
            let alone = self
                .fan_out(&left, &|s| request_for(s, &plain), &plan)
                .await;
            fan.sites.extend(alone.sites);
            fan.partials.extend(alone.partials);
            fan.reports = alone.reports;
            fan.threshold = None;
        }
        let secured = secure && fan.threshold.is_some();
        if asked.secure_aggregation && !secured && summable {
            notes.push(
                "fewer than two sites answered, so there was no network sum to hide a site's \
                 partial in: k was applied to each site's groups"
                    .to_string(),
            );
        }
        if !asked.secure_aggregation && asked.dp.is_none() {
            notes.push(
                "secure aggregation is off: k was applied to each site's own groups, so a \
                 group with fewer than k people at some site is hidden even when the network \
                 holds k or more; secure aggregation would release it"
                    .to_string(),
            );
        }
        if !asked.secure_aggregation && asked.dp.is_some() {
            notes.push(
                "each site noised its own partial and chose its own groups (DP studies default \
                 to this); with secure aggregation the sites add shares of one noise inside the \
                 network's sum instead"
                    .to_string(),
            );
        }
        let protection = if secured { asked } else { plain };
        let FanOut {
            sites,
            partials,
            reports,
            threshold,
            withheld,
            ..
        } = fan;
        for (name, outcome) in &sites {
            if outcome.status != SiteStatus::Answered {
                tracing::warn!(request_id = %id, site = %name, status = %outcome.status, message = ?outcome.message, "site did not answer");
            }
        }
        let answered: Vec<String> = sites
            .iter()
            .filter(|(_, o)| o.status == SiteStatus::Answered)
            .map(|(n, _)| n.clone())
            .collect();
        if answered.is_empty() {
            let entry = Entry::new(
                &who.id,
                who.role(),
                action,
                Outcome::Error,
                "no site answered",
            )
            .study(study_id)
            .sites(sites.keys().cloned())
            .request_id(&id);
            self.record(entry).await?;
            return Err(HubError::NoSiteAnswered(sites));
        }
        let rules = protection.rules;
        // The rules as the strictest answering site applied them: counts are rounded to the
        // coarsest base any asks for; class disclosure is checked if any asks for it.
        let applied = rules.strictest(reports.values().map(|r| &r.rules));
        let rounding = applied.rounding;
        let mut merged = plan.merge(partials, rules.min_cell_count, rounding).await?;
        // The airlock: a query whose every group is too small selects too few people to
        // release anything (minimum subset size) — refused, not answered with blanks.
        let every_group_small = if merged.cells.is_empty() {
            // Under secure aggregation no group at all means every group was withheld: all
            // of them small, or some for another reason (then the answer says which).
            protection.secure_aggregation
                && !plan.grouping().is_empty()
                && withheld.keys().all(|why| *why == Suppression::SmallCell)
        } else {
            merged
                .cells
                .iter()
                .all(|c| c.status == Suppression::SmallCell.code())
        };
        if every_group_small {
            return deny(format!(
                "the query selects fewer than k = {} people in every group (minimum subset \
                 size, at some site or network-wide); widen the cohort or the groups",
                rules.min_cell_count
            ))
            .await;
        }
        let mut withheld = withheld;
        let checked = match self
            .airlock(
                study_id,
                &plan,
                &mut merged,
                &applied,
                &protection,
                &mut withheld,
            )
            .await?
        {
            Ok(checked) => checked,
            Err(refusal) => return deny(refusal).await,
        };
        let (columns, rows) = json::to_rows(&merged.batches);
        let columns = if columns.is_empty() {
            plan_columns(&state, sql).await
        } else {
            columns
        };
        let mut privacy = summary(
            &plan,
            &protection,
            &merged.cells,
            &reports,
            &answered,
            threshold,
        );
        privacy.withheld_groups = withheld
            .iter()
            .map(|(why, n)| (why.explain(&protection.rules), *n))
            .collect();
        privacy.notes = notes;
        privacy.notes.extend(checked.notes.iter().cloned());
        privacy.rounding = rounding.describe();
        privacy.evidence = crate::evidence::evidence(&crate::evidence::Decided {
            rules: &applied,
            protection: &protection,
            cells: &merged.cells,
            withheld: &withheld,
            keys: plan.key_count(),
            held: &checked.held,
        });
        let result = QueryResult {
            columns,
            rows,
            sites,
            privacy,
        };
        // Audited and recorded before it is released (or held for review).
        let digest = hex::encode(Sha256::digest(
            serde_json::to_vec(&(&result.columns, &result.rows)).expect("result serialises"),
        ));
        let audit = format!(
            "released {} row(s) merged from {} site(s); {} suppressed; {}{}; {}",
            result.rows.len(),
            answered.len(),
            result.privacy.suppressed.len(),
            match &protection.dp {
                Some(dp) => format!("DP, ε = {} per site", dp.epsilon),
                None => "exact".into(),
            },
            if protection.secure_aggregation {
                "; secure aggregation (the hub saw only the sum)"
            } else {
                ""
            },
            crate::evidence::audit_line(&result.privacy.evidence)
        );
        let held = HeldRelease {
            release: Release {
                request_id: id.clone(),
                study_id: study_id.to_string(),
                researcher: who.id.clone(),
                sql_digest: hex::encode(Sha256::digest(sql.as_bytes())),
                result_digest: digest,
                sites: answered,
            },
            grouping: plan.grouping().to_string(),
            dims: plan.dims().to_vec(),
            cohort: checked.cohort,
            cells: checked.cells,
            repeat: checked.repeat,
            result,
            audit,
            role: who.role(),
            action: action.to_string(),
            epsilon: protection.dp.as_ref().map(|dp| dp.epsilon),
        };
        if !checked.held.is_empty() {
            let view = self.hold(who, sql, held, &checked.held).await?;
            return Err(HubError::HeldForReview(Box::new(view)));
        }
        self.release(&held).await?;
        Ok(held.result)
    }

    /// Records `held` as released (the compliance record, its groups for later releases' checks)
    /// and audits it; the caller then hands its result over.
    pub(crate) async fn release(&self, held: &HeldRelease) -> Result<(), HubError> {
        let r = &held.release;
        self.state.record_release(r).await?;
        // A repeat of an earlier table adds nothing for later checks to compare against.
        if !held.repeat {
            self.state
                .record_cells(&ReleasedTable {
                    study: &r.study_id,
                    request_id: &r.request_id,
                    grouping: &held.grouping,
                    dims: &held.dims,
                    cohort: &held.cohort,
                    cells: &held.cells,
                })
                .await?;
        }
        let entry = Entry::new(
            &r.researcher,
            &held.role,
            &held.action,
            Outcome::Allow,
            &held.audit,
        )
        .study(&r.study_id)
        .sites(r.sites.iter().cloned())
        .result_digest(&r.result_digest)
        .request_id(&r.request_id);
        let entry = match held.epsilon {
            Some(e) => entry.epsilon(e),
            None => entry,
        };
        self.record(entry).await?;
        Ok(())
    }

    /// Admits `who`'s `analysis` under `study_id` and picks its sites: hub.rego lets `who`
    /// query the study, the study's terms list the analysis, and every site asked for approved
    /// it (without `only`: the study's approved sites). Refusals are audited.
    pub(crate) async fn admit(
        &self,
        who: &Principal,
        study_id: &str,
        only: Option<&[String]>,
        analysis: &str,
    ) -> Result<(Study, Vec<&SiteClient>), HubError> {
        let study = self.state.study(study_id).await?;
        self.authorize(who, "query", Some(&study), None).await?;
        let deny = |reason: String| async move {
            let action = action_name(analysis);
            let entry = Entry::new(&who.id, who.role(), action, Outcome::Deny, reason.clone())
                .study(study_id);
            self.record(entry).await?;
            Err(HubError::Forbidden(reason))
        };
        if !study.terms.analyses.iter().any(|a| a == analysis) {
            return deny(format!(
                "study {study_id} was not approved for {analysis} analyses (its terms allow: {})",
                study.terms.analyses.join(", ")
            ))
            .await;
        }
        let approved = study.approved_sites();
        let targets = self.targets(only)?;
        if let Some(t) = targets
            .iter()
            .find(|t| !approved.contains(&t.name().to_string()))
            && only.is_some_and(|o| !o.is_empty())
        {
            return deny(format!(
                "study {study_id} is not approved at site {}",
                t.name()
            ))
            .await;
        }
        let targets = targets
            .into_iter()
            .filter(|t| approved.contains(&t.name().to_string()))
            .collect();
        Ok((study, targets))
    }

    /// Sends the partial to every target at once and collects their protected answers.
    async fn fan_out(
        &self,
        targets: &[&SiteClient],
        request_for: &impl Fn(&str) -> SiteRequest,
        plan: &FederatedSql,
    ) -> FanOut {
        let calls = targets.iter().map(|site| {
            let request = request_for(site.name().as_str());
            async move {
                let started = Instant::now();
                let answer = call_site(self.deadline, site.run(&request, &self.key)).await;
                let mut report = None;
                let answer = answer.and_then(|batches| {
                    let conformed = batches
                        .iter()
                        .map(|b| plan.conform(b))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| (SiteStatus::Failed, e.to_string()))?;
                    report = site_report(&batches);
                    Ok(conformed)
                });
                let (status, message, batches) = match answer {
                    Ok(batches) => (SiteStatus::Answered, None, batches),
                    Err((status, message)) => (status, Some(message), vec![]),
                };
                let outcome = SiteOutcome {
                    status,
                    elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
                    message,
                };
                (site.name().to_string(), outcome, batches, report)
            }
        });
        let mut out = FanOut::default();
        for (name, outcome, batches, report) in futures::future::join_all(calls).await {
            if let Some(r) = report {
                out.reports.insert(name.clone(), r);
            }
            out.sites.insert(name, outcome);
            out.partials.extend(batches);
        }
        out
    }

    /// Whether a request asking `secure_aggregation` (or not saying) runs under it in a study
    /// under `terms`. Unsaid: the network's setting for exact studies; in DP studies each site
    /// noises its own partial (discrete Laplace) unless the request asks for distributed noise
    /// — at the small ε studies spend per query, the Gaussian shares' zCDP accounting adds
    /// more noise than a few sites' Laplace does.
    pub(crate) fn secure(&self, secure_aggregation: Option<bool>, terms: &StudyTerms) -> bool {
        secure_aggregation
            .unwrap_or(terms.privacy == PrivacyMode::Exact && self.privacy.secure_aggregation)
    }

    /// The privacy terms of a query under `terms`: the network's rules, and for DP studies
    /// the release the researcher asked for (or the network's default ε).
    pub(crate) fn protection(
        &self,
        terms: &StudyTerms,
        o: &QueryOptions,
    ) -> Result<Protection, HubError> {
        let rules = self.privacy.rules();
        let secure_aggregation = self.secure(o.secure_aggregation, terms);
        if terms.privacy == PrivacyMode::Exact {
            return Ok(Protection {
                rules,
                dp: None,
                secure_aggregation,
                model_step: false,
            });
        }
        let epsilon = o.epsilon.unwrap_or(self.privacy.default_epsilon);
        let cap = terms.epsilon.unwrap_or(f64::INFINITY);
        if !(epsilon.is_finite() && epsilon > 0.0 && epsilon <= cap) {
            return Err(HubError::Query(SqlError::Plan(format!(
                "ε must be positive and at most the study's total of {cap}, not {epsilon}"
            ))));
        }
        Ok(Protection {
            rules,
            dp: Some(DpRelease {
                epsilon,
                delta: self.privacy.delta_per_release,
                max_rows_per_person: o.max_rows_per_person.unwrap_or(1).max(1),
                bounds: o.bounds.clone(),
            }),
            secure_aggregation,
            model_step: false,
        })
    }

    fn targets(&self, only: Option<&[String]>) -> Result<Vec<&SiteClient>, HubError> {
        let Some(only) = only.filter(|o| !o.is_empty()) else {
            return Ok(self.sites.iter().collect());
        };
        let by_name: HashMap<&str, &SiteClient> =
            self.sites.iter().map(|s| (s.name().as_str(), s)).collect();
        only.iter()
            .map(|n| {
                by_name.get(n.as_str()).copied().ok_or_else(|| {
                    HubError::UnknownSite(
                        n.clone(),
                        self.site_names()
                            .iter()
                            .map(|s| s.to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                    )
                })
            })
            .collect()
    }
}

/// The audit trail's action for a step of `analysis` (plain SQL is a `query`).
pub(crate) fn action_name(analysis: &str) -> &str {
    if analysis == "sql" { "query" } else { analysis }
}

/// What a site is told about the request: the study as the hub vouches for it to that site,
/// the researcher, the analysis and the privacy terms.
pub(crate) fn request_context(
    study: &Study,
    site: &str,
    who: &Principal,
    analysis: &str,
    protection: &Protection,
) -> RequestContext {
    let decision = &study.sites[site];
    RequestContext {
        study: StudyGrant {
            id: study.id.clone(),
            title: study.title.clone(),
            terms: study.terms.clone(),
            approval: decision.state,
            approved_by: decision.decided_by.clone(),
        },
        researcher: Researcher {
            id: who.id.clone(),
            roles: who.roles.clone(),
        },
        analysis: analysis.into(),
        privacy: protection.clone(),
    }
}

/// What a researcher may add to a query in a DP study.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
pub struct QueryOptions {
    /// ε to spend at each site (default: the network's `default_epsilon`).
    #[serde(default)]
    pub epsilon: Option<f64>,
    /// Bounds of summed columns, `column` → [low, high].
    #[serde(default)]
    #[schema(schema_with = medfed_core::schema::intervals_by_name)]
    pub bounds: BTreeMap<String, (f64, f64)>,
    /// Rows one person may contribute (default 1).
    #[serde(default)]
    pub max_rows_per_person: Option<u32>,
    /// Sum the sites' partials under secure aggregation (default: the network's setting).
    #[serde(default)]
    pub secure_aggregation: Option<bool>,
}

/// Output column names when the merged result has no batches (e.g. HAVING removed every group).
async fn plan_columns(state: &datafusion::execution::SessionState, sql: &str) -> Vec<String> {
    match state.create_logical_plan(sql).await {
        Ok(p) => p
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect(),
        Err(_) => Vec::new(),
    }
}

//! A federated query: authorise, plan, check against the study's terms, sign, fan out, merge,
//! audit, release.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use medfed_analysis::sql::{FederatedSql, SqlError};
use medfed_audit::{Decision as Outcome, Entry};
use medfed_core::result::{QueryResult, SiteOutcome, SiteStatus};
use medfed_protocol::wire::{RequestContext, Researcher, SiteRequest, StudyGrant};
use medfed_protocol::{SiteCallError, SiteClient};
use sha2::{Digest, Sha256};

use crate::auth::Principal;
use crate::state::Release;
use crate::{CATALOG_RETRY_AFTER, Hub, HubError, json};

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
    ) -> Result<QueryResult, HubError> {
        let study = self.state.study(study_id).await?;
        self.authorize(who, "query", Some(&study), None).await?;
        let deny = |reason: String| async move {
            let entry = Entry::new(&who.id, who.role(), "query", Outcome::Deny, reason.clone())
                .study(study_id);
            self.record(entry).await?;
            Err::<QueryResult, _>(HubError::Forbidden(reason))
        };
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
        let targets: Vec<&SiteClient> = targets
            .into_iter()
            .filter(|t| approved.contains(&t.name().to_string()))
            .collect();
        if self.catalog.read().expect("catalog lock").tables.is_empty() {
            self.refresh_catalog().await;
        }
        let mut state = self.catalog.read().expect("catalog lock").ctx.state();
        let plan = match FederatedSql::plan(&state, sql).await {
            // A table may be new since the catalogue was read (a site added an extract, or was
            // down at start-up): refresh once before calling the query invalid.
            Err(SqlError::Plan(_)) if self.catalog_age() > CATALOG_RETRY_AFTER => {
                self.refresh_catalog().await;
                state = self.catalog.read().expect("catalog lock").ctx.state();
                FederatedSql::plan(&state, sql).await
            }
            other => other,
        };
        let plan = match plan {
            Ok(p) => p,
            Err(e) => {
                let entry = Entry::new(&who.id, who.role(), "query", Outcome::Deny, e.to_string())
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
        let id = format!("q-{}", crate::state::random_id(8));
        tracing::info!(request_id = %id, study = study_id, sites = targets.len(), site_sql = plan.site_sql(), "fan-out");
        let request_for = |site: &str| {
            let decision = &study.sites[site];
            let context = RequestContext {
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
                analysis: "sql".into(),
            };
            SiteRequest::partial_sql(&id, site, context, plan.site_sql())
        };

        let calls = targets.iter().map(|site| {
            let request = request_for(site.name().as_str());
            let plan = &plan;
            async move {
                let started = Instant::now();
                let answer =
                    tokio::time::timeout(self.deadline, site.run(&request, &self.key)).await;
                let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
                let outcome = |status, message: Option<String>| SiteOutcome {
                    status,
                    elapsed_ms,
                    message,
                };
                let (outcome, batches) = match answer {
                    Err(_) => (
                        outcome(
                            SiteStatus::TimedOut,
                            Some(format!("no answer within {} ms", self.deadline.as_millis())),
                        ),
                        vec![],
                    ),
                    Ok(Err(SiteCallError::Refused(m))) => {
                        (outcome(SiteStatus::Refused, Some(m)), vec![])
                    }
                    Ok(Err(e)) => (outcome(SiteStatus::Failed, Some(e.to_string())), vec![]),
                    Ok(Ok(batches)) => match batches
                        .iter()
                        .map(|b| plan.conform(b))
                        .collect::<Result<Vec<_>, _>>()
                    {
                        Ok(b) => (outcome(SiteStatus::Answered, None), b),
                        Err(e) => (outcome(SiteStatus::Failed, Some(e.to_string())), vec![]),
                    },
                };
                (site.name().to_string(), outcome, batches)
            }
        });
        let mut sites = BTreeMap::new();
        let mut partials = Vec::new();
        for (name, outcome, batches) in futures::future::join_all(calls).await {
            if outcome.status != SiteStatus::Answered {
                tracing::warn!(request_id = %id, site = %name, status = %outcome.status, message = ?outcome.message, "site did not answer");
            }
            sites.insert(name, outcome);
            partials.extend(batches);
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
                "query",
                Outcome::Error,
                "no site answered",
            )
            .study(study_id)
            .sites(sites.keys().cloned())
            .request_id(&id);
            self.record(entry).await?;
            return Err(HubError::NoSiteAnswered(sites));
        }
        let merged = plan.merge(partials).await?;
        let (columns, rows) = json::to_rows(&merged);
        let columns = if columns.is_empty() {
            plan_columns(&state, sql).await
        } else {
            columns
        };
        let result = QueryResult {
            columns,
            rows,
            sites,
        };
        // Audited and recorded before it is released.
        let digest = hex::encode(Sha256::digest(
            serde_json::to_vec(&(&result.columns, &result.rows)).expect("result serialises"),
        ));
        self.state
            .record_release(&Release {
                request_id: id.clone(),
                study_id: study_id.to_string(),
                researcher: who.id.clone(),
                sql_digest: hex::encode(Sha256::digest(sql.as_bytes())),
                result_digest: digest.clone(),
                sites: answered.clone(),
            })
            .await?;
        let entry = Entry::new(
            &who.id,
            who.role(),
            "query",
            Outcome::Allow,
            format!(
                "released {} row(s) merged from {} site(s)",
                result.rows.len(),
                answered.len()
            ),
        )
        .study(study_id)
        .sites(answered)
        .result_digest(digest)
        .request_id(&id);
        self.record(entry).await?;
        Ok(result)
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

//! Studies and each site's decision on them; releases made under them.

use std::collections::BTreeMap;

use medfed_audit::db::{Backend, now_us};
use medfed_core::study::{ApprovalState, StudyTerms};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{HubState, StateError, random_id, split_list};

/// What a researcher proposes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewStudy {
    /// Short title.
    #[schema(pattern = r"\S")]
    pub title: String,
    /// Purpose, for the custodians deciding on it.
    #[schema(pattern = r"\S")]
    pub purpose: String,
    /// Sites asked to take part.
    #[schema(min_items = 1)]
    pub sites: Vec<String>,
    /// Other people who may run its analyses (the proposer always may).
    #[serde(default)]
    pub members: Vec<String>,
    /// What it may use.
    pub terms: StudyTerms,
}

/// A site's decision on a study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SiteDecision {
    /// Pending, approved or rejected.
    pub state: ApprovalState,
    /// The custodian who decided.
    pub decided_by: Option<String>,
    /// Their reason.
    pub reason: Option<String>,
    /// When (µs since epoch).
    pub decided_at_us: Option<i64>,
}

/// A study as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Study {
    /// Id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Purpose.
    pub purpose: String,
    /// Who proposed it.
    pub proposer: String,
    /// Other members.
    pub members: Vec<String>,
    /// Each asked-for site's decision.
    pub sites: BTreeMap<String, SiteDecision>,
    /// Its terms.
    pub terms: StudyTerms,
    /// When proposed.
    pub created_at_us: i64,
}

impl Study {
    /// Sites that approved it.
    pub fn approved_sites(&self) -> Vec<String> {
        self.sites
            .iter()
            .filter(|(_, d)| d.state == ApprovalState::Approved)
            .map(|(s, _)| s.clone())
            .collect()
    }
}

/// A result released to a researcher (for differencing checks and the compliance record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Release {
    /// The hub's request id.
    pub request_id: String,
    /// Under which study.
    pub study_id: String,
    /// To whom.
    pub researcher: String,
    /// SHA-256 of the SQL asked.
    pub sql_digest: String,
    /// SHA-256 of the released result.
    pub result_digest: String,
    /// Sites whose partials were merged.
    pub sites: Vec<String>,
}

impl HubState {
    /// Records a proposal; every asked-for site starts `pending`.
    pub async fn propose(
        &self,
        proposer: &str,
        new: &NewStudy,
        network_sites: &[String],
    ) -> Result<Study, StateError> {
        new.terms.validate().map_err(StateError::Invalid)?;
        if new.title.trim().is_empty() || new.purpose.trim().is_empty() {
            return Err(StateError::Invalid(
                "a study needs a title and a purpose".into(),
            ));
        }
        if new.sites.is_empty() {
            return Err(StateError::Invalid(
                "a study must ask at least one site".into(),
            ));
        }
        if let Some(s) = new.sites.iter().find(|s| !network_sites.contains(s)) {
            return Err(StateError::Invalid(format!(
                "unknown site {s} (the network's sites: {})",
                network_sites.join(", ")
            )));
        }
        let id = format!("st-{}", random_id(6));
        let now = now_us();
        let mut tx = self.db.pool.begin().await?;
        sqlx::query(
            "INSERT INTO studies (id, title, purpose, proposer, members, terms, created_at_us) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(&new.title)
        .bind(&new.purpose)
        .bind(proposer)
        .bind(new.members.join(","))
        .bind(serde_json::to_string(&new.terms).expect("terms serialise"))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        for site in &new.sites {
            sqlx::query(
                "INSERT INTO study_sites (study_id, site, state) VALUES ($1, $2, 'pending')",
            )
            .bind(&id)
            .bind(site)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.study(&id).await
    }

    /// The study `id`.
    pub async fn study(&self, id: &str) -> Result<Study, StateError> {
        let row = sqlx::query(
            "SELECT id, title, purpose, proposer, members, terms, created_at_us FROM studies \
             WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| StateError::NotFound(format!("no study {id}")))?;
        let mut study = study_from(&row)?;
        let sites = sqlx::query(
            "SELECT site, state, decided_by, reason, decided_at_us, study_id FROM study_sites \
             WHERE study_id = $1 ORDER BY site",
        )
        .bind(id)
        .fetch_all(&self.db.pool)
        .await?;
        for r in &sites {
            let (site, decision) = site_decision(r)?;
            study.sites.insert(site, decision);
        }
        Ok(study)
    }

    /// Every study, newest first (two queries, however many studies there are).
    pub async fn studies(&self) -> Result<Vec<Study>, StateError> {
        let rows = sqlx::query(
            "SELECT id, title, purpose, proposer, members, terms, created_at_us FROM studies \
             ORDER BY created_at_us DESC, id",
        )
        .fetch_all(&self.db.pool)
        .await?;
        let mut studies = rows.iter().map(study_from).collect::<Result<Vec<_>, _>>()?;
        let index: std::collections::HashMap<String, usize> = studies
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.clone(), i))
            .collect();
        let sites = sqlx::query(
            "SELECT site, state, decided_by, reason, decided_at_us, study_id FROM study_sites \
             ORDER BY study_id, site",
        )
        .fetch_all(&self.db.pool)
        .await?;
        for r in &sites {
            let study: String = r.try_get(5)?;
            if let Some(&i) = index.get(&study) {
                let (site, decision) = site_decision(r)?;
                studies[i].sites.insert(site, decision);
            }
        }
        Ok(studies)
    }

    /// Records `custodian`'s decision for `site`. In PostgreSQL the update runs as the
    /// `medfed_custodian` role scoped to `site`, so row-level security refuses any other site's row.
    pub async fn decide(
        &self,
        study: &str,
        site: &str,
        custodian: &str,
        state: ApprovalState,
        reason: Option<&str>,
    ) -> Result<Study, StateError> {
        let mut tx = self.db.pool.begin().await?;
        if self.db.backend == Backend::Postgres {
            scope_to_site(&mut tx, site).await?;
        }
        let done = sqlx::query(
            "UPDATE study_sites SET state = $1, decided_by = $2, reason = $3, decided_at_us = $4 \
             WHERE study_id = $5 AND site = $6",
        )
        .bind(state.as_str())
        .bind(custodian)
        .bind(reason)
        .bind(now_us())
        .bind(study)
        .bind(site)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StateError::NotFound(format!(
                "study {study} does not ask for site {site}"
            )));
        }
        tx.commit().await?;
        self.study(study).await
    }

    /// Decisions visible to a custodian of `site`: (study id, state). In PostgreSQL this reads
    /// through row-level security rather than a WHERE clause.
    pub async fn site_decisions(&self, site: &str) -> Result<Vec<(String, String)>, StateError> {
        let mut tx = self.db.pool.begin().await?;
        let rows = if self.db.backend == Backend::Postgres {
            scope_to_site(&mut tx, site).await?;
            sqlx::query("SELECT study_id, state, site FROM study_sites ORDER BY study_id")
                .fetch_all(&mut *tx)
                .await?
        } else {
            sqlx::query(
                "SELECT study_id, state, site FROM study_sites WHERE site = $1 ORDER BY study_id",
            )
            .bind(site)
            .fetch_all(&mut *tx)
            .await?
        };
        tx.commit().await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Records a release.
    pub async fn record_release(&self, r: &Release) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO releases (request_id, study_id, researcher, sql_digest, result_digest, \
             sites, at_us) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&r.request_id)
        .bind(&r.study_id)
        .bind(&r.researcher)
        .bind(&r.sql_digest)
        .bind(&r.result_digest)
        .bind(r.sites.join(","))
        .bind(now_us())
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// How many releases a study has had.
    pub async fn release_count(&self, study: &str) -> Result<i64, StateError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM releases WHERE study_id = $1")
                .bind(study)
                .fetch_one(&self.db.pool)
                .await?,
        )
    }
}

/// Switches this transaction to the custodian role, scoped to `site` (PostgreSQL only).
async fn scope_to_site(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    site: &str,
) -> Result<(), StateError> {
    sqlx::query("SET LOCAL ROLE medfed_custodian")
        .execute(&mut **tx)
        .await?;
    sqlx::query("SELECT set_config('medfed.site', $1, true)")
        .bind(site)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// One row of `study_sites` (site, state, decided_by, reason, decided_at_us, study_id).
fn site_decision(r: &sqlx::any::AnyRow) -> Result<(String, SiteDecision), StateError> {
    let state: String = r.try_get(1)?;
    let study: String = r.try_get(5)?;
    let decision = SiteDecision {
        state: ApprovalState::parse(&state)
            .ok_or_else(|| StateError::Invalid(format!("study {study}: unknown state {state}")))?,
        decided_by: r.try_get(2)?,
        reason: r.try_get(3)?,
        decided_at_us: r.try_get(4)?,
    };
    Ok((r.try_get(0)?, decision))
}

fn study_from(row: &sqlx::any::AnyRow) -> Result<Study, StateError> {
    let terms: String = row.try_get(5)?;
    Ok(Study {
        id: row.try_get(0)?,
        title: row.try_get(1)?,
        purpose: row.try_get(2)?,
        proposer: row.try_get(3)?,
        members: split_list(&row.try_get::<String, _>(4)?),
        sites: BTreeMap::new(),
        terms: serde_json::from_str(&terms)
            .map_err(|e| StateError::Invalid(format!("stored study terms: {e}")))?,
        created_at_us: row.try_get(6)?,
    })
}

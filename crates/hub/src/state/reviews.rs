//! Releases held for custodians' review, and each contributing site's decision on them.

use std::collections::BTreeMap;

use medfed_audit::db::now_us;
use medfed_core::result::QueryResult;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{HubState, Release, StateError};

/// Everything needed to release a held result once it is approved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeldRelease {
    /// The compliance record of the release.
    pub release: Release,
    /// What [`HubState::record_cells`] keeps (group keys as text and by name, cohort digest,
    /// released groups).
    pub grouping: String,
    pub dims: Vec<String>,
    pub cohort: String,
    pub cells: Vec<(String, i64)>,
    /// The table repeats an earlier release exactly: its groups are not recorded again.
    #[serde(default)]
    pub repeat: bool,
    /// The result the researcher receives.
    pub result: QueryResult,
    /// The release's audit line, and the researcher's role, action and ε for its entry.
    pub audit: String,
    pub role: String,
    pub action: String,
    pub epsilon: Option<f64>,
}

/// A stored review.
#[derive(Debug, Clone)]
pub struct StoredReview {
    pub id: String,
    pub study_id: String,
    pub researcher: String,
    pub sql: String,
    /// Checks that fired: name → rows flagged.
    pub checks: BTreeMap<String, usize>,
    /// The contributing sites, each of whose custodians must approve.
    pub sites: Vec<String>,
    pub held: HeldRelease,
    /// `awaiting_review`, `approved` or `rejected`.
    pub status: String,
    pub created_at_us: i64,
    /// Site → (decision, by, reason, at).
    pub decisions: Decisions,
}

impl HubState {
    /// Stores a held release under a new review id.
    pub async fn hold_for_review(
        &self,
        study: &str,
        researcher: &str,
        sql: &str,
        checks: &BTreeMap<String, usize>,
        sites: &[String],
        held: &HeldRelease,
    ) -> Result<String, StateError> {
        let id = format!("r-{}", super::random_id(8));
        sqlx::query(
            "INSERT INTO reviews (id, study_id, researcher, sql_text, checks, sites, held, status, \
             created_us) VALUES ($1, $2, $3, $4, $5, $6, $7, 'awaiting_review', $8)",
        )
        .bind(&id)
        .bind(study)
        .bind(researcher)
        .bind(sql)
        .bind(serde_json::to_string(checks).expect("serialises"))
        .bind(serde_json::to_string(sites).expect("serialises"))
        .bind(serde_json::to_string(held).expect("serialises"))
        .bind(now_us())
        .execute(&self.db.pool)
        .await?;
        Ok(id)
    }

    /// Every review, newest first.
    pub async fn reviews(&self) -> Result<Vec<StoredReview>, StateError> {
        // Two queries whatever the number of reviews: the reviews, then every decision.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{REVIEW} ORDER BY created_us DESC"
        )))
        .fetch_all(&self.db.pool)
        .await?;
        let mut decisions: BTreeMap<String, Decisions> = BTreeMap::new();
        for r in sqlx::query(sqlx::AssertSqlSafe(format!(
            "{DECISION} ORDER BY review_id"
        )))
        .fetch_all(&self.db.pool)
        .await?
        {
            let (id, site, decision) = decision_of(&r)?;
            decisions.entry(id).or_default().insert(site, decision);
        }
        rows.iter()
            .map(|row| {
                let id: String = row.try_get(0)?;
                let d = decisions.remove(&id).unwrap_or_default();
                stored(row, d)
            })
            .collect()
    }

    /// One review with its decisions.
    pub async fn review(&self, id: &str) -> Result<StoredReview, StateError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{REVIEW} WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.db.pool)
            .await?
            .ok_or_else(|| StateError::NotFound(format!("review {id}")))?;
        let mut decisions = Decisions::new();
        for r in sqlx::query(sqlx::AssertSqlSafe(format!(
            "{DECISION} WHERE review_id = $1"
        )))
        .bind(id)
        .fetch_all(&self.db.pool)
        .await?
        {
            let (_, site, decision) = decision_of(&r)?;
            decisions.insert(site, decision);
        }
        stored(&row, decisions)
    }

    /// Records `site`'s decision on review `id` (a later decision for the same site replaces
    /// it while the review is open).
    pub async fn decide_review(
        &self,
        id: &str,
        site: &str,
        by: &str,
        approve: bool,
        reason: Option<&str>,
    ) -> Result<(), StateError> {
        let decision = if approve { "approved" } else { "rejected" };
        let mut tx = self.db.pool.begin().await?;
        sqlx::query("DELETE FROM review_decisions WHERE review_id = $1 AND site = $2")
            .bind(id)
            .bind(site)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO review_decisions (review_id, site, decided_by, decision, reason, at_us) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(site)
        .bind(by)
        .bind(decision)
        .bind(reason)
        .bind(now_us())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Closes review `id` as `approved` or `rejected`; false if it was no longer open.
    pub async fn close_review(&self, id: &str, status: &str) -> Result<bool, StateError> {
        let done = sqlx::query(
            "UPDATE reviews SET status = $2 WHERE id = $1 AND status = 'awaiting_review'",
        )
        .bind(id)
        .bind(status)
        .execute(&self.db.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

const REVIEW: &str = "SELECT id, study_id, researcher, sql_text, checks, sites, held, status, \
                      created_us FROM reviews";
const DECISION: &str =
    "SELECT review_id, site, decision, decided_by, reason, at_us FROM review_decisions";

/// One site's decision: (decision, decided by, reason, when).
type Decision = (String, String, Option<String>, i64);
/// Each site's decision.
type Decisions = BTreeMap<String, Decision>;

/// A review as stored, from a [`REVIEW`] row and its decisions.
fn stored(row: &sqlx::any::AnyRow, decisions: Decisions) -> Result<StoredReview, StateError> {
    let id: String = row.try_get(0)?;
    let json = |i: usize| -> Result<String, StateError> { Ok(row.try_get(i)?) };
    let corrupt = |e: serde_json::Error| StateError::NotFound(format!("review {id}: {e}"));
    Ok(StoredReview {
        study_id: row.try_get(1)?,
        researcher: row.try_get(2)?,
        sql: row.try_get(3)?,
        checks: serde_json::from_str(&json(4)?).map_err(corrupt)?,
        sites: serde_json::from_str(&json(5)?).map_err(corrupt)?,
        held: serde_json::from_str(&json(6)?).map_err(corrupt)?,
        status: row.try_get(7)?,
        created_at_us: row.try_get(8)?,
        decisions,
        id,
    })
}

/// (review id, site, its decision) of a [`DECISION`] row.
fn decision_of(r: &sqlx::any::AnyRow) -> Result<(String, String, Decision), StateError> {
    Ok((
        r.try_get(0)?,
        r.try_get(1)?,
        (r.try_get(2)?, r.try_get(3)?, r.try_get(4)?, r.try_get(5)?),
    ))
}

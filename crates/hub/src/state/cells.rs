//! The airlock's record of released groups, for the differencing rule.
//!
//! Without row-level data the hub cannot compare two cohorts member by member, but it can
//! compare their sizes: two releases in one study with the same grouping whose same group
//! differs by 1..k-1 people ("all diabetics", then "all diabetics except those born in 1947")
//! would disclose those few people, so the second is refused. Releases of different sizes by k
//! or more, or of exactly the same size, pass.

use medfed_audit::db::now_us;
use sqlx::Row;

use super::{HubState, StateError};

/// A refused release: which group, and the earlier release it would be differenced against.
#[derive(Debug, Clone, PartialEq)]
pub struct Differencing {
    /// The group's key values.
    pub key: String,
    /// People in the group now.
    pub people: i64,
    /// People in it in the earlier release.
    pub earlier: i64,
    /// The earlier release.
    pub request_id: String,
}

impl HubState {
    /// The first group of `cells` (key, people) that differs by 1..k-1 people from an earlier
    /// release of `study` with the same `grouping`.
    pub async fn differencing(
        &self,
        study: &str,
        grouping: &str,
        cells: &[(String, i64)],
        min_cell_count: u64,
    ) -> Result<Option<Differencing>, StateError> {
        for (key, people) in cells {
            let row = sqlx::query(
                "SELECT people, request_id FROM released_cells WHERE study_id = $1 \
                 AND grouping = $2 AND group_key = $3 AND people <> $4 \
                 AND people > $4 - $5 AND people < $4 + $5 LIMIT 1",
            )
            .bind(study)
            .bind(grouping)
            .bind(key)
            .bind(*people)
            .bind(min_cell_count as i64)
            .fetch_optional(&self.db.pool)
            .await?;
            if let Some(r) = row {
                return Ok(Some(Differencing {
                    key: key.clone(),
                    people: *people,
                    earlier: r.try_get(0)?,
                    request_id: r.try_get(1)?,
                }));
            }
        }
        Ok(None)
    }

    /// Remembers the groups a release showed (sizes already known are not stored twice).
    pub async fn record_cells(
        &self,
        study: &str,
        grouping: &str,
        request_id: &str,
        cells: &[(String, i64)],
    ) -> Result<(), StateError> {
        let mut tx = self.db.pool.begin().await?;
        for (key, people) in cells {
            sqlx::query(
                "INSERT INTO released_cells (study_id, grouping, group_key, people, request_id, \
                 at_us) SELECT $1, $2, $3, $4, $5, $6 WHERE NOT EXISTS (SELECT 1 FROM \
                 released_cells WHERE study_id = $1 AND grouping = $2 AND group_key = $3 \
                 AND people = $4)",
            )
            .bind(study)
            .bind(grouping)
            .bind(key)
            .bind(*people)
            .bind(request_id)
            .bind(now_us())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

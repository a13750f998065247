//! The airlock's record of released groups, for the differencing rule.
//!
//! Without row-level data the hub cannot compare two cohorts member by member, but it can
//! compare their sizes: two releases in one study with the same grouping whose same group
//! differs by 1..k-1 people ("all diabetics", then "all diabetics except those born in 1947")
//! would disclose those few people, so the second is refused. Releases of different sizes by k
//! or more, or of exactly the same size, pass.

use std::collections::HashMap;

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
        if cells.is_empty() {
            return Ok(None);
        }
        // One read of this grouping's history, compared in memory: a query per group would
        // cost a round trip per cell of a large histogram.
        let rows = sqlx::query(
            "SELECT group_key, people, request_id FROM released_cells WHERE study_id = $1 \
             AND grouping = $2",
        )
        .bind(study)
        .bind(grouping)
        .fetch_all(&self.db.pool)
        .await?;
        let mut earlier: HashMap<String, Vec<(i64, String)>> = HashMap::new();
        for r in rows {
            earlier
                .entry(r.try_get(0)?)
                .or_default()
                .push((r.try_get(1)?, r.try_get(2)?));
        }
        let k = min_cell_count as i64;
        for (key, people) in cells {
            let close = earlier.get(key).into_iter().flatten().find(|(n, _)| {
                let d = (n - people).abs();
                d > 0 && d < k
            });
            if let Some((n, request_id)) = close {
                return Ok(Some(Differencing {
                    key: key.clone(),
                    people: *people,
                    earlier: *n,
                    request_id: request_id.clone(),
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

//! The airlock's record of released groups, for the differencing rule and for complementary
//! suppression (each release's table, by cohort, is a margin of later ones: see
//! [`medfed_privacy::complementary`]).
//!
//! Without row-level data the hub cannot compare two cohorts member by member, but it can
//! compare their sizes: two releases in one study with the same grouping whose same group
//! differs by 1..k-1 people ("all diabetics", then "all diabetics except those born in 1947")
//! would disclose those few people, so the second is refused. Releases of different sizes by k
//! or more, or of exactly the same size, pass.

use std::collections::HashMap;

use medfed_audit::db::now_us;
use medfed_privacy::complementary::Earlier;
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

    /// Remembers the groups a release showed, with its cohort and group keys.
    pub async fn record_cells(&self, release: &ReleasedTable<'_>) -> Result<(), StateError> {
        let dims = serde_json::to_string(release.dims).expect("names serialise");
        let at = now_us();
        let mut tx = self.db.pool.begin().await?;
        // Many rows per statement (a ROLLUP or a table by condition records thousands), within
        // both engines' limits on bound parameters (8 per row).
        for chunk in release.cells.chunks(1_000) {
            // `$n` placeholders: the Any driver passes the text through to either engine.
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let p: Vec<String> = (1..=8).map(|j| format!("${}", i * 8 + j)).collect();
                    format!("({})", p.join(", "))
                })
                .collect();
            let sql = format!(
                "INSERT INTO released_cells (study_id, grouping, group_key, people, request_id, \
                 at_us, cohort, dims) VALUES {}",
                rows.join(", ")
            );
            // Built from the fixed text and placeholder numbers only: no value is in it.
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (key, people) in chunk {
                insert = insert
                    .bind(release.study)
                    .bind(release.grouping)
                    .bind(key.as_str())
                    .bind(*people)
                    .bind(release.request_id)
                    .bind(at)
                    .bind(release.cohort)
                    .bind(dims.as_str());
            }
            insert.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The tables released earlier in `study` over `cohort`, one per release (group key text
    /// split into its values).
    pub async fn cohort_releases(
        &self,
        study: &str,
        cohort: &str,
    ) -> Result<Vec<Earlier>, StateError> {
        let rows = sqlx::query(
            "SELECT request_id, dims, group_key, people FROM released_cells WHERE study_id = $1 \
             AND cohort = $2",
        )
        .bind(study)
        .bind(cohort)
        .fetch_all(&self.db.pool)
        .await?;
        let mut tables: HashMap<String, Earlier> = HashMap::new();
        for r in rows {
            let dims: String = r.try_get(1)?;
            let dims: Vec<String> = serde_json::from_str(&dims).unwrap_or_default();
            let key: String = r.try_get(2)?;
            let table = tables.entry(r.try_get(0)?).or_insert_with(|| Earlier {
                dims: dims.clone(),
                cells: Vec::new(),
            });
            table
                .cells
                .push((split_key(&key, dims.len()), r.try_get(3)?));
        }
        Ok(tables.into_values().collect())
    }
}

/// One released table, as [`HubState::record_cells`] keeps it.
pub struct ReleasedTable<'a> {
    pub study: &'a str,
    pub request_id: &'a str,
    /// The group keys as one text (for differencing).
    pub grouping: &'a str,
    /// The group keys, one name each.
    pub dims: &'a [String],
    /// Digest of the rows aggregated.
    pub cohort: &'a str,
    /// Released groups: key text and people.
    pub cells: &'a [(String, i64)],
}

/// A group's key text (values joined by U+001F) as its `dims` values.
pub fn split_key(key: &str, dims: usize) -> Vec<String> {
    if dims == 0 {
        return Vec::new();
    }
    key.split('\u{1f}').map(String::from).collect()
}

//! GROUPING SETS, ROLLUP and CUBE at the hub: one release per grouping, one result.
//!
//! [`medfed_analysis::sql::grouping_sets`] rewrites the query into its groupings; each runs as
//! an ordinary federated query (checked, summed, protected, audited and recorded as a release
//! of the study), coarsest first, so each finer table is protected by complementary suppression
//! against the totals and subtotals released with it. Their rows are then put together in the
//! order SQL gives them, or sorted by the query's ORDER BY.
//!
//! Trust boundary: combines released results only; it adds no data of its own. Under DP the
//! query's ε is split evenly between its groupings, so the whole result spends what was asked.

use std::cmp::{Ordering, Reverse};
use std::collections::BTreeMap;

use medfed_analysis::sql::grouping_sets::Groupings;
use medfed_core::result::{CheckRun, QueryResult, SuppressedRow};
use serde_json::Value;

use crate::auth::Principal;
use crate::query::QueryOptions;
use crate::{Hub, HubError};

impl Hub {
    /// Runs each grouping of `groupings` for `who` and puts their results together.
    pub(crate) async fn query_groupings(
        &self,
        who: &Principal,
        study_id: &str,
        groupings: Groupings,
        only: Option<&[String]>,
        options: &QueryOptions,
    ) -> Result<QueryResult, HubError> {
        let n = groupings.groupings.len();
        let options = QueryOptions {
            epsilon: Some(options.epsilon.unwrap_or(self.privacy.default_epsilon) / n as f64),
            ..options.clone()
        };
        // Coarsest first: each finer table is checked against the margins already released.
        let mut run: Vec<usize> = (0..n).collect();
        run.sort_by_key(|&i| groupings.groupings[i].keys);
        let mut results: Vec<Option<QueryResult>> = vec![None; n];
        // A grouping the airlock refuses (every group too small, differencing, …) is left out
        // and named; the others stand, each judged and recorded on its own.
        let mut refused = Vec::new();
        for i in run {
            let g = &groupings.groupings[i];
            match self
                .query_as(who, study_id, &g.sql, only, &options, "sql")
                .await
            {
                Ok(r) => results[i] = Some(r),
                Err(HubError::Forbidden(why)) => refused.push((i, why)),
                Err(e) => return Err(e),
            }
        }
        // The released groupings in SQL's order, with their key counts.
        let released: Vec<(usize, QueryResult)> = results
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| r.map(|r| (groupings.groupings[i].keys, r)))
            .collect();
        let Some(finest) = (0..released.len()).max_by_key(|&j| (released[j].0, Reverse(j))) else {
            let (_, why) = refused.swap_remove(0);
            return Err(HubError::Forbidden(why));
        };
        let results = released.into_iter().map(|(_, r)| r).collect();
        let mut result = combine(results, finest, &groupings.order);
        refused.sort();
        for (i, why) in refused {
            let by = &groupings.groupings[i].by;
            let table = if by.is_empty() {
                "the total".to_string()
            } else {
                format!("the table by {by}")
            };
            result
                .privacy
                .notes
                .push(format!("{table} is not in this result: {why}"));
        }
        Ok(result)
    }
}

/// The results of the groupings (in SQL's order) as one table; the result of the finest
/// grouping (`finest`, the last to run) supplies what is common to all.
pub(crate) fn combine(
    results: Vec<QueryResult>,
    finest: usize,
    order: &[(usize, bool, bool)],
) -> QueryResult {
    let n = results.len();
    let mut base = results[finest].clone();
    // SQL names a UNION's columns after its first branch.
    base.columns = results[0].columns.clone();
    // Each row with its evidence and, if withheld, why.
    let mut rows: Vec<(Vec<Value>, Option<String>, Option<String>)> = Vec::new();
    let mut withheld: BTreeMap<String, usize> = BTreeMap::new();
    let mut checks: Vec<CheckRun> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let (mut epsilon, mut delta) = (0.0, 0.0);
    for r in &results {
        let why: BTreeMap<usize, &String> = r
            .privacy
            .suppressed
            .iter()
            .map(|s| (s.row, &s.reason))
            .collect();
        for (i, row) in r.rows.iter().enumerate() {
            rows.push((
                row.clone(),
                r.privacy.evidence.rows.get(i).cloned(),
                why.get(&i).map(|s| s.to_string()),
            ));
        }
        for (reason, count) in &r.privacy.withheld_groups {
            *withheld.entry(reason.clone()).or_default() += count;
        }
        for c in &r.privacy.evidence.checks {
            match checks.iter_mut().find(|x| x.check == c.check) {
                Some(x) => {
                    x.withheld += c.withheld;
                    if x.outcome == "pass" {
                        x.outcome = c.outcome.clone();
                    }
                }
                None => checks.push(c.clone()),
            }
        }
        for note in &r.privacy.notes {
            if !notes.contains(note) {
                notes.push(note.clone());
            }
        }
        epsilon += r.privacy.epsilon;
        delta += r.privacy.delta;
    }
    if !order.is_empty() {
        rows.sort_by(|a, b| compare(&a.0, &b.0, order));
    }
    for (name, outcome) in base.sites.iter_mut() {
        outcome.elapsed_ms = results
            .iter()
            .filter_map(|r| r.sites.get(name))
            .map(|o| o.elapsed_ms)
            .sum();
    }
    for (name, site) in base.privacy.sites.iter_mut() {
        let all = results.iter().filter_map(|r| r.privacy.sites.get(name));
        let (suppressed, spent) = all.fold((0, 0.0), |(s, e), p| {
            (s + p.suppressed, e + p.epsilon_spent)
        });
        site.suppressed = suppressed;
        site.epsilon_spent = spent;
    }
    notes.push(format!(
        "GROUPING SETS/ROLLUP/CUBE/UNION ALL: released as {n} tables, one per grouping, coarsest first; \
         each finer table was protected against the totals and subtotals beside it \
         (complementary suppression){}",
        if base.privacy.mechanism.is_some() {
            "; the query's ε was split evenly between them"
        } else {
            ""
        }
    ));
    let p = &mut base.privacy;
    p.epsilon = epsilon;
    p.delta = delta;
    p.withheld_groups = withheld;
    p.notes = notes;
    p.evidence.checks = checks;
    p.evidence.rows = rows.iter().filter_map(|(_, e, _)| e.clone()).collect();
    p.suppressed = rows
        .iter()
        .enumerate()
        .filter_map(|(row, (_, _, why))| {
            why.as_ref().map(|reason| SuppressedRow {
                row,
                reason: reason.clone(),
            })
        })
        .collect();
    base.rows = rows.into_iter().map(|(r, _, _)| r).collect();
    base
}

/// Rows compared by `order` (output column, ascending, nulls first), as PostgreSQL sorts them.
fn compare(a: &[Value], b: &[Value], order: &[(usize, bool, bool)]) -> Ordering {
    for &(i, asc, nulls_first) in order {
        let (x, y) = (
            a.get(i).unwrap_or(&Value::Null),
            b.get(i).unwrap_or(&Value::Null),
        );
        let o = match (x.is_null(), y.is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) if nulls_first => Ordering::Less,
            (true, false) => Ordering::Greater,
            (false, true) if nulls_first => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => {
                let o = match (x.as_f64(), y.as_f64()) {
                    (Some(p), Some(q)) => p.total_cmp(&q),
                    _ => x.to_string().cmp(&y.to_string()),
                };
                if asc { o } else { o.reverse() }
            }
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nulls_sort_last_ascending_and_first_descending() {
        let rows = [json!([1, null]), json!([null, 3]), json!([2, 1])];
        let sorted = |order| {
            let mut all: Vec<&Value> = rows.iter().collect();
            all.sort_by(|a, b| compare(a.as_array().unwrap(), b.as_array().unwrap(), order));
            all
        };
        assert_eq!(sorted(&[(0, true, false)]), [&rows[0], &rows[2], &rows[1]]);
        let asc = sorted(&[(0, false, true)]);
        assert_eq!(asc, [&rows[1], &rows[2], &rows[0]]);
    }
}

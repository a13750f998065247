//! Complementary suppression at the hub: before a table is released, the groups that would let
//! a hidden group be worked out from totals or margins the study released earlier are withheld
//! too ([`medfed_privacy::complementary`] chooses them).
//!
//! Trust boundary: runs on the merged result and the hub's own record of earlier releases
//! (people per released group, by cohort); it reads no site data and releases nothing itself.
//! Under secure aggregation the hub never learns which groups were withheld, and reasons about
//! them as the researcher would, from the gaps in the table.

use std::collections::BTreeSet;

use medfed_analysis::sql::{FederatedSql, Merged};
use medfed_privacy::complementary::{self, Earlier, Table, Unprotectable};
use sha2::{Digest, Sha256};

use crate::state::split_key;

/// Whether `cells` (key text, people) grouped by `dims` is exactly one of the `earlier` tables:
/// a repeat adds nothing to the study's record.
pub(crate) fn is_repeat(dims: &[String], cells: &[(String, i64)], earlier: &[Earlier]) -> bool {
    let mut mine: Vec<(Vec<String>, i64)> = cells
        .iter()
        .map(|(k, n)| (split_key(k, dims.len()), *n))
        .collect();
    mine.sort();
    earlier.iter().any(|e| {
        e.dims == dims && {
            let mut theirs = e.cells.clone();
            theirs.sort();
            theirs == mine
        }
    })
}

/// The released rows of `merged` that complementary suppression chooses to withhold against
/// `earlier` releases of the study over the same cohort, `k` the minimum cell count and `gaps`
/// true when withheld groups are absent from the table (secure aggregation); or why the table
/// cannot be released at all.
pub(crate) fn complementary(
    plan: &FederatedSql,
    merged: &Merged,
    earlier: &[Earlier],
    k: u64,
    gaps: bool,
) -> Result<BTreeSet<usize>, Unprotectable> {
    if earlier.is_empty() {
        return Ok(BTreeSet::new());
    }
    let dims = plan.dims().to_vec();
    let cells = merged
        .cells
        .iter()
        .map(|c| {
            let people = if c.status == 0 { c.contributors } else { None };
            (split_key(&c.key, dims.len()), people)
        })
        .collect();
    let table = Table { dims, cells, gaps };
    complementary::protect(&table, earlier, k as i64).map(|rows| rows.into_iter().collect())
}

/// The digest under which a plan's cohort is recorded.
pub(crate) fn cohort_digest(plan: &FederatedSql) -> String {
    hex::encode(Sha256::digest(plan.cohort().as_bytes()))
}

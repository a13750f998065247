//! The hub's checks on a merged table before it is released: class disclosure, complementary
//! suppression, differencing. k and dominance were judged before (at the sites, or on the
//! network's sums); these need the whole table or the study's earlier releases.
//!
//! A check the rules mark for review ([`medfed_privacy::Review`]) that fires does not withhold or
//! refuse: the release is held for the custodians of every contributing site
//! ([`crate::review`]). Runs at the hub on merged, already protected aggregates; reads the
//! hub's record of earlier releases; sends nothing anywhere.

use std::collections::BTreeMap;

use medfed_analysis::sql::{FederatedSql, Merged};
use medfed_privacy::{DisclosureRules, Protection, Suppression};

use crate::{Hub, HubError};

/// What the checks decided, short of refusing.
#[derive(Debug, Default)]
pub(crate) struct Checked {
    /// Checks that fired but are marked for review: name → rows they flagged (1 for
    /// differencing, which judges the whole release).
    pub held: BTreeMap<&'static str, usize>,
    /// The released groups (key text, people), as the release will record them.
    pub cells: Vec<(String, i64)>,
    /// What the researcher should know about what the checks did.
    pub notes: Vec<String>,
    /// The released table repeats an earlier release of the study exactly (nothing to record).
    pub repeat: bool,
    /// Digest of the rows the query aggregates, under which its release is recorded.
    pub cohort: String,
}

impl Hub {
    /// Runs the checks on `merged` for a release of `study`: withholds what they withhold
    /// (counted in `withheld`), or holds what the rules send to review. `Err` inside: the
    /// refusal, in words that state no small count.
    pub(crate) async fn airlock(
        &self,
        study: &str,
        plan: &FederatedSql,
        merged: &mut Merged,
        applied: &DisclosureRules,
        protection: &Protection,
        withheld: &mut BTreeMap<Suppression, usize>,
    ) -> Result<Result<Checked, String>, HubError> {
        let mut out = Checked::default();
        let review = applied.review;
        // Class disclosure: a two-way table's lone non-empty cell of a row or column.
        if applied.class_disclosure {
            let rows = medfed_analysis::sql::class::class_disclosures(merged, plan.key_count());
            if !rows.is_empty() && review.class_disclosure {
                out.held.insert("class_disclosure", rows.len());
            } else if !rows.is_empty() {
                let n = merged.withhold(&rows)?;
                *withheld.entry(Suppression::ClassDisclosure).or_default() += n;
            }
        }
        let exact = protection.dp.is_none();
        out.cohort = crate::margins::cohort_digest(plan);
        let earlier = self.state.cohort_releases(study, &out.cohort).await?;
        // Complementary suppression against the margins this study released.
        if exact {
            let k = applied.min_cell_count;
            let gaps = protection.secure_aggregation;
            match crate::margins::complementary(plan, merged, &earlier, k, gaps) {
                Ok(rows) if rows.is_empty() => {}
                Ok(rows) if review.complementary => {
                    out.held.insert("complementary", rows.len());
                }
                Ok(rows) => {
                    let n = merged.withhold(&rows)?;
                    *withheld.entry(Suppression::Complementary).or_default() += n;
                    out.notes.push(format!(
                        "{n} group(s) withheld so that no group hidden here, or in an earlier \
                         release of this study over the same rows, can be worked out from the \
                         totals released (complementary suppression); asking for totals before \
                         finer tables keeps more"
                    ));
                }
                Err(e) => return Ok(Err(e.to_string())),
            }
        }
        out.cells = merged
            .cells
            .iter()
            .filter(|c| c.status == 0)
            .filter_map(|c| c.contributors.map(|n| (c.key.clone(), n)))
            .collect();
        out.repeat = crate::margins::is_repeat(plan.dims(), &out.cells, &earlier);
        // Differencing against earlier releases of this study (exact studies; in DP studies
        // every release pays from the sites' budgets instead).
        let k = protection.rules.min_cell_count;
        if exact
            && let Some(d) = self
                .state
                .differencing(study, plan.grouping(), &out.cells, k)
                .await?
        {
            if review.differencing {
                out.held.insert("differencing", 1);
            } else {
                // The difference itself is a small count: never stated.
                return Ok(Err(format!(
                    "differencing: group [{}] would differ by fewer than k = {k} people from \
                     release {} of study {study}",
                    d.key.replace('\u{1f}', ", "),
                    d.request_id
                )));
            }
        }
        Ok(Ok(out))
    }
}

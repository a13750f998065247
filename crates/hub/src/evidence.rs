//! The airlock's evidence for one release: every check that ran, with its setting and outcome,
//! and each row's outcome — what an output checker reads (ACRO records the same per output).
//!
//! Built at the hub from what the release already decided (rules applied, the status of each
//! merged row, groups withheld by reason); it holds no values, and it goes with the result and
//! into the release's audit entry.

use std::collections::BTreeMap;

use medfed_analysis::sql::MergedCell;
use medfed_core::result::{CheckRun, Evidence};
use medfed_privacy::{DisclosureRules, Protection, Suppression};

/// What one release decided, for its evidence.
pub(crate) struct Decided<'a> {
    /// The rules as applied (the strictest of the network's and the answering sites').
    pub rules: &'a DisclosureRules,
    pub protection: &'a Protection,
    /// The released rows' cells, in row order.
    pub cells: &'a [MergedCell],
    /// Groups withheld without a row, by reason.
    pub withheld: &'a BTreeMap<Suppression, usize>,
    /// GROUP BY keys (class disclosure judges two-way tables).
    pub keys: usize,
    /// Checks that fired but hold the release for review: name → rows flagged.
    pub held: &'a BTreeMap<&'static str, usize>,
}

/// The evidence of `d`.
pub(crate) fn evidence(d: &Decided<'_>) -> Evidence {
    let blank = |why: Suppression| d.cells.iter().filter(|c| c.status == why.code()).count();
    let count = |why: Suppression| d.withheld.get(&why).copied().unwrap_or(0) + blank(why);
    let exact = d.protection.dp.is_none();
    let mut checks = Vec::new();
    let mut check = |why: Suppression, setting: String, judged_on: &str| {
        let (withheld, outcome) = match (d.held.get(why.check()), count(why)) {
            (Some(&n), _) => (n, "review"),
            (None, 0) => (0, "pass"),
            (None, n) => (n, "withheld"),
        };
        checks.push(CheckRun {
            check: why.check().into(),
            setting,
            judged_on: judged_on.into(),
            outcome: outcome.into(),
            withheld,
        });
    };
    let secure = d.protection.secure_aggregation;
    if exact {
        check(
            Suppression::SmallCell,
            format!("k = {}", d.rules.min_cell_count),
            if secure {
                "each group's network total (secure aggregation)"
            } else {
                "each site's groups"
            },
        );
        let dom = &d.rules.dominance;
        let mut setting = format!("n = {}, share = {:.0}%", dom.n, dom.share * 100.0);
        if dom.p_percent > 0.0 {
            setting.push_str(&format!(", p = {}%", dom.p_percent));
        }
        check(
            Suppression::Dominance,
            setting,
            if secure {
                "sums and means: the network's largest contributions"
            } else {
                "sums and means: each site's largest contributions"
            },
        );
        if d.rules.class_disclosure && d.keys == 2 {
            check(
                Suppression::ClassDisclosure,
                "on".into(),
                "each row and column of the two-way table",
            );
        }
        if d.rules.class_disclosure {
            check(
                Suppression::SharedValue,
                "on".into(),
                if secure {
                    "sums and means: whether the network's values behind each are all one value"
                } else {
                    "sums and means: whether each site's values behind each are all one value"
                },
            );
        }
        check(
            Suppression::Complementary,
            "hypercube".into(),
            "the table with the study's earlier releases of the same cohort",
        );
    }
    let mut more = |check: &str, setting: String, judged_on: &str, outcome: &str| {
        checks.push(CheckRun {
            check: check.into(),
            setting,
            judged_on: judged_on.into(),
            outcome: outcome.into(),
            withheld: 0,
        })
    };
    match &d.protection.dp {
        None => more(
            "differencing",
            format!(
                "groups differing by 1..{}",
                d.rules.min_cell_count.max(1) - 1
            ),
            "each group against the study's earlier releases with the same keys",
            if d.held.contains_key("differencing") {
                "review"
            } else {
                "pass"
            },
        ),
        Some(dp) => more(
            "differential_privacy",
            format!("ε = {}, δ = {}", dp.epsilon, dp.delta),
            if secure {
                "the network's sum (shares of one noise)"
            } else {
                "each site's partial"
            },
            "applied",
        ),
    }
    if let Some(r) = d.rules.rounding.describe() {
        more("rounding", r, "released counts", "applied");
    }
    let rows = d
        .cells
        .iter()
        .map(|c| match Suppression::from_code(c.status) {
            None => "released".to_string(),
            Some(why) => why.check().to_string(),
        })
        .collect();
    Evidence { checks, rows }
}

/// The evidence in one line for the audit trail: each check's outcome, then the rows' outcomes
/// as runs (`0-38 released, 39 min_cell_count`).
pub(crate) fn audit_line(e: &Evidence) -> String {
    let checks: Vec<String> = e
        .checks
        .iter()
        .map(|c| match c.withheld {
            0 => format!("{} ({}): {}", c.check, c.setting, c.outcome),
            n => format!("{} ({}): {} {n}", c.check, c.setting, c.outcome),
        })
        .collect();
    let mut runs: Vec<String> = Vec::new();
    let mut start = 0;
    for i in 1..=e.rows.len() {
        if i == e.rows.len() || e.rows[i] != e.rows[start] {
            runs.push(match i - start {
                1 => format!("{start} {}", e.rows[start]),
                _ => format!("{start}-{} {}", i - 1, e.rows[start]),
            });
            start = i;
        }
    }
    format!("checks: {}; rows: {}", checks.join(", "), runs.join(", "))
}

//! What a site does to a table of cells before it leaves: suppress small and dominated cells
//! (exact studies), or bound, noise and threshold them (DP studies).
//!
//! Any analysis whose site step yields "one row per group: keys, additive statistics, how many
//! people contributed" gets the same treatment by describing its columns with [`ColumnRole`]s.
//! The output keeps the keys and statistics and appends two columns the hub merges:
//! [`CONTRIBUTORS`] (people per group, null when suppressed) and [`CELL_STATUS`]
//! (0 released, else a [`Suppression`] code). Dominance inputs never leave the site.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, UInt8Array};
use arrow::compute::{cast, filter_record_batch, nullif};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use serde::{Deserialize, Serialize};

use crate::dp::{self, DpError};
use crate::ledger::Balance;
use crate::rules::{DisclosureRules, Suppression};

/// Column appended to every protected partial: people (or rows, where a table has no person
/// identifier) behind each group.
pub const CONTRIBUTORS: &str = "__n";
/// Column appended to every protected partial: 0 when released, else a [`Suppression`] code.
pub const CELL_STATUS: &str = "__cell";
/// Arrow schema metadata key under which a site attaches its [`PartialReport`] (JSON).
pub const REPORT_METADATA_KEY: &str = "medfed.privacy";

/// The privacy terms a hub sends with a request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Protection {
    /// The network's disclosure rules (a site applies the stricter of these and its own).
    pub rules: DisclosureRules,
    /// Present for studies under differential privacy.
    pub dp: Option<DpRelease>,
}

/// One differentially private release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DpRelease {
    /// ε this release spends at each site.
    pub epsilon: f64,
    /// δ this release spends at each site when it has groups (partition selection), else 0.
    pub delta: f64,
    /// Rows a person may contribute (contribution bounding); the sensitivity multiplier.
    pub max_rows_per_person: u32,
    /// Declared bounds of summed columns (`column` or `table.column` → [low, high]).
    pub bounds: BTreeMap<String, (f64, f64)>,
}

impl Default for DpRelease {
    fn default() -> Self {
        Self {
            epsilon: 0.1,
            delta: 1e-7,
            max_rows_per_person: 1,
            bounds: BTreeMap::new(),
        }
    }
}

/// What a column of a site's cell table holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ColumnRole {
    /// A group key: released as is.
    Key,
    /// A count: each contributing row adds 1.
    Count,
    /// A sum of values clamped to ±`bound` (`None` in exact mode, where no bound is needed).
    Sum {
        /// Largest absolute value one row adds (DP sensitivity per row).
        bound: Option<f64>,
    },
    /// A statistic released only without noise (e.g. a within-site variance).
    ExactOnly,
    /// People (or rows) behind the group.
    Contributors,
    /// Σ|x| of the sum at this position of the table (dominance input, never released).
    DominanceTotal(usize),
    /// Sum of the n largest |x| of the sum at this position (dominance input, never released).
    DominanceTop(usize),
}

/// What a site did to its partial, attached to it for the hub to report.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PartialReport {
    /// The rules applied (the stricter of the network's and the site's).
    pub rules: DisclosureRules,
    /// Groups suppressed at the site (exact mode), by reason code.
    pub suppressed: BTreeMap<String, usize>,
    /// ε spent by this release (0 in exact mode).
    pub epsilon: f64,
    /// δ spent by this release.
    pub delta: f64,
    /// Laplace scale added to each released statistic column, by column name.
    pub scales: BTreeMap<String, f64>,
    /// Minimum noisy group size for a group to be released at all (DP with groups).
    pub threshold: Option<f64>,
    /// The study's budget at this site after this release.
    pub budget: Option<Balance>,
}

/// Why a table could not be protected (so it must not leave).
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// The statistic cannot be released under differential privacy as asked.
    #[error("{0}")]
    Unsupported(String),
    /// The noise machinery failed.
    #[error(transparent)]
    Dp(#[from] DpError),
    /// Arrow could not reshape the table.
    #[error("protecting a partial: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

/// Applies `protection` (with `site_rules` folded in) to a site's cell table.
pub fn protect(
    batch: &RecordBatch,
    roles: &[ColumnRole],
    protection: &Protection,
    site_rules: &DisclosureRules,
) -> Result<(RecordBatch, PartialReport), ReleaseError> {
    let rules = protection.rules.stricter(site_rules);
    let n_col = roles
        .iter()
        .position(|r| *r == ColumnRole::Contributors)
        .ok_or_else(|| ReleaseError::Unsupported("a partial without a contributor count".into()))?;
    let contributors = cast(batch.column(n_col), &DataType::Int64)?;
    let mut report = PartialReport {
        rules,
        ..Default::default()
    };
    let released: Vec<usize> = roles
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            matches!(
                r,
                ColumnRole::Count | ColumnRole::Sum { .. } | ColumnRole::ExactOnly
            )
        })
        .map(|(i, _)| i)
        .collect();
    let keys: Vec<usize> = (0..roles.len())
        .filter(|&i| roles[i] == ColumnRole::Key)
        .collect();
    let mut columns: Vec<(usize, ArrayRef)> = released
        .iter()
        .map(|&i| (i, batch.column(i).clone()))
        .collect();
    let (n, status, keep) = match &protection.dp {
        None => {
            let status = exact_status(batch, roles, &contributors, &rules, &mut report);
            (
                contributors.as_primitive::<Int64Type>().clone(),
                status,
                None,
            )
        }
        Some(release) => {
            let (n, keep) = noise(
                roles,
                &mut columns,
                &contributors,
                release,
                &rules,
                !keys.is_empty(),
                batch.schema().as_ref(),
                &mut report,
            )?;
            let status: UInt8Array = n
                .iter()
                .map(|v| {
                    Some(if rules.too_small(v.unwrap_or(0)) {
                        1
                    } else {
                        0
                    })
                })
                .collect();
            (n, status, keep)
        }
    };
    // Null every statistic (and the contributor count) of a suppressed group.
    let suppressed = arrow::compute::kernels::cmp::neq(&status, &UInt8Array::new_scalar(0))?;
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    let schema = batch.schema();
    for &i in &keys {
        fields.push(schema.field(i).clone());
        arrays.push(batch.column(i).clone());
    }
    for (i, array) in columns {
        fields.push(Field::new(
            schema.field(i).name(),
            array.data_type().clone(),
            true,
        ));
        arrays.push(nullif(&array, &suppressed)?);
    }
    fields.push(Field::new(CONTRIBUTORS, DataType::Int64, true));
    arrays.push(nullif(&n, &suppressed)?);
    fields.push(Field::new(CELL_STATUS, DataType::UInt8, false));
    arrays.push(Arc::new(status));
    let out = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
    let out = match keep {
        Some(mask) => filter_record_batch(&out, &mask)?,
        None => out,
    };
    Ok((out, report))
}

/// Exact mode: per group, small-cell and dominance checks.
fn exact_status(
    batch: &RecordBatch,
    roles: &[ColumnRole],
    contributors: &ArrayRef,
    rules: &DisclosureRules,
    report: &mut PartialReport,
) -> UInt8Array {
    let n = contributors.as_primitive::<Int64Type>();
    let float = |i: usize| {
        cast(batch.column(i), &DataType::Float64)
            .map(|a| a.as_primitive::<Float64Type>().clone())
            .ok()
    };
    let dominance: Vec<(Float64Array, Float64Array)> = roles
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match r {
            ColumnRole::DominanceTotal(of) => {
                let top = roles
                    .iter()
                    .position(|r| *r == ColumnRole::DominanceTop(*of))?;
                Some((float(i)?, float(top)?))
            }
            _ => None,
        })
        .collect();
    (0..batch.num_rows())
        .map(|row| {
            let code = if rules.too_small(n.value(row)) {
                Suppression::SmallCell.code()
            } else if dominance.iter().any(|(total, top)| {
                !total.is_null(row)
                    && rules
                        .dominance
                        .dominated(top.value(row).abs(), total.value(row))
            }) {
                Suppression::Dominance.code()
            } else {
                0
            };
            if let Some(s) = Suppression::from_code(code) {
                *report.suppressed.entry(format!("{s:?}")).or_default() += 1;
            }
            Some(code)
        })
        .collect()
}

/// DP mode: noise every statistic and the contributor count with ε split evenly among them;
/// with groups, keep only those whose noisy count passes the partition threshold.
#[allow(clippy::too_many_arguments)]
fn noise(
    roles: &[ColumnRole],
    columns: &mut [(usize, ArrayRef)],
    contributors: &ArrayRef,
    release: &DpRelease,
    rules: &DisclosureRules,
    grouped: bool,
    schema: &Schema,
    report: &mut PartialReport,
) -> Result<(Int64Array, Option<arrow::array::BooleanArray>), ReleaseError> {
    if !(release.epsilon.is_finite() && release.epsilon > 0.0) {
        return Err(ReleaseError::Unsupported(format!(
            "ε must be positive, not {}",
            release.epsilon
        )));
    }
    let rows = f64::from(release.max_rows_per_person.max(1));
    let shares = (columns.len() + 1) as f64;
    let eps = release.epsilon / shares;
    for (i, array) in columns.iter_mut() {
        let sensitivity = match roles[*i] {
            ColumnRole::Count => rows,
            ColumnRole::Sum { bound: Some(b) } => rows * b,
            _ => {
                return Err(ReleaseError::Unsupported(format!(
                    "{} cannot be released under differential privacy (declare bounds for sums; \
                     variances are not supported yet)",
                    schema.field(*i).name()
                )));
            }
        };
        let scale = dp::laplace_scale(sensitivity.max(f64::MIN_POSITIVE), eps);
        *array = noise_array(array, scale)?;
        report.scales.insert(schema.field(*i).name().clone(), scale);
    }
    let n_scale = dp::laplace_scale(rows, eps);
    let n = noise_array(contributors, n_scale)?;
    let n = n.as_primitive::<Int64Type>().clone();
    report.scales.insert(CONTRIBUTORS.into(), n_scale);
    report.epsilon = release.epsilon;
    let keep = if grouped {
        let tau = dp::partition_threshold(n_scale, release.max_rows_per_person, release.delta)
            .max(rules.min_cell_count as f64);
        report.threshold = Some(tau);
        report.delta = release.delta;
        Some(
            n.iter()
                .map(|v| Some(v.unwrap_or(0) as f64 >= tau))
                .collect(),
        )
    } else {
        None
    };
    Ok((n, keep))
}

/// Noise for one column: integers stay integers (discrete Laplace), the rest become f64.
fn noise_array(array: &ArrayRef, scale: f64) -> Result<ArrayRef, ReleaseError> {
    let nulls = array.logical_nulls();
    let out: ArrayRef = if array.data_type().is_integer() {
        let a = cast(array, &DataType::Int64)?;
        let values: Vec<i64> = a
            .as_primitive::<Int64Type>()
            .iter()
            .map(|v| v.unwrap_or(0))
            .collect();
        Arc::new(Int64Array::new(
            dp::noise_i64(&values, scale)?.into(),
            nulls,
        ))
    } else {
        let a = cast(array, &DataType::Float64)?;
        let values: Vec<f64> = a
            .as_primitive::<Float64Type>()
            .iter()
            .map(|v| v.filter(|x| x.is_finite()).unwrap_or(0.0))
            .collect();
        Arc::new(Float64Array::new(
            dp::noise_f64(&values, scale)?.into(),
            nulls,
        ))
    };
    Ok(out)
}

#[cfg(test)]
mod tests;

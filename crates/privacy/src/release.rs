//! What a site does to a table of cells before it leaves: suppress small and dominated cells
//! (exact studies), or bound, noise and threshold them (DP studies).
//!
//! Any analysis whose site step yields "one row per group: keys, additive statistics, how many
//! people contributed" gets the same treatment by describing its columns with [`ColumnRole`]s.
//! The output keeps the keys and statistics and appends two columns the hub merges:
//! [`CONTRIBUTORS`] (people per group, null when suppressed) and [`CELL_STATUS`]
//! (0 released, else a [`crate::Suppression`] code). The inputs of the checks on sums (dominance,
//! shared value) never leave the site in the clear: under secure aggregation they travel masked
//! ([`hidden_fields`]), so the hub judges them on the network's sums, never on one site's.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, UInt8Array};
use arrow::compute::{cast, filter_record_batch, nullif};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use serde::{Deserialize, Serialize};

use crate::dp::{self, DpError};
use crate::ledger::Balance;
use crate::rules::DisclosureRules;

/// Column appended to every protected partial: people (or rows, where a table has no person
/// identifier) behind each group.
pub const CONTRIBUTORS: &str = "__n";
/// Column appended to every protected partial: 0 when released, else a [`crate::Suppression`] code.
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
    /// The partial is summed under secure aggregation ([`crate::secagg::cells`]): the hub sees
    /// only the network's sum, so the minimum cell count and the dominance rule are applied to
    /// that sum instead of to each site's groups (DP studies: dominance is not judged).
    pub secure_aggregation: bool,
    /// The sums are a model's internal step (a GLM's or FedAvg's planning sums): judged by the
    /// model rules, not by the shared-value check, which is about means a researcher sees.
    pub model_step: bool,
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
    /// A sum of values clamped to `range` (`None` in exact mode, where no bounds are needed).
    Sum {
        /// The declared [low, high] every value was clamped to (DP).
        range: Option<(f64, f64)>,
    },
    /// A released count that is also the number of values in the sum at this position (an
    /// AVG's COUNT(x)): noised like a count, and its noisy value re-centres that sum.
    ValueCount(usize),
    /// A statistic released only without noise (e.g. a within-site variance).
    ExactOnly,
    /// People (or rows) behind the group.
    Contributors,
    /// Σ|x| of the sum at this position of the table (dominance input, never released).
    DominanceTotal(usize),
    /// Sum of the two largest |x| of the sum at this position (dominance input, never released).
    DominanceTop(usize),
    /// The largest |x| of the sum at this position (dominance input, never released).
    DominanceFirst(usize),
    /// The count of values of the sum at this position (shared-value input, never released).
    SharedCount(usize),
    /// Σe of the sum at this position's values, modulo [`crate::shared::P`] (never released).
    SharedSum(usize),
    /// Σe² of the sum at this position's values, modulo [`crate::shared::P`] (never released).
    SharedSquares(usize),
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
    /// The noise distribution added to each column, by column name, in words (what the scale
    /// in `scales` or `sigma` is the scale of).
    #[serde(default)]
    pub distributions: BTreeMap<String, String>,
    /// Under secure aggregation with DP: the standard deviation of the discrete Gaussian noise
    /// the network's sum carries on each column (each site adds a share of it).
    #[serde(default)]
    pub sigma: BTreeMap<String, f64>,
    /// Under secure aggregation with DP: sums sent centred, Σ(x − m), by column, with their
    /// centre m and the count column the hub multiplies it by to add m back after unmasking.
    #[serde(default)]
    pub centres: BTreeMap<String, (f64, String)>,
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
    // Exact studies sum VAR/STDDEV securely in two steps around the pooled mean (the site's
    // caller reshapes the within-site column); DP has no mechanism for them.
    if protection.secure_aggregation
        && protection.dp.is_some()
        && roles.contains(&ColumnRole::ExactOnly)
    {
        return Err(ReleaseError::Unsupported(
            "a within-site statistic (VAR/STDDEV) cannot be released under differential privacy"
                .into(),
        ));
    }
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
                ColumnRole::Count
                    | ColumnRole::ValueCount(_)
                    | ColumnRole::Sum { .. }
                    | ColumnRole::ExactOnly
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
            let local = !protection.secure_aggregation;
            let status = exact::exact_status(
                batch,
                roles,
                &contributors,
                &rules,
                local,
                !protection.model_step,
                &mut report,
            );
            (
                contributors.as_primitive::<Int64Type>().clone(),
                status,
                None,
            )
        }
        Some(release) if protection.secure_aggregation => {
            let n = contributors.as_primitive::<Int64Type>().clone();
            let selected = distributed::plan(
                batch,
                roles,
                &mut columns,
                &n,
                release,
                &rules,
                !keys.is_empty(),
                batch.schema().as_ref(),
                &mut report,
            )?;
            let status = distributed::status(selected.as_ref(), batch.num_rows());
            (n, status, None)
        }
        Some(release) => {
            let (n, keep) = noise(
                batch,
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
    // Null every statistic (and the contributor count) of a suppressed group. Under secure
    // aggregation nothing is nulled: values leave masked, and the hub suppresses the group from
    // its dominance flag.
    let suppressed = if protection.secure_aggregation {
        arrow::array::BooleanArray::from(vec![false; status.len()])
    } else {
        arrow::compute::kernels::cmp::neq(&status, &UInt8Array::new_scalar(0))?
    };
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
    if protection.secure_aggregation && protection.dp.is_none() {
        for (field, array) in exact::hidden_columns(batch, roles)? {
            fields.push(field);
            arrays.push(array);
        }
    }
    let out = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
    let out = match keep {
        Some(mask) => filter_record_batch(&out, &mask)?,
        None => out,
    };
    Ok((out, report))
}

/// DP mode: noise every statistic and the contributor count with ε split evenly among them;
/// with groups, keep only those whose noisy count passes the partition threshold.
#[allow(clippy::too_many_arguments)]
fn noise(
    batch: &RecordBatch,
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
    // Counts first: a sum re-centred on an AVG's count uses that count's noisy value.
    let count_scale = dp::laplace_scale(rows, eps);
    for (i, array) in columns.iter_mut() {
        if matches!(roles[*i], ColumnRole::Count | ColumnRole::ValueCount(_)) {
            let name = schema.field(*i).name().clone();
            report
                .distributions
                .insert(name.clone(), laplace_kind(array).into());
            *array = noise_array(array, count_scale)?;
            report.scales.insert(name, count_scale);
        }
    }
    let noisy: Vec<(usize, ArrayRef)> = columns.to_vec();
    for (i, array) in columns.iter_mut() {
        let name = schema.field(*i).name().clone();
        match roles[*i] {
            ColumnRole::Count | ColumnRole::ValueCount(_) => {}
            ColumnRole::Sum {
                range: Some((lo, hi)),
            } => {
                let released = roles
                    .iter()
                    .position(|r| *r == ColumnRole::ValueCount(*i))
                    .and_then(|j| noisy.iter().find(|(c, _)| *c == j).map(|(_, a)| (j, a)));
                let (sum, scale, kind) = match released {
                    // An AVG: Σ(x − m) noised, m × the released noisy count added back.
                    Some((j, noisy)) => {
                        let count = Count {
                            exact: batch.column(j).clone(),
                            noisy: noisy.clone(),
                        };
                        let (sum, scale) = centred_sum(array, count, lo, hi, rows, eps)?;
                        let mid = (lo + hi) / 2.0;
                        let kind = format!(
                            "Laplace on the sum less {mid} × its count (the midpoint of the \
                             bounds); {mid} × the released noisy count added back"
                        );
                        (sum, scale, kind)
                    }
                    // A bare SUM: one value moves it by at most max(|lo|, |hi|) per row.
                    None => {
                        let scale = rows * lo.abs().max(hi.abs()) / eps;
                        let kind = laplace_kind(array).to_string();
                        (noise_array(array, scale)?, scale, kind)
                    }
                };
                *array = sum;
                report.scales.insert(name.clone(), scale);
                report.distributions.insert(name, kind);
            }
            _ => {
                return Err(ReleaseError::Unsupported(format!(
                    "{name} cannot be released under differential privacy (declare bounds for \
                     sums; variances are not supported yet)"
                )));
            }
        }
    }
    let n_scale = dp::laplace_scale(rows, eps);
    report
        .distributions
        .insert(CONTRIBUTORS.into(), "discrete Laplace".into());
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

/// An AVG's DP sum of values clamped to [lo, hi], noised around the range's midpoint m: one
/// value moves Σ(x − m) by at most (hi − lo)/2, not by max(|lo|, |hi|) (for birth years in
/// [1900, 2030] that is 65 instead of 2030). The released sum is noisy Σ(x − m) + m · the
/// released noisy count, so the hub's Σ/ĉ is m + noisy Σ(x − m)/ĉ. Returns it with the
/// Laplace scale of the noise on Σ(x − m).
fn centred_sum(
    sum: &ArrayRef,
    count: Count,
    lo: f64,
    hi: f64,
    rows: f64,
    eps: f64,
) -> Result<(ArrayRef, f64), ReleaseError> {
    let mid = (lo + hi) / 2.0;
    let half = ((hi - lo) / 2.0).max(f64::MIN_POSITIVE);
    let sum = cast(sum, &DataType::Float64)?;
    let sum = sum.as_primitive::<Float64Type>();
    let exact = cast(&count.exact, &DataType::Int64)?;
    let exact = exact.as_primitive::<Int64Type>();
    let b_sum = rows * half / eps;
    let centred: Vec<f64> = sum
        .iter()
        .zip(exact.iter())
        .map(|(s, c)| s.unwrap_or(0.0) - mid * c.unwrap_or(0) as f64)
        .collect();
    let centred = dp::noise_f64(&centred, b_sum)?;
    let noisy = cast(&count.noisy, &DataType::Int64)?;
    let released: Float64Array = centred
        .iter()
        .zip(noisy.as_primitive::<Int64Type>().iter())
        .zip(sum.iter())
        .map(|((s, c), orig)| orig.map(|_| s + mid * c.unwrap_or(0) as f64))
        .collect();
    Ok((Arc::new(released), b_sum))
}

/// The value count of an AVG's DP sum: its exact value and the released noisy COUNT(x).
struct Count {
    exact: ArrayRef,
    noisy: ArrayRef,
}

/// The Laplace [`noise_array`] adds to `array`: discrete on integers, OpenDP's float-safe
/// (discretised) Laplace on reals.
fn laplace_kind(array: &ArrayRef) -> &'static str {
    if array.data_type().is_integer() {
        "discrete Laplace"
    } else {
        "Laplace"
    }
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

mod distributed;
mod exact;
pub use distributed::rho_for;
pub use exact::{DOMINANCE_ABS, DOMINANCE_FIRST, DOMINANCE_TOP, SHARED, hidden_fields};

#[cfg(test)]
mod noise_tests;
#[cfg(test)]
mod tests;

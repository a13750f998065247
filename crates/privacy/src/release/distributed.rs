//! Distributed DP under secure aggregation: no site's partial is ever seen alone, so no site
//! noises it fully. Each site adds a discrete Gaussian *share* to its masked cells
//! ([`crate::secagg::cells::add_noise`]) sized so that the shares of any t surviving sites add up
//! to the study's full noise (Gaussians add; Laplace does not). The privacy loss is accounted in
//! zCDP and converted to (ε, δ) for the ledger.
//!
//! Budget of one release of ε, δ:
//! - grouped queries reveal which groups exist (the key domain) before anything is summed: each
//!   site announces only groups whose Laplace-noised size passes τ = max(k, 1 + b·ln(L/δ')) —
//!   the same partition selection as per-site DP — with ε/2 and δ/2; the rest is for values;
//! - values: ρ-zCDP with ε_v = ρ + 2√(ρ ln(1/δ_v)) (Bun & Steinke), ρ split evenly over the
//!   released statistics and the group size. A person moves a count column's L2 norm by at most
//!   L (`max_rows_per_person`). An AVG's sum is sent centred, Σ(x − m) with m the middle of its
//!   bounds, so one person moves it by at most L·(hi − lo)/2; the hub adds m × the noisy count
//!   back ([`PartialReport::centres`]). A bare SUM has no released count to re-centre on and
//!   moves by up to L·max(|lo|, |hi|).

use std::collections::BTreeMap;

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Schema};

use super::{ColumnRole, DpRelease, PartialReport, ReleaseError};
use crate::dp;
use crate::rules::DisclosureRules;

/// The ρ of zCDP that converts to (ε, δ): the inverse of [`dp::zcdp_epsilon`].
pub fn rho_for(epsilon: f64, delta: f64) -> f64 {
    let l = (1.0 / delta).ln();
    ((l + epsilon).sqrt() - l.sqrt()).powi(2)
}

/// Plans the release of a site's exact (bounded, clamped) cells into a secure sum: writes each
/// released column's total noise σ into `report.sigma` and, for grouped queries, returns which
/// groups pass the noisy partition selection (the only groups the site announces).
#[allow(clippy::too_many_arguments)]
pub(super) fn plan(
    batch: &arrow::array::RecordBatch,
    roles: &[ColumnRole],
    columns: &mut [(usize, ArrayRef)],
    contributors: &Int64Array,
    release: &DpRelease,
    rules: &DisclosureRules,
    grouped: bool,
    schema: &Schema,
    report: &mut PartialReport,
) -> Result<Option<BooleanArray>, ReleaseError> {
    if !(release.epsilon.is_finite() && release.epsilon > 0.0) {
        return Err(ReleaseError::Unsupported(format!(
            "ε must be positive, not {}",
            release.epsilon
        )));
    }
    let rows = f64::from(release.max_rows_per_person.max(1));
    let (eps_values, delta_values) = if grouped {
        (release.epsilon / 2.0, release.delta / 2.0)
    } else {
        (release.epsilon, release.delta)
    };
    let mut sensitivity = BTreeMap::new();
    for (i, array) in columns.iter_mut() {
        let i = *i;
        let name = schema.field(i).name().clone();
        let d = match roles[i] {
            ColumnRole::Count | ColumnRole::ValueCount(_) => rows,
            ColumnRole::Sum {
                range: Some((lo, hi)),
            } => match roles.iter().position(|r| *r == ColumnRole::ValueCount(i)) {
                Some(j) => {
                    let mid = (lo + hi) / 2.0;
                    *array = centre(array, batch.column(j), mid)?;
                    let count = schema.field(j).name().clone();
                    report.centres.insert(name.clone(), (mid, count));
                    rows * (hi - lo) / 2.0
                }
                None => rows * lo.abs().max(hi.abs()),
            },
            _ => {
                return Err(ReleaseError::Unsupported(format!(
                    "{name} cannot be released under differential privacy (declare bounds for \
                     sums; variances are not supported)"
                )));
            }
        };
        sensitivity.insert(name, d);
    }
    sensitivity.insert(super::CONTRIBUTORS.to_string(), rows);
    let rho = rho_for(eps_values, delta_values) / sensitivity.len() as f64;
    for (name, d) in sensitivity {
        let sigma = d.max(f64::MIN_POSITIVE) / (2.0 * rho).sqrt();
        report.sigma.insert(name, sigma);
    }
    report.epsilon = release.epsilon;
    report.delta = release.delta;
    if !grouped {
        return Ok(None);
    }
    let eps_select = release.epsilon / 2.0;
    let scale = dp::laplace_scale(rows, eps_select);
    let values: Vec<i64> = contributors.iter().map(|v| v.unwrap_or(0)).collect();
    let noisy = dp::noise_i64(&values, scale)?;
    let tau = dp::partition_threshold(scale, release.max_rows_per_person, release.delta / 2.0)
        .max(rules.min_cell_count as f64);
    report.threshold = Some(tau);
    Ok(Some(noisy.iter().map(|&v| Some(v as f64 >= tau)).collect()))
}

/// Σx − m·c, as f64.
fn centre(sum: &ArrayRef, count: &ArrayRef, mid: f64) -> Result<ArrayRef, ReleaseError> {
    let sum = cast(sum, &DataType::Float64)?;
    let count = cast(count, &DataType::Float64)?;
    let centred: Float64Array = sum
        .as_primitive::<Float64Type>()
        .iter()
        .zip(count.as_primitive::<Float64Type>().iter())
        .map(|(s, c)| s.map(|s| s - mid * c.unwrap_or(0.0)))
        .collect();
    Ok(Arc::new(centred))
}

/// The status column of a secure DP release: small-cell code where the group is not announced.
pub(super) fn status(selected: Option<&BooleanArray>, rows: usize) -> arrow::array::UInt8Array {
    (0..rows)
        .map(|i| {
            let kept = selected.is_none_or(|s| s.value(i));
            Some(if kept {
                0
            } else {
                crate::Suppression::SmallCell.code()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rho_inverts_the_zcdp_conversion() {
        for (eps, delta) in [(0.5, 1e-6), (0.1, 1e-7), (2.0, 1e-5)] {
            let rho = rho_for(eps, delta);
            assert!(
                (dp::zcdp_epsilon(rho, delta) - eps).abs() < 1e-9,
                "{eps} {delta}"
            );
        }
    }
}

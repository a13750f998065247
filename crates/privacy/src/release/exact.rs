//! Exact studies: the checks a site runs on its own groups, and the inputs of the checks on
//! sums that the hub runs on the network's sum under secure aggregation.
//!
//! For every SUM (and AVG) the site computes, per group, inputs that are never released: the
//! dominance inputs (largest |x|, two largest |x|, Σ|x|) and the shared-value inputs (n, Σe,
//! Σe² modulo a prime; [`crate::shared`]). Without secure aggregation the site judges them
//! itself and drops them; with it they leave masked, summed with the partial, and the hub judges
//! the network's sums and drops them before anything is released.

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, UInt8Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type};

use super::{ColumnRole, PartialReport};
use crate::rules::{DisclosureRules, Suppression};
use crate::shared;

/// Prefix of a hidden column: for the sum in column `c`, `__top:c` holds the sum of the site's
/// two largest |x|. Summed over sites it bounds the network's two largest from above, so a
/// dominance check on it never under-protects.
pub const DOMINANCE_TOP: &str = "__top:";
/// Prefix of a hidden column: the site's largest |x| of the sum in `c` (summed: an upper bound
/// on the network's largest).
pub const DOMINANCE_FIRST: &str = "__first:";
/// Prefix of a hidden column: Σ|x| of the sum in `c`.
pub const DOMINANCE_ABS: &str = "__abs:";
/// Prefixes of the hidden shared-value columns of the sum in `c`: the count of its values, and
/// Σe and Σe² of their encodings modulo [`shared::P`].
pub const SHARED: [&str; 3] = ["__shn:", "__sh1:", "__sh2:"];

/// The columns of one sum's hidden inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Hidden {
    /// The sum's column.
    pub of: usize,
    pub first: usize,
    pub top: usize,
    pub total: usize,
    /// Shared-value inputs: count, Σe, Σe².
    pub shared: [usize; 3],
}

impl Hidden {
    /// The columns in the order they travel (matching [`hidden_fields`]).
    pub fn travel_order(&self) -> [usize; 6] {
        let [n, s1, s2] = self.shared;
        [self.first, self.top, self.total, n, s1, s2]
    }
}

/// The hidden inputs of every sum that has all of them, in the order of the sums.
pub(super) fn hidden_inputs(roles: &[ColumnRole]) -> Vec<Hidden> {
    let at = |want: ColumnRole| roles.iter().position(|r| *r == want);
    let mut out: Vec<Hidden> = roles
        .iter()
        .filter_map(|r| match r {
            ColumnRole::DominanceTotal(of) => Some(Hidden {
                of: *of,
                first: at(ColumnRole::DominanceFirst(*of))?,
                top: at(ColumnRole::DominanceTop(*of))?,
                total: at(ColumnRole::DominanceTotal(*of))?,
                shared: [
                    at(ColumnRole::SharedCount(*of))?,
                    at(ColumnRole::SharedSum(*of))?,
                    at(ColumnRole::SharedSquares(*of))?,
                ],
            }),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

/// The hidden columns a secure partial carries for the sums among `columns`, in the order the
/// site appends them: what the hub adds to the partial's schema to sum them. Dominance inputs
/// are reals (fixed point), shared-value inputs integers.
pub fn hidden_fields<'a>(columns: impl IntoIterator<Item = &'a str>) -> Vec<Field> {
    columns
        .into_iter()
        .flat_map(|c| {
            let real = [DOMINANCE_FIRST, DOMINANCE_TOP, DOMINANCE_ABS]
                .map(|prefix| Field::new(format!("{prefix}{c}"), DataType::Float64, true));
            let int =
                SHARED.map(|prefix| Field::new(format!("{prefix}{c}"), DataType::Int64, true));
            real.into_iter().chain(int)
        })
        .collect()
}

/// `batch`'s hidden columns in travel order, cast as [`hidden_fields`] declares them.
pub(super) fn hidden_columns(
    batch: &RecordBatch,
    roles: &[ColumnRole],
) -> Result<Vec<(Field, ArrayRef)>, arrow::error::ArrowError> {
    let schema = batch.schema();
    let mut out = Vec::new();
    for h in hidden_inputs(roles) {
        let fields = hidden_fields([schema.field(h.of).name().as_str()]);
        for (field, i) in fields.into_iter().zip(h.travel_order()) {
            let array = cast(batch.column(i), field.data_type())?;
            out.push((field, array));
        }
    }
    Ok(out)
}

/// Per group: the small-cell, dominance and shared-value checks (when `local`: without secure
/// aggregation; under it all three are judged on the network's sums). `shared_value` is false
/// for a model's internal sums.
pub(super) fn exact_status(
    batch: &RecordBatch,
    roles: &[ColumnRole],
    contributors: &ArrayRef,
    rules: &DisclosureRules,
    local: bool,
    shared_value: bool,
    report: &mut PartialReport,
) -> UInt8Array {
    let n = contributors.as_primitive::<Int64Type>();
    let float = |i: usize| {
        cast(batch.column(i), &DataType::Float64)
            .map(|a| a.as_primitive::<Float64Type>().clone())
            .ok()
    };
    let int = |i: usize| {
        cast(batch.column(i), &DataType::Int64)
            .map(|a| a.as_primitive::<Int64Type>().clone())
            .ok()
    };
    let hidden = if local {
        hidden_inputs(roles)
    } else {
        Vec::new()
    };
    let dominance: Vec<(Float64Array, Float64Array, Float64Array)> = hidden
        .iter()
        .filter_map(|h| Some((float(h.total)?, float(h.top)?, float(h.first)?)))
        .collect();
    let shared: Vec<[Int64Array; 3]> = hidden
        .iter()
        .filter(|_| rules.class_disclosure && shared_value)
        .filter_map(|h| {
            let [a, b, c] = h.shared;
            Some([int(a)?, int(b)?, int(c)?])
        })
        .collect();
    (0..batch.num_rows())
        .map(|row| {
            let code = if local && rules.too_small(n.value(row)) {
                Suppression::SmallCell.code()
            } else if dominance.iter().any(|(total, top, first)| {
                !total.is_null(row)
                    && rules.dominance.dominated(
                        first.value(row).abs(),
                        top.value(row).abs(),
                        total.value(row),
                    )
            }) {
                Suppression::Dominance.code()
            } else if shared.iter().any(|[n, s1, s2]| {
                let v = |a: &Int64Array| {
                    if a.is_null(row) {
                        0
                    } else {
                        a.value(row) as u64
                    }
                };
                shared::shares_one_value(v(n), v(s1), v(s2))
            }) {
                Suppression::SharedValue.code()
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

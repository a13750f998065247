//! Cell tables ⇄ ring vectors: how a site's protected partial (keys `k0..`, statistics `p0..`,
//! [`CONTRIBUTORS`], [`CELL_STATUS`]) is summed under secure aggregation.
//!
//! Secure aggregation sums vectors position by position, so every site must lay its groups out
//! over the same **domain** of group keys. Each site *announces* the keys of its groups that
//! already pass the minimum cell count on their own (a fact the hub would learn from any exact
//! release anyway); the hub's domain is the union. A site then contributes every domain group it
//! has — including its small ones, which never leave it in the clear — and 0 for the rest.
//! A group that is small at *every* site is not in the domain and not released: the price of
//! not revealing that it exists.
//!
//! Keys travel as Arrow's row format (hex), which is canonical and turns back into typed key
//! columns at the hub. Integer columns sum exactly in Z/2^64; reals are fixed point
//! ([`super::encode_fixed`]). [`CELL_STATUS`] travels as 1 where a site found the group dominated
//! (0 otherwise), so the hub learns only *how many* sites did: if the top n contributions
//! dominate the network's total, they dominate at least one site's own total (each site's share
//! of the top n is a part of its own top n, and Σ part > p·T ≥ p·Σ T_site), so suppressing
//! groups dominated anywhere is a sound test of network dominance.
//!
//! ```
//! use std::sync::Arc;
//! use arrow::array::{Int64Array, RecordBatch, StringArray, UInt8Array};
//! use arrow::datatypes::{DataType, Field, Schema};
//! use medfed_privacy::secagg::cells;
//!
//! let schema = Arc::new(Schema::new(vec![
//!     Field::new("k0", DataType::Utf8, true),
//!     Field::new("p0", DataType::Int64, true),
//!     Field::new("__n", DataType::Int64, true),
//!     Field::new("__cell", DataType::UInt8, false),
//! ]));
//! let site = |keys: Vec<&str>, n: Vec<i64>| {
//!     RecordBatch::try_new(schema.clone(), vec![
//!         Arc::new(StringArray::from(keys)),
//!         Arc::new(Int64Array::from(n.clone())),
//!         Arc::new(Int64Array::from(n.clone())),
//!         Arc::new(UInt8Array::from(vec![0; n.len()])),
//!     ]).unwrap()
//! };
//! let (north, south) = (site(vec!["F", "M"], vec![12, 3]), site(vec!["M"], vec![40]));
//! let domain = cells::domain([cells::announce(&north, Some(10)).unwrap(), cells::announce(&south, Some(10)).unwrap()]);
//! assert_eq!(domain.len(), 2); // F (12 at north) and M (40 at south); north's 3 Ms still count
//! let a = cells::to_vector(&north, &domain).unwrap();
//! let b = cells::to_vector(&south, &domain).unwrap();
//! let sum: Vec<u64> = a.iter().zip(&b).map(|(x, y)| x.wrapping_add(*y)).collect();
//! let merged = cells::from_vector(&sum, &schema, &domain, &Default::default()).unwrap();
//! let n = merged.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
//! assert_eq!(n.values().to_vec(), vec![12, 43]);
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, UInt8Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type, Schema, SchemaRef, UInt8Type};
use arrow::row::{RowConverter, SortField};

use super::{FRACTION_BITS, SecAggError, decode_fixed, encode_fixed, protocol};
use crate::release::{CELL_STATUS, CONTRIBUTORS};
use crate::rules::Suppression;

/// Largest |value| a site may put into a fixed-point column (2^31): the sum of up to 255 sites'
/// values then stays inside the ring's ±2^39 of fixed-point range. Larger values are refused,
/// not silently wrapped.
const MAX_FIXED: f64 = (1u64 << (63 - FRACTION_BITS - 8)) as f64;

/// Number of leading key columns (`k0..`) of a partial schema.
pub fn key_count(schema: &Schema) -> usize {
    schema
        .fields()
        .iter()
        .take_while(|f| f.name().starts_with('k'))
        .count()
}

fn converter(schema: &Schema) -> Result<RowConverter, SecAggError> {
    let fields = schema.fields()[..key_count(schema)]
        .iter()
        .map(|f| SortField::new(f.data_type().clone()))
        .collect();
    RowConverter::new(fields).map_err(|e| protocol(format!("group keys: {e}")))
}

/// Hex row-format keys of every row of `batch` ("" for a table without keys).
fn row_keys(batch: &RecordBatch) -> Result<Vec<String>, SecAggError> {
    let keys = key_count(&batch.schema());
    if keys == 0 {
        return Ok(vec![String::new(); batch.num_rows()]);
    }
    let rows = converter(&batch.schema())?
        .convert_columns(&batch.columns()[..keys])
        .map_err(|e| protocol(format!("group keys: {e}")))?;
    Ok(rows.iter().map(|r| hex::encode(r.as_ref())).collect())
}

fn contributors(batch: &RecordBatch) -> Result<Int64Array, SecAggError> {
    let i = batch
        .schema()
        .index_of(CONTRIBUTORS)
        .map_err(|_| protocol("a partial without a contributor count"))?;
    let n = cast(batch.column(i), &DataType::Int64).map_err(|e| protocol(e.to_string()))?;
    Ok(n.as_primitive::<Int64Type>().clone())
}

/// The keys of `batch`'s groups a site may reveal: those its own release did not mark as small
/// (under DP, the noisy partition selection) and, when `min_cell_count` is given (exact
/// studies), with at least that many people here.
pub fn announce(
    batch: &RecordBatch,
    min_cell_count: Option<u64>,
) -> Result<Vec<String>, SecAggError> {
    let n = contributors(batch)?;
    let status = batch
        .column_by_name(CELL_STATUS)
        .map(|c| cast(c, &DataType::UInt8))
        .transpose()
        .map_err(|e| protocol(e.to_string()))?;
    let small = |row: usize| {
        status.as_ref().is_some_and(|s| {
            s.as_primitive::<UInt8Type>().value(row) == Suppression::SmallCell.code()
        })
    };
    let keys = row_keys(batch)?;
    Ok(keys
        .into_iter()
        .enumerate()
        .filter(|(row, k)| {
            k.is_empty()
                || !small(*row) && min_cell_count.is_none_or(|k| n.value(*row) as u64 >= k.max(1))
        })
        .map(|(_, k)| k)
        .collect())
}

/// Adds each site's share of the release's Gaussian noise to its cell vector: column `c` gets
/// discrete Gaussian noise of σ_c/√t (σ_c from `sigma` by column name, in the column's units,
/// scaled to the ring for fixed-point columns), so any t surviving shares carry at least σ_c.
pub fn add_noise(
    vector: &mut [u64],
    schema: &Schema,
    domain_len: usize,
    sigma: &BTreeMap<String, f64>,
    threshold: usize,
) -> Result<(), crate::dp::DpError> {
    let keys = key_count(schema);
    for (c, field) in schema.fields().iter().enumerate().skip(keys) {
        let Some(&s) = sigma.get(field.name()) else {
            continue;
        };
        let unit = if field.data_type().is_integer() {
            1.0
        } else {
            f64::from(1u32 << FRACTION_BITS)
        };
        let share = crate::dp::gaussian_share_sigma(s * unit, threshold);
        let block = &mut vector[(c - keys) * domain_len..(c - keys + 1) * domain_len];
        let plain: Vec<i64> = block.iter().map(|&v| v as i64).collect();
        for (slot, noisy) in block
            .iter_mut()
            .zip(crate::dp::gaussian_i64(&plain, share)?)
        {
            *slot = noisy as u64;
        }
    }
    Ok(())
}

/// The union of the sites' announcements, sorted. A query without GROUP BY has one cell, "".
pub fn domain(announcements: impl IntoIterator<Item = Vec<String>>) -> Vec<String> {
    let all: BTreeSet<String> = announcements.into_iter().flatten().collect();
    if all.contains("") {
        return vec![String::new()];
    }
    all.into_iter().collect()
}

/// Lays `batch`'s non-key columns out over `domain`: column-major, one `domain.len()` block per
/// column; groups not in the domain are left out, domain groups the site lacks are 0.
pub fn to_vector(batch: &RecordBatch, domain: &[String]) -> Result<Vec<u64>, SecAggError> {
    let schema = batch.schema();
    let keys = key_count(&schema);
    let m = domain.len();
    let position: HashMap<&str, usize> = domain
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let rows: Vec<Option<usize>> = row_keys(batch)?
        .iter()
        .map(|k| position.get(k.as_str()).copied())
        .collect();
    let mut out = vec![0u64; (schema.fields().len() - keys) * m];
    for (c, field) in schema.fields().iter().enumerate().skip(keys) {
        let block = &mut out[(c - keys) * m..(c - keys + 1) * m];
        let column = batch.column(c);
        if field.name() == CELL_STATUS {
            let status = cast(column, &DataType::UInt8).map_err(|e| protocol(e.to_string()))?;
            for (row, s) in status
                .as_primitive::<arrow::datatypes::UInt8Type>()
                .iter()
                .enumerate()
            {
                if let Some(at) = rows[row] {
                    block[at] = u64::from(s == Some(Suppression::Dominance.code()));
                }
            }
        } else if field.data_type().is_integer() {
            let v = cast(column, &DataType::Int64).map_err(|e| protocol(e.to_string()))?;
            for (row, x) in v.as_primitive::<Int64Type>().iter().enumerate() {
                if let Some(at) = rows[row] {
                    block[at] = x.unwrap_or(0) as u64;
                }
            }
        } else {
            let v = cast(column, &DataType::Float64).map_err(|_| {
                protocol(format!(
                    "column {} ({}) cannot be securely summed",
                    field.name(),
                    field.data_type()
                ))
            })?;
            for (row, x) in v.as_primitive::<Float64Type>().iter().enumerate() {
                let Some(at) = rows[row] else { continue };
                let x = x.unwrap_or(0.0);
                if !(x.is_finite() && x.abs() < MAX_FIXED) {
                    return Err(protocol(format!(
                        "a value of {} is outside the secure aggregation range (±{MAX_FIXED:e})",
                        field.name()
                    )));
                }
                block[at] = encode_fixed(x);
            }
        }
    }
    Ok(out)
}

/// The hub's side: turns the unmasked sum back into one partial table of `schema` (keys from the
/// domain), with [`CELL_STATUS`] = dominance wherever any site found the group dominated.
/// `centres` names sums the sites sent centred (DP): decoded as reals, with m × their count
/// added back.
pub fn from_vector(
    sum: &[u64],
    schema: &SchemaRef,
    domain: &[String],
    centres: &BTreeMap<String, (f64, String)>,
) -> Result<RecordBatch, SecAggError> {
    let keys = key_count(schema);
    let m = domain.len();
    if sum.len() != (schema.fields().len() - keys) * m {
        return Err(protocol("the sum does not match the partial's shape"));
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    if keys > 0 {
        let converter = converter(schema)?;
        let bytes = domain
            .iter()
            .map(|k| hex::decode(k).map_err(|_| protocol("a malformed group key")))
            .collect::<Result<Vec<_>, _>>()?;
        let parser = converter.parser();
        let rows = bytes.iter().map(|b| parser.parse(b));
        columns.extend(
            converter
                .convert_rows(rows)
                .map_err(|e| protocol(format!("group keys: {e}")))?,
        );
    }
    for (c, field) in schema.fields().iter().enumerate().skip(keys) {
        let block = &sum[(c - keys) * m..(c - keys + 1) * m];
        let array: ArrayRef = if field.name() == CELL_STATUS {
            Arc::new(UInt8Array::from_iter_values(block.iter().map(|&v| {
                if v == 0 {
                    0
                } else {
                    Suppression::Dominance.code()
                }
            })))
        } else if let Some((mid, count)) = centres.get(field.name()) {
            let j = schema
                .index_of(count)
                .map_err(|_| protocol(format!("no count column {count} to re-centre on")))?;
            let counts = &sum[(j - keys) * m..(j - keys + 1) * m];
            Arc::new(Float64Array::from_iter_values(
                block
                    .iter()
                    .zip(counts)
                    .map(|(&v, &c)| decode_fixed(v) + mid * c as i64 as f64),
            ))
        } else if field.data_type().is_integer() {
            Arc::new(Int64Array::from_iter_values(
                block.iter().map(|&v| v as i64),
            ))
        } else {
            Arc::new(Float64Array::from_iter_values(
                block.iter().map(|&v| decode_fixed(v)),
            ))
        };
        columns.push(cast(&array, field.data_type()).map_err(|e| protocol(e.to_string()))?);
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| protocol(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Field;

    /// Five sites each add a share sized for a threshold of three: the sum of the shares must
    /// carry variance σ²·5/3 — never less than the promised σ² — on integers and on reals.
    #[test]
    fn noise_shares_add_up_to_at_least_the_promised_sigma() {
        let schema = Schema::new(vec![
            Field::new("k0", DataType::Int64, true),
            Field::new("p0", DataType::Int64, true),
            Field::new("p1", DataType::Float64, true),
        ]);
        let cells = 4_000;
        let sigma: BTreeMap<String, f64> = [("p0".into(), 10.0), ("p1".into(), 2.5)].into();
        let mut sum = vec![0u64; 2 * cells];
        for _ in 0..5 {
            let mut share = vec![0u64; 2 * cells];
            add_noise(&mut share, &schema, cells, &sigma, 3).unwrap();
            for (s, x) in sum.iter_mut().zip(share) {
                *s = s.wrapping_add(x);
            }
        }
        let variance = |xs: Vec<f64>| {
            let mean = xs.iter().sum::<f64>() / xs.len() as f64;
            xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (xs.len() - 1) as f64
        };
        let ints = variance(sum[..cells].iter().map(|&v| v as i64 as f64).collect());
        let reals = variance(sum[cells..].iter().map(|&v| decode_fixed(v)).collect());
        // Sample variance of 4000 draws: relative standard error √(2/3999) ≈ 2.2 %; allow 12 %.
        for (got, sigma) in [(ints, 10.0), (reals, 2.5)] {
            let want = sigma * sigma * 5.0 / 3.0;
            assert!(
                (got / want - 1.0).abs() < 0.12,
                "variance {got}, expected {want}"
            );
        }
    }
}

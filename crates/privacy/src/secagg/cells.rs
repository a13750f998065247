//! Cell tables ⇄ ring vectors: how a site's protected partial (keys `k0..`, statistics `p0..`,
//! [`CONTRIBUTORS`], [`CELL_STATUS`]) is summed under secure aggregation.
//!
//! Secure aggregation sums vectors position by position, so every site must lay its groups out
//! over the same **domain**. The domain must hold every group any site has — including groups of
//! 1..k−1 people at every site, which the network releases when they add up to k — without
//! telling the hub which groups exist where. So a site *announces* its groups as **tokens**:
//! HMAC-SHA256 of the group key under the round's token key, which the sites agree through the
//! sealed shares of round 1 and the hub never holds ([`super::Participant::token_key`]). The
//! domain is the union of the tokens; every site contributes every domain group it has and 0
//! for the rest. After unmasking, the hub judges each token's network total (k, dominance) and
//! asks the sites to **reveal** the keys of the tokens it releases only: a group the network
//! withholds is never named, at any site. What the hub learns of a withheld group is that it
//! exists (how many tokens a site announced), never its key or any one site's count.
//! Under DP the announced groups are each site's noisy partition selection, as before.
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
//! let (north, south) = (site(vec!["F", "M", "X"], vec![12, 3, 4]), site(vec!["M"], vec![40]));
//! let key = [7u8; 32]; // the round's token key, which only the sites hold
//! let named = |b| cells::tokens(&cells::announce(b).unwrap(), &key);
//! let domain = cells::domain([named(&north), named(&south)]);
//! assert_eq!(domain.len(), 3); // three tokens; the hub cannot tell which group is which
//! let fixed = Default::default(); // no real-valued column
//! let a = cells::to_vector(&north, &domain, Some(&key), &fixed).unwrap();
//! let b = cells::to_vector(&south, &domain, Some(&key), &fixed).unwrap();
//! let sum: Vec<u64> = a.iter().zip(&b).map(|(x, y)| x.wrapping_add(*y)).collect();
//! // The hub releases the tokens whose network count reaches k = 10 and asks for their keys.
//! let n = cells::column(&sum, &schema, domain.len(), "__n").unwrap();
//! let released: Vec<usize> = (0..domain.len()).filter(|&i| n[i] as i64 >= 10).collect();
//! assert_eq!(released.len(), 2); // F (12) and M (3 + 40); X (4) is never named
//! let revealed = cells::reveal(&north, &released.iter().map(|&i| domain[i].clone()).collect::<Vec<_>>(), &key).unwrap();
//! let keys: Vec<(usize, String)> = released.iter().map(|&i| (i, revealed[&domain[i]].clone())).collect();
//! let merged = cells::from_vector(&sum, &schema, domain.len(), &keys, &fixed, &Default::default()).unwrap();
//! let n = merged.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
//! let mut n = n.values().to_vec();
//! n.sort();
//! assert_eq!(n, vec![12, 43]);
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, UInt8Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type, Schema, SchemaRef, UInt8Type};
use arrow::row::{RowConverter, SortField};

use super::{FRACTION_BITS, SecAggError, protocol};
use crate::release::{CELL_STATUS, CONTRIBUTORS};
use crate::rules::Suppression;

/// Bits of the second limb of a fixed-point real: the part of x·2^FRACTION_BITS below 1, so
/// a real travels with 2^-(24+40) resolution and a sum of reals keeps f64's precision (an
/// IRLS step on 2^-24 alone stalls short of convergence).
const LOW_BITS: u32 = 40;

/// A real as two ring elements: ⌊x·2^F⌋ and the remainder in units of 2^-(F+40).
fn encode_limbs(x: f64) -> (u64, u64) {
    let v = x * f64::from(1u32 << FRACTION_BITS);
    let high = v.floor();
    let low = ((v - high) * (1u64 << LOW_BITS) as f64).round();
    (high as i64 as u64, low as u64)
}

/// The real of summed limbs.
fn decode_limbs(high: u64, low: u64) -> f64 {
    (high as i64 as f64 + low as f64 / (1u64 << LOW_BITS) as f64) / f64::from(1u32 << FRACTION_BITS)
}

/// Ring elements one cell takes: one per column, and a second limb per fixed-point column
/// (laid out after all the columns' first blocks, in schema order).
pub fn vector_len(schema: &Schema, fixed: &BTreeSet<String>, domain_len: usize) -> usize {
    let keys = key_count(schema);
    let low_limbs = schema
        .fields()
        .iter()
        .skip(keys)
        .filter(|f| fixed.contains(f.name()))
        .count();
    (schema.fields().len() - keys + low_limbs) * domain_len
}

/// Index of the second-limb block of column `c` (which must be fixed point).
fn low_block(schema: &Schema, fixed: &BTreeSet<String>, c: usize) -> usize {
    let keys = key_count(schema);
    let before = schema.fields()[keys..c]
        .iter()
        .filter(|f| fixed.contains(f.name()))
        .count();
    schema.fields().len() - keys + before
}

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

/// Hex row-format keys of every row of `batch` ("" for a table without keys): how groups are
/// named in announcements, reveals and [`to_vector`]'s domain.
pub fn group_keys(batch: &RecordBatch) -> Result<Vec<String>, SecAggError> {
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

/// The row-format keys of `batch`'s groups this site contributes to the secure sum: every group
/// with at least one person, unless its own release marked it small (under DP, the noisy
/// partition selection). A table without keys has one group, "".
pub fn announce(batch: &RecordBatch) -> Result<Vec<String>, SecAggError> {
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
    let keys = group_keys(batch)?;
    Ok(keys
        .into_iter()
        .enumerate()
        .filter(|(row, k)| k.is_empty() || !small(*row) && n.value(*row) >= 1)
        .map(|(_, k)| k)
        .collect())
}

/// The token that names `group` to the hub: HMAC-SHA256 under the round's token key, 128 bits,
/// hex ("" stays "": the one cell of a table without keys).
pub fn token(group: &str, key: &[u8; 32]) -> String {
    use hmac::{Hmac, Mac};
    if group.is_empty() {
        return String::new();
    }
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(group.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// The tokens of `groups`.
pub fn tokens(groups: &[String], key: &[u8; 32]) -> Vec<String> {
    groups.iter().map(|g| token(g, key)).collect()
}

/// A site's answer to the hub's reveal: the keys of the asked tokens that name groups of
/// `batch` (the hub asks only for tokens it releases).
pub fn reveal(
    batch: &RecordBatch,
    asked: &[String],
    key: &[u8; 32],
) -> Result<BTreeMap<String, String>, SecAggError> {
    let asked: BTreeSet<&str> = asked.iter().map(String::as_str).collect();
    Ok(group_keys(batch)?
        .into_iter()
        .filter_map(|group| {
            let t = token(&group, key);
            asked.contains(t.as_str()).then_some((t, group))
        })
        .collect())
}

/// The block of column `name` in a summed vector laid out over `domain_len` cells.
pub fn column<'a>(
    sum: &'a [u64],
    schema: &Schema,
    domain_len: usize,
    name: &str,
) -> Result<&'a [u64], SecAggError> {
    let keys = key_count(schema);
    let c = schema
        .index_of(name)
        .map_err(|_| protocol(format!("the partial has no column {name}")))?;
    sum.get((c - keys) * domain_len..(c - keys + 1) * domain_len)
        .ok_or_else(|| protocol("the sum does not match the partial's shape"))
}

/// The reals of fixed-point column `name` in a summed vector over `domain_len` cells.
pub fn fixed_column(
    sum: &[u64],
    schema: &Schema,
    fixed: &BTreeSet<String>,
    domain_len: usize,
    name: &str,
) -> Result<Vec<f64>, SecAggError> {
    let keys = key_count(schema);
    let m = domain_len;
    let c = schema
        .index_of(name)
        .map_err(|_| protocol(format!("the partial has no column {name}")))?;
    if !fixed.contains(name) || sum.len() != vector_len(schema, fixed, m) {
        return Err(protocol("the sum does not match the partial's shape"));
    }
    let l = low_block(schema, fixed, c);
    let high = &sum[(c - keys) * m..(c - keys + 1) * m];
    let low = &sum[l * m..(l + 1) * m];
    Ok(high
        .iter()
        .zip(low)
        .map(|(&h, &l)| decode_limbs(h, l))
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
    fixed: &BTreeSet<String>,
    threshold: usize,
) -> Result<(), crate::dp::DpError> {
    let keys = key_count(schema);
    for (c, field) in schema.fields().iter().enumerate().skip(keys) {
        let Some(&s) = sigma.get(field.name()) else {
            continue;
        };
        let unit = if fixed.contains(field.name()) {
            f64::from(1u32 << FRACTION_BITS)
        } else {
            1.0
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

/// The columns of a site's partial that travel as fixed-point reals: every statistic that is not
/// an integer. The hub takes the union over the sites and every site encodes those columns so
/// (a site's SUM over a clamped integer column may be real where another's is not), and the hub
/// decodes them so whatever type the plan gives the column.
pub fn fixed_point(schema: &Schema) -> BTreeSet<String> {
    schema
        .fields()
        .iter()
        .skip(key_count(schema))
        .filter(|f| f.name() != CELL_STATUS && !f.data_type().is_integer())
        .map(|f| f.name().clone())
        .collect()
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
/// column; groups not in the domain are left out, domain groups the site lacks are 0. With a
/// token key the domain holds tokens ([`token`]), else row-format keys.
pub fn to_vector(
    batch: &RecordBatch,
    domain: &[String],
    token_key: Option<&[u8; 32]>,
    fixed: &BTreeSet<String>,
) -> Result<Vec<u64>, SecAggError> {
    let schema = batch.schema();
    let keys = key_count(&schema);
    let m = domain.len();
    let position: HashMap<&str, usize> = domain
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let rows: Vec<Option<usize>> = group_keys(batch)?
        .into_iter()
        .map(|k| match token_key {
            Some(key) => token(&k, key),
            None => k,
        })
        .map(|k| position.get(k.as_str()).copied())
        .collect();
    let mut out = vec![0u64; vector_len(&schema, fixed, m)];
    for (c, field) in schema.fields().iter().enumerate().skip(keys) {
        let (blocks, lows) = out.split_at_mut((schema.fields().len() - keys) * m);
        let block = &mut blocks[(c - keys) * m..(c - keys + 1) * m];
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
        } else if !fixed.contains(field.name()) {
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
            // This column's second-limb block, once per column (not per row).
            let low = (low_block(&schema, fixed, c) - (schema.fields().len() - keys)) * m;
            for (row, x) in v.as_primitive::<Float64Type>().iter().enumerate() {
                let Some(at) = rows[row] else { continue };
                let x = x.unwrap_or(0.0);
                if !(x.is_finite() && x.abs() < MAX_FIXED) {
                    return Err(protocol(format!(
                        "a value of {} is outside the secure aggregation range (±{MAX_FIXED:e})",
                        field.name()
                    )));
                }
                (block[at], lows[low + at]) = encode_limbs(x);
            }
        }
    }
    Ok(out)
}

/// Where the hub flags a kept cell it withholds (a query without GROUP BY), its
/// [`CELL_STATUS`] holds `FLAGGED` + the reason's code; a site's own flags sum to at most
/// the number of sites.
const FLAGGED: u64 = 1 << 32;

/// The [`CELL_STATUS`] value with which the hub flags a kept cell it withholds for `why`.
pub fn flag(why: Suppression) -> u64 {
    FLAGGED + u64::from(why.code())
}

/// The hub's side: turns the unmasked sum over `domain_len` cells back into one partial table of
/// `schema` holding the `released` cells — (position in the domain, row-format key) — with
/// [`CELL_STATUS`] = dominance wherever any site found the group dominated, or the reason the
/// hub [`flag`]ged. `centres` names sums
/// the sites sent centred (DP): decoded as reals, with m × their count added back.
pub fn from_vector(
    sum: &[u64],
    schema: &SchemaRef,
    domain_len: usize,
    released: &[(usize, String)],
    fixed: &BTreeSet<String>,
    centres: &BTreeMap<String, (f64, String)>,
) -> Result<RecordBatch, SecAggError> {
    let keys = key_count(schema);
    let m = domain_len;
    if sum.len() != vector_len(schema, fixed, m) || released.iter().any(|(i, _)| *i >= m) {
        return Err(protocol("the sum does not match the partial's shape"));
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    if keys > 0 {
        let converter = converter(schema)?;
        let bytes = released
            .iter()
            .map(|(_, k)| hex::decode(k).map_err(|_| protocol("a malformed group key")))
            .collect::<Result<Vec<_>, _>>()?;
        let parser = converter.parser();
        let rows = bytes.iter().map(|b| parser.parse(b));
        columns.extend(
            converter
                .convert_rows(rows)
                .map_err(|e| protocol(format!("group keys: {e}")))?,
        );
    }
    let pick = |block: &[u64]| -> Vec<u64> { released.iter().map(|(i, _)| block[*i]).collect() };
    // A fixed-point column's reals from its two limbs.
    let reals = |c: usize| -> Vec<f64> {
        let high = pick(&sum[(c - keys) * m..(c - keys + 1) * m]);
        let l = low_block(schema, fixed, c);
        let low = pick(&sum[l * m..(l + 1) * m]);
        high.iter()
            .zip(&low)
            .map(|(&h, &l)| decode_limbs(h, l))
            .collect()
    };
    for (c, field) in schema.fields().iter().enumerate().skip(keys) {
        let block = pick(&sum[(c - keys) * m..(c - keys + 1) * m]);
        let array: ArrayRef = if field.name() == CELL_STATUS {
            Arc::new(UInt8Array::from_iter_values(block.iter().map(|&v| {
                match v {
                    0 => 0,
                    FLAGGED.. => Suppression::from_code((v - FLAGGED) as u8)
                        .unwrap_or(Suppression::Dominance)
                        .code(),
                    _ => Suppression::Dominance.code(),
                }
            })))
        } else if let Some((mid, count)) = centres.get(field.name()) {
            let j = schema
                .index_of(count)
                .map_err(|_| protocol(format!("no count column {count} to re-centre on")))?;
            let counts = pick(&sum[(j - keys) * m..(j - keys + 1) * m]);
            Arc::new(Float64Array::from_iter_values(
                reals(c)
                    .iter()
                    .zip(&counts)
                    .map(|(&v, &c)| v + mid * c as i64 as f64),
            ))
        } else if fixed.contains(field.name()) {
            Arc::new(Float64Array::from_iter_values(reals(c)))
        } else {
            Arc::new(Int64Array::from_iter_values(
                block.iter().map(|&v| v as i64),
            ))
        };
        // A real decoded into an integer column is rounded, not truncated.
        let array = match (field.data_type().is_integer(), array.data_type()) {
            (true, DataType::Float64) => {
                let a = array.as_primitive::<Float64Type>();
                Arc::new(Float64Array::from_iter_values(
                    a.values().iter().map(|v| v.round()),
                )) as ArrayRef
            }
            _ => array,
        };
        columns.push(cast(&array, field.data_type()).map_err(|e| protocol(e.to_string()))?);
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| protocol(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::super::decode_fixed;
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
            add_noise(&mut share, &schema, cells, &sigma, &fixed_point(&schema), 3).unwrap();
            // (The second limbs of p1 carry no noise; only the first blocks are summed here.)
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

#[cfg(test)]
mod limbs {
    use super::*;
    use arrow::datatypes::Field;

    /// Reals keep f64's precision through a sum of several sites (one limb of 2^-24 would
    /// lose everything past the 8th decimal), including negatives and large values.
    #[test]
    fn reals_sum_to_f64_precision() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k0", DataType::Utf8, true),
            Field::new("p0", DataType::Float64, true),
            Field::new("__n", DataType::Int64, true),
        ]));
        let site = |x: f64| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(arrow::array::StringArray::from(vec!["a"])),
                    Arc::new(Float64Array::from(vec![x])),
                    Arc::new(Int64Array::from(vec![1])),
                ],
            )
            .unwrap()
        };
        let values = [
            0.123_456_789_012_345_6,
            -3.333_333_333_333_333,
            1.0e9 + 1.0 / 3.0,
            -2.718_281_8e-9,
        ];
        let fixed = fixed_point(&schema);
        let domain = vec![group_keys(&site(0.0)).unwrap()[0].clone()];
        let mut sum = vec![0u64; vector_len(&schema, &fixed, 1)];
        for &x in &values {
            for (s, v) in sum
                .iter_mut()
                .zip(to_vector(&site(x), &domain, None, &fixed).unwrap())
            {
                *s = s.wrapping_add(v);
            }
        }
        let released = [(0, domain[0].clone())];
        let t = from_vector(&sum, &schema, 1, &released, &fixed, &Default::default()).unwrap();
        let got = t.column(1).as_primitive::<Float64Type>().value(0);
        let want: f64 = values.iter().sum();
        assert!(
            (got - want).abs() <= 4.0 * f64::EPSILON * want.abs(),
            "{got} vs {want}"
        );
    }
}

//! VAR/STDDEV under secure aggregation, in two sums.
//!
//! In the clear the hub merges each site's count, sum and own variance (Chan et al.). Under
//! secure aggregation it sees only the network's sums, and a sum of the sites' variances means
//! nothing, so the release takes two secure sums over the same partial:
//!
//! ```text
//!  first sum   n, Σx (the site's own variance column is sent as 0)   → pooled mean x̄ per group
//!  second sum  per released group: Σ(x − x̄)² = n·var + n·(x̄_site − x̄)²   → pooled M2
//! ```
//! The second sum is computed at each site from its partial (no second scan, no sum of squares,
//! so no cancellation), only for groups the first sum released; the hub sees only its total.
//! Both sums are secure aggregations: this module only reshapes the partial table before and
//! after them. Columns are named by [`medfed_protocol`]'s `[n, s, v]` triples.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, RecordBatch};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use medfed_privacy::secagg::cells::group_keys;

use super::error::{Result, SqlError};

/// `[n, s, v]`: a variance aggregate's count, sum and within-site population variance columns.
pub type Columns = [String; 3];

fn failed(msg: impl Into<String>) -> SqlError {
    SqlError::Execution(msg.into())
}

fn reals(batch: &RecordBatch, name: &str) -> Result<Float64Array> {
    let c = batch
        .column_by_name(name)
        .ok_or_else(|| failed(format!("the partial has no column {name}")))?;
    Ok(cast(c, &DataType::Float64)?
        .as_primitive::<Float64Type>()
        .clone())
}

fn counts(batch: &RecordBatch, name: &str) -> Result<Vec<i64>> {
    let c = batch
        .column_by_name(name)
        .ok_or_else(|| failed(format!("the partial has no column {name}")))?;
    let c = cast(c, &DataType::Int64)?;
    Ok(c.as_primitive::<Int64Type>()
        .iter()
        .map(|v| v.unwrap_or(0))
        .collect())
}

/// `batch` with column `name` replaced by `values` (cast to the column's type).
fn with_v(batch: &RecordBatch, name: &str, values: Float64Array) -> Result<RecordBatch> {
    let schema = batch.schema();
    let i = schema
        .index_of(name)
        .map_err(|_| failed(format!("the partial has no column {name}")))?;
    let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
    cols[i] = cast(&(Arc::new(values) as ArrayRef), schema.field(i).data_type())?;
    Ok(RecordBatch::try_new(schema, cols)?)
}

/// First sum, at a site: every `v` column set to 0, so only n and Σx enter the sum.
pub fn zero_within(batch: &RecordBatch, columns: &[Columns]) -> Result<RecordBatch> {
    let mut out = batch.clone();
    for [_, _, v] in columns {
        let zeros = Float64Array::from(vec![0.0; batch.num_rows()]);
        out = with_v(&out, v, zeros)?;
    }
    Ok(out)
}

/// After the first sum, at the hub: each released group's pooled mean per variance aggregate
/// (None where its count is 0), keyed as the sites key their groups.
pub fn means(
    summed: &RecordBatch,
    columns: &[Columns],
) -> Result<BTreeMap<String, Vec<Option<f64>>>> {
    let keys = group_keys(summed).map_err(|e| failed(e.to_string()))?;
    let mut out: BTreeMap<String, Vec<Option<f64>>> =
        keys.iter().map(|k| (k.clone(), Vec::new())).collect();
    for [n, s, _] in columns {
        let (n, s) = (counts(summed, n)?, reals(summed, s)?);
        for (row, key) in keys.iter().enumerate() {
            let mean = (n[row] > 0 && !s.is_null(row)).then(|| s.value(row) / n[row] as f64);
            out.get_mut(key).expect("every key").push(mean);
        }
    }
    Ok(out)
}

/// Second sum, at a site: only the groups in `means` that the site named in the first sum
/// (`named`), each `v` column replaced by Σ(x − x̄)² = n·var + n·(x̄_site − x̄)² around the
/// pooled mean.
pub fn centre(
    batch: &RecordBatch,
    columns: &[Columns],
    means: &BTreeMap<String, Vec<Option<f64>>>,
    named: &BTreeSet<String>,
) -> Result<RecordBatch> {
    let keys = group_keys(batch).map_err(|e| failed(e.to_string()))?;
    let keep: arrow::array::BooleanArray = keys
        .iter()
        .map(|k| Some(named.contains(k) && means.contains_key(k)))
        .collect();
    let batch = filter_record_batch(batch, &keep)?;
    let keys: Vec<&String> = keys
        .iter()
        .zip(keep.values().iter())
        .filter_map(|(k, kept)| kept.then_some(k))
        .collect();
    let mut out = batch.clone();
    for (j, [n, s, v]) in columns.iter().enumerate() {
        let (count, sum, var) = (counts(&batch, n)?, reals(&batch, s)?, reals(&batch, v)?);
        let centred: Float64Array = (0..batch.num_rows())
            .map(|row| {
                let m = means[keys[row]].get(j).copied().flatten();
                let c = count[row] as f64;
                Some(match m {
                    Some(m) if count[row] > 0 && !sum.is_null(row) => {
                        let within = if var.is_null(row) {
                            0.0
                        } else {
                            var.value(row)
                        };
                        let d = sum.value(row) / c - m;
                        c * within + c * d * d
                    }
                    _ => 0.0,
                })
            })
            .collect();
        out = with_v(&out, v, centred)?;
    }
    Ok(out)
}

/// After the second sum, at the hub: the first sum's table with each `v` set to the pooled
/// population variance M2 / n, so the ordinary merge finishes VAR/STDDEV from it. Fails when a
/// group's count differs between the two sums (a site's data changed or it left in between).
pub fn pool(first: &RecordBatch, second: &RecordBatch, columns: &[Columns]) -> Result<RecordBatch> {
    let mismatch = || {
        SqlError::SitesChanged(
            "the two secure sums of VAR/STDDEV did not cover the same people (a site left or its \
             data changed between them); ask again"
                .into(),
        )
    };
    let second_keys = group_keys(second).map_err(|e| failed(e.to_string()))?;
    let at: BTreeMap<&str, usize> = second_keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let keys = group_keys(first).map_err(|e| failed(e.to_string()))?;
    let mut out = first.clone();
    for [n, _, v] in columns {
        let (n1, n2, m2) = (counts(first, n)?, counts(second, n)?, reals(second, v)?);
        let pooled: Float64Array = keys
            .iter()
            .enumerate()
            .map(|(row, key)| {
                if n1[row] == 0 {
                    return Ok(None);
                }
                let j = *at.get(key.as_str()).ok_or_else(mismatch)?;
                if n2[j] != n1[row] || m2.is_null(j) {
                    return Err(mismatch());
                }
                Ok(Some(m2.value(j).max(0.0) / n1[row] as f64))
            })
            .collect::<Result<_>>()?;
        out = with_v(&out, v, pooled)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    fn table(keys: &[&str], n: &[i64], s: &[f64], v: &[f64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k0", DataType::Utf8, true),
            Field::new("p0", DataType::Int64, true),
            Field::new("p1", DataType::Float64, true),
            Field::new("p2", DataType::Float64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(keys.to_vec())),
                Arc::new(Int64Array::from(n.to_vec())),
                Arc::new(Float64Array::from(s.to_vec())),
                Arc::new(Float64Array::from(v.to_vec())),
            ],
        )
        .unwrap()
    }

    fn var_pop(x: &[f64]) -> f64 {
        let m = x.iter().sum::<f64>() / x.len() as f64;
        x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / x.len() as f64
    }

    fn partial(key: &str, x: &[f64]) -> RecordBatch {
        table(&[key], &[x.len() as i64], &[x.iter().sum()], &[var_pop(x)])
    }

    fn add(a: &RecordBatch, b: &RecordBatch) -> RecordBatch {
        let (n1, n2) = (counts(a, "p0").unwrap(), counts(b, "p0").unwrap());
        let (s1, s2) = (reals(a, "p1").unwrap(), reals(b, "p1").unwrap());
        let (v1, v2) = (reals(a, "p2").unwrap(), reals(b, "p2").unwrap());
        let key = a.column(0).as_string::<i32>().value(0).to_string();
        table(
            &[&key],
            &[n1[0] + n2[0]],
            &[s1.value(0) + s2.value(0)],
            &[v1.value(0) + v2.value(0)],
        )
    }

    #[test]
    fn two_sums_give_the_pooled_variance_even_far_from_zero() {
        // Values near 1e6 with a spread of ~1: a sum of squares would lose the spread.
        let a: Vec<f64> = (0..50).map(|i| 1e6 + (i % 7) as f64 * 0.3).collect();
        let b: Vec<f64> = (0..20).map(|i| 1e6 + 2.0 + (i % 3) as f64).collect();
        let cols = [["p0".to_string(), "p1".into(), "p2".into()]];
        let (pa, pb) = (partial("g", &a), partial("g", &b));
        let first = add(
            &zero_within(&pa, &cols).unwrap(),
            &zero_within(&pb, &cols).unwrap(),
        );
        assert_eq!(reals(&first, "p2").unwrap().value(0), 0.0);
        let means = means(&first, &cols).unwrap();
        let named: BTreeSet<String> = means.keys().cloned().collect();
        let second = add(
            &centre(&pa, &cols, &means, &named).unwrap(),
            &centre(&pb, &cols, &means, &named).unwrap(),
        );
        let pooled = pool(&first, &second, &cols).unwrap();
        let all: Vec<f64> = a.iter().chain(&b).copied().collect();
        let got = reals(&pooled, "p2").unwrap().value(0);
        assert!((got - var_pop(&all)).abs() < 1e-9 * var_pop(&all), "{got}");
    }

    #[test]
    fn a_site_centres_only_groups_it_named_and_the_hub_released() {
        let cols = [["p0".to_string(), "p1".into(), "p2".into()]];
        let t = table(&["a", "b"], &[3, 4], &[3.0, 8.0], &[1.0, 2.0]);
        let keys = group_keys(&t).unwrap();
        let means = BTreeMap::from([
            (keys[0].clone(), vec![Some(1.0)]),
            (keys[1].clone(), vec![Some(2.0)]),
        ]);
        // The hub asks for both, but this site named only "a" in the first sum.
        let named = BTreeSet::from([keys[0].clone()]);
        let c = centre(&t, &cols, &means, &named).unwrap();
        assert_eq!(c.num_rows(), 1);
        assert_eq!(reals(&c, "p2").unwrap().value(0), 3.0);
    }

    #[test]
    fn a_count_that_changed_between_the_sums_is_an_error_not_a_wrong_variance() {
        let cols = [["p0".to_string(), "p1".into(), "p2".into()]];
        let first = table(&["a"], &[10], &[10.0], &[0.0]);
        let second = table(&["a"], &[9], &[9.0], &[4.0]);
        assert!(pool(&first, &second, &cols).is_err());
        let missing = table(&["b"], &[10], &[10.0], &[4.0]);
        assert!(pool(&first, &missing, &cols).is_err());
    }
}

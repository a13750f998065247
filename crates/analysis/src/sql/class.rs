//! Class disclosure in two-way tables: when every person in a row of a cross-tabulation falls
//! in one column (a rare condition seen only in women, a ward whose patients all died), the
//! table tells anyone who knows a person is in that row which column they are in, however
//! large the cell. ACRO and the SDC handbooks call this class (or group) disclosure.
//!
//! Runs at the hub on the merged result, after k and dominance: a released, non-empty cell that
//! is the only non-empty cell of its row (or column), in a table whose other key takes at least
//! two values and where nothing else in that row (or column) was suppressed, is withheld — its
//! row is removed, as a withheld group's is under secure aggregation. Only the table's own
//! cells are read; nothing leaves the hub.

use std::collections::{BTreeMap, BTreeSet};

use super::Merged;
use super::error::Result;

/// Withholds the class-disclosing cells of a two-way table (`keys` = 2; any other shape is
/// left alone). Returns how many rows were withheld.
pub fn withhold_classes(merged: &mut Merged, keys: usize) -> Result<usize> {
    let flagged = class_disclosures(merged, keys);
    merged.withhold(&flagged)
}

/// The rows of a two-way table (`keys` = 2) that disclose a class: the lone non-empty cell of
/// a row or column (empty for any other shape).
pub fn class_disclosures(merged: &Merged, keys: usize) -> BTreeSet<usize> {
    if keys != 2 {
        return BTreeSet::new();
    }
    let keys: Vec<String> = merged.cells.iter().map(|c| c.key.clone()).collect();
    flag(merged, &keys)
}

/// One key of a two-part group key.
fn pick<'a>(k: (&'a str, &'a str), first: bool) -> &'a str {
    if first { k.0 } else { k.1 }
}

fn flag<'a>(merged: &Merged, keys: &'a [String]) -> BTreeSet<usize> {
    let split: Vec<Option<(&'a str, &'a str)>> =
        keys.iter().map(|k| k.split_once('\u{1f}')).collect();
    let non_empty = |i: usize| {
        merged.cells[i].status == 0 && merged.cells[i].contributors.is_some_and(|n| n > 0)
    };
    let mut flagged = BTreeSet::new();
    for side in [0, 1] {
        let line = |k: (&'a str, &'a str)| pick(k, side == 0);
        let other = |k: (&'a str, &'a str)| pick(k, side != 0);
        let categories: BTreeSet<&str> = split.iter().flatten().map(|k| other(*k)).collect();
        if categories.len() < 2 {
            continue;
        }
        // Per line: its non-empty released cells, and whether anything in it is hidden.
        let mut lines: BTreeMap<&str, (Vec<usize>, bool)> = BTreeMap::new();
        for (i, k) in split.iter().enumerate() {
            let Some(k) = k else { continue };
            let entry = lines.entry(line(*k)).or_default();
            if non_empty(i) {
                entry.0.push(i);
            } else if merged.cells[i].status != 0 {
                entry.1 = true;
            }
        }
        for (cells, hidden) in lines.values() {
            if let ([only], false) = (cells.as_slice(), hidden) {
                flagged.insert(*only);
            }
        }
    }
    flagged
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::super::MergedCell;
    use super::*;

    fn merged(rows: &[(&str, &str, i64, u8)]) -> Merged {
        let schema = Arc::new(Schema::new(vec![
            Field::new("condition", DataType::Utf8, false),
            Field::new("sex", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(Int64Array::from_iter(
                    rows.iter().map(|r| (r.3 == 0).then_some(r.2)),
                )),
            ],
        )
        .unwrap();
        Merged {
            batches: vec![batch],
            cells: rows
                .iter()
                .map(|r| MergedCell {
                    status: r.3,
                    contributors: (r.3 == 0).then_some(r.2),
                    key: format!("{}\u{1f}{}", r.0, r.1),
                })
                .collect(),
        }
    }

    fn conditions(m: &Merged) -> Vec<String> {
        m.cells
            .iter()
            .map(|c| c.key.replace('\u{1f}', "/"))
            .collect()
    }

    #[test]
    fn a_condition_seen_only_in_women_is_withheld_and_the_rest_released() {
        let mut m = merged(&[
            ("asthma", "F", 40, 0),
            ("asthma", "M", 35, 0),
            ("endometriosis", "F", 25, 0),
            ("gout", "F", 12, 0),
            ("gout", "M", 30, 0),
        ]);
        assert_eq!(withhold_classes(&mut m, 2).unwrap(), 1);
        assert_eq!(conditions(&m), ["asthma/F", "asthma/M", "gout/F", "gout/M"]);
        assert_eq!(m.batches[0].num_rows(), 4);
    }

    #[test]
    fn a_row_with_a_suppressed_cell_is_not_a_class_disclosure() {
        // The other sex is there but small: the row's members do not all share one value.
        let mut m = merged(&[
            ("asthma", "F", 40, 0),
            ("asthma", "M", 35, 0),
            ("gout", "F", 3, 1),
            ("gout", "M", 30, 0),
        ]);
        assert_eq!(withhold_classes(&mut m, 2).unwrap(), 0);
    }

    #[test]
    fn a_filtered_single_category_and_one_way_tables_are_left_alone() {
        // Every row has one sex because the query asked for women only: nothing to learn.
        let mut m = merged(&[("asthma", "F", 40, 0), ("gout", "F", 12, 0)]);
        assert_eq!(withhold_classes(&mut m, 2).unwrap(), 0);
        assert_eq!(withhold_classes(&mut m, 1).unwrap(), 0);
    }
}

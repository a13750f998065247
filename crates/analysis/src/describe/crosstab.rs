//! Two-way contingency tables and Pearson's chi-square test of independence.
//!
//! One grouped count per pair of levels; counts add across sites. A cell with fewer than k
//! people is withheld by the small-cell rule, and then no chi-square is given: the statistic,
//! with the margins, would let a reader solve for the withheld cell (DataSHIELD's `table`
//! refuses such tables outright; here the rest of the table is still shown).

use std::collections::{BTreeMap, BTreeSet};

use medfed_core::describe::{ChiSquare, Crosstab, Statistics};
use medfed_core::result::QueryResult;
use statrs::distribution::{ChiSquared, ContinuousCDF};

use super::{DescribeError, Failure, MAX_LEVELS, Runner, Source, label};

/// Counts per pair of levels, then the test.
pub(super) async fn crosstab<E, F, Fut>(
    source: &Source,
    runner: &mut Runner<F>,
) -> Result<Statistics, Failure<E>>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<QueryResult, E>>,
{
    let sql = format!(
        "SELECT __v0 AS r, __v1 AS c, COUNT(*) AS n {} WHERE {} GROUP BY __v0, __v1",
        source.from,
        source.complete()
    );
    let answer = runner.query(sql).await?;
    let table = read(&answer)?;
    let (row_levels, column_levels): (Vec<String>, Vec<String>) = (
        table
            .keys()
            .map(|(r, _)| r.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        table
            .keys()
            .map(|(_, c)| c.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
    );
    if row_levels.len() > MAX_LEVELS || column_levels.len() > MAX_LEVELS {
        return Err(DescribeError::Invalid(format!(
            "{} × {} levels; at most {MAX_LEVELS} on either side",
            row_levels.len(),
            column_levels.len()
        ))
        .into());
    }
    let counts: Vec<Vec<Option<f64>>> = row_levels
        .iter()
        .map(|r| {
            column_levels
                .iter()
                .map(|c| {
                    table
                        .get(&(r.clone(), c.clone()))
                        .copied()
                        .unwrap_or(Some(0.0))
                })
                .collect()
        })
        .collect();
    let (chi_square, note) = chi_square(&counts);
    Ok(Statistics::Table(Crosstab {
        rows: source.names[0].clone(),
        columns: source.names[1].clone(),
        row_levels,
        column_levels,
        counts,
        chi_square,
        note,
    }))
}

/// `(row level, column level)` → count (`None`: withheld).
fn read(answer: &QueryResult) -> Result<BTreeMap<(String, String), Option<f64>>, DescribeError> {
    let col = |name: &str| answer.columns.iter().position(|c| c == name);
    let (Some(r), Some(c), Some(n)) = (col("r"), col("c"), col("n")) else {
        return Err(DescribeError::Invalid("malformed answer".into()));
    };
    if answer.rows.is_empty() {
        return Err(DescribeError::Disclosive("no rows matched".into()));
    }
    Ok(answer
        .rows
        .iter()
        .map(|row| {
            let count = row[n].as_f64().map(|x| x.max(0.0));
            ((label(&row[r]), label(&row[c])), count)
        })
        .collect())
}

/// Pearson's statistic with (R − 1)(C − 1) degrees of freedom, and why it may be absent.
pub(super) fn chi_square(counts: &[Vec<Option<f64>>]) -> (Option<ChiSquare>, Option<String>) {
    let Some(cells) = counts
        .iter()
        .map(|row| row.iter().copied().collect::<Option<Vec<f64>>>())
        .collect::<Option<Vec<Vec<f64>>>>()
    else {
        return (
            None,
            Some("a cell was withheld (fewer than k people), so no chi-square is given".into()),
        );
    };
    let (r, c) = (cells.len(), cells.first().map_or(0, Vec::len));
    if r < 2 || c < 2 {
        return (
            None,
            Some("chi-square needs two levels on each side".into()),
        );
    }
    let row_totals: Vec<f64> = cells.iter().map(|row| row.iter().sum()).collect();
    let column_totals: Vec<f64> = (0..c)
        .map(|j| cells.iter().map(|row| row[j]).sum())
        .collect();
    let total: f64 = row_totals.iter().sum();
    let (mut statistic, mut small) = (0.0, false);
    for (i, row) in cells.iter().enumerate() {
        for (j, &observed) in row.iter().enumerate() {
            let expected = row_totals[i] * column_totals[j] / total;
            if expected <= 0.0 {
                return (None, Some("a whole row or column is empty".into()));
            }
            small |= expected < 5.0;
            statistic += (observed - expected).powi(2) / expected;
        }
    }
    let df = ((r - 1) * (c - 1)) as u64;
    let p = ChiSquared::new(df as f64).map_or(f64::NAN, |d| d.sf(statistic));
    let note = small.then(|| "some expected counts are below 5: the p-value is approximate".into());
    (Some(ChiSquare { statistic, df, p }), note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chi_square_matches_a_hand_computation() {
        // Observed [[20, 30], [30, 20]]: every expected count 25, χ² = 4 × 25/25 = 4, df 1.
        let t = vec![vec![Some(20.0), Some(30.0)], vec![Some(30.0), Some(20.0)]];
        let (x, note) = chi_square(&t);
        let x = x.unwrap();
        assert!((x.statistic - 4.0).abs() < 1e-12 && x.df == 1 && note.is_none());
        // P(χ²₁ > 4) = 0.0455003.
        assert!((x.p - 0.045_500_263_896_358_4).abs() < 1e-9, "{}", x.p);
    }

    #[test]
    fn a_withheld_cell_means_no_test() {
        let t = vec![vec![Some(20.0), None], vec![Some(30.0), Some(20.0)]];
        let (x, note) = chi_square(&t);
        assert!(x.is_none() && note.unwrap().contains("withheld"));
    }
}

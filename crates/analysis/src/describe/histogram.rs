//! Histograms on declared bins, and quantiles read off them.
//!
//! Bins are declared by the researcher, never derived from the data (data-dependent edges would
//! leak the extremes). Each site counts its rows per bin; counts add across sites. A bin with
//! fewer than k people is withheld by the ordinary small-cell rule. A quantile is interpolated
//! linearly inside the bin that holds it, the standard estimate from grouped data; in a DP study
//! the counts carry noise, so the quantiles are DP quantiles at no further privacy cost.

use std::collections::BTreeMap;

use medfed_core::describe::{Histogram, Statistics};
use medfed_core::result::QueryResult;

use super::{DescribeError, Failure, MAX_BINS, Runner, Source};

/// Declared, equal-width bins and the quantiles wanted.
pub(super) struct Bins {
    low: f64,
    width: f64,
    count: usize,
    quantiles: Vec<f64>,
}

impl Bins {
    pub(super) fn new(
        low: f64,
        width: f64,
        count: usize,
        quantiles: &[f64],
    ) -> Result<Self, DescribeError> {
        if !(low.is_finite() && width.is_finite() && width > 0.0) {
            return Err(DescribeError::Invalid(
                "low must be a number and width a positive one".into(),
            ));
        }
        if count == 0 || count > MAX_BINS {
            return Err(DescribeError::Invalid(format!(
                "{count} bins; between 1 and {MAX_BINS}"
            )));
        }
        if let Some(q) = quantiles.iter().find(|q| !(0.0..=1.0).contains(*q)) {
            return Err(DescribeError::Invalid(format!(
                "quantile {q} is not a probability"
            )));
        }
        Ok(Self {
            low,
            width,
            count,
            quantiles: quantiles.to_vec(),
        })
    }

    fn breaks(&self) -> Vec<f64> {
        (0..=self.count)
            .map(|i| self.low + i as f64 * self.width)
            .collect()
    }

    /// The site query: `bin` is -1 below the first edge, `count` at or above the last.
    fn sql(&self, source: &Source) -> String {
        let (low, width, n) = (self.low, self.width, self.count);
        let high = self.low + n as f64 * self.width;
        format!(
            "SELECT __b AS bin, COUNT(*) AS n FROM (SELECT CASE WHEN __v0 < ({low:?}) THEN -1 \
             WHEN __v0 >= ({high:?}) THEN {n} \
             ELSE LEAST(CAST(FLOOR((__v0 - ({low:?})) / ({width:?})) AS BIGINT), {last}) END \
             AS __b{person} {} WHERE __v0 IS NOT NULL) AS __h GROUP BY __b",
            source.from,
            last = n - 1,
            person = if source.person { ", person_id" } else { "" },
        )
    }
}

/// Counts per bin, then quantiles.
pub(super) async fn histogram<E, F, Fut>(
    source: &Source,
    bins: &Bins,
    runner: &mut Runner<F>,
) -> Result<Statistics, Failure<E>>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<QueryResult, E>>,
{
    let answer = runner.query(bins.sql(source)).await?;
    let (counts, below, above) = read(&answer, bins.count)?;
    let breaks = bins.breaks();
    let (quantiles, note) = quantiles(&breaks, &counts, below, above, &bins.quantiles);
    Ok(Statistics::Histogram(Histogram {
        variable: source.names[0].clone(),
        breaks,
        counts,
        below,
        above,
        quantiles,
        note,
    }))
}

type Counts = (Vec<Option<f64>>, Option<f64>, Option<f64>);

/// Bins no site had stay 0; bins withheld are `None`.
fn read(answer: &QueryResult, count: usize) -> Result<Counts, DescribeError> {
    let col = |name: &str| answer.columns.iter().position(|c| c == name);
    let (Some(b), Some(n)) = (col("bin"), col("n")) else {
        return Err(DescribeError::Invalid("malformed answer".into()));
    };
    let mut counts = vec![Some(0.0); count];
    let (mut below, mut above) = (Some(0.0), Some(0.0));
    for row in &answer.rows {
        let Some(bin) = row[b].as_i64() else {
            continue;
        };
        // A withheld count is null; DP noise can make a small count negative: it is 0 then.
        let value = row[n].as_f64().map(|x| x.max(0.0));
        match bin {
            -1 => below = value,
            i if i as usize == count => above = value,
            i if (0..count as i64).contains(&i) => counts[i as usize] = value,
            _ => return Err(DescribeError::Invalid(format!("bin {bin} out of range"))),
        }
    }
    Ok((counts, below, above))
}

type Quantiles = (BTreeMap<String, f64>, Option<String>);

/// Quantiles by linear interpolation within bins; none when a withheld bin or the open ends
/// make them unknowable.
fn quantiles(
    breaks: &[f64],
    counts: &[Option<f64>],
    below: Option<f64>,
    above: Option<f64>,
    wanted: &[f64],
) -> Quantiles {
    let mut out = BTreeMap::new();
    if wanted.is_empty() {
        return (out, None);
    }
    let (Some(below), Some(above)) = (below, above) else {
        return (out, Some(withheld()));
    };
    let Some(counts) = counts.iter().copied().collect::<Option<Vec<f64>>>() else {
        return (out, Some(withheld()));
    };
    let total = below + counts.iter().sum::<f64>() + above;
    if total <= 0.0 {
        return (out, Some("no rows in range".into()));
    }
    let mut outside = Vec::new();
    for &q in wanted {
        let target = q * total;
        let mut cumulative = below;
        let mut found = None;
        if target >= below && target <= total - above {
            for (i, &c) in counts.iter().enumerate() {
                if c > 0.0 && target <= cumulative + c {
                    let within = ((target - cumulative) / c).clamp(0.0, 1.0);
                    found = Some(breaks[i] + within * (breaks[i + 1] - breaks[i]));
                    break;
                }
                cumulative += c;
            }
        }
        match found {
            Some(x) => {
                out.insert(q.to_string(), x);
            }
            None => outside.push(q.to_string()),
        }
    }
    let note = (!outside.is_empty()).then(|| {
        format!(
            "quantiles {} fall outside the declared bins: widen them",
            outside.join(", ")
        )
    });
    (out, note)
}

fn withheld() -> String {
    "a bin was withheld (fewer than k people), so quantiles are not given: use wider bins".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_their_bin() {
        // 10 in [0,10), 30 in [10,20), 60 in [20,30).
        let breaks = [0.0, 10.0, 20.0, 30.0];
        let counts = [Some(10.0), Some(30.0), Some(60.0)];
        let (q, note) = quantiles(&breaks, &counts, Some(0.0), Some(0.0), &[0.1, 0.25, 0.5]);
        assert_eq!(note, None);
        assert!((q["0.1"] - 10.0).abs() < 1e-12);
        assert!((q["0.25"] - 15.0).abs() < 1e-12);
        assert!((q["0.5"] - (20.0 + 10.0 / 60.0 * 10.0)).abs() < 1e-12);
    }

    #[test]
    fn a_withheld_bin_or_an_open_end_gives_no_quantile() {
        let breaks = [0.0, 10.0, 20.0];
        let (q, note) = quantiles(&breaks, &[Some(10.0), None], Some(0.0), Some(0.0), &[0.5]);
        assert!(q.is_empty() && note.unwrap().contains("withheld"));
        let (q, note) = quantiles(
            &breaks,
            &[Some(10.0), Some(10.0)],
            Some(0.0),
            Some(30.0),
            &[0.5, 0.1],
        );
        assert_eq!(q.len(), 1, "{q:?}");
        assert!(note.unwrap().contains("0.5"));
    }

    #[test]
    fn bins_are_declared_and_bounded() {
        assert!(Bins::new(0.0, 0.0, 10, &[]).is_err());
        assert!(Bins::new(0.0, 1.0, MAX_BINS + 1, &[]).is_err());
        assert!(Bins::new(0.0, 1.0, 10, &[1.5]).is_err());
        let b = Bins::new(-5.0, 2.5, 4, &[0.5]).unwrap();
        assert_eq!(b.breaks(), vec![-5.0, -2.5, 0.0, 2.5, 5.0]);
    }
}

//! Summaries and correlation matrices: first the counts and sums, then sums of products
//! centred on the pooled means.

use std::fmt::Write;

use medfed_core::describe::{Correlation, Moments, Statistics};
use medfed_core::result::QueryResult;

use super::{DescribeError, Failure, Runner, Source, number};

/// n, mean, variance per variable (each over the rows where it is present).
pub(super) async fn summary<E, F, Fut>(
    source: &Source,
    k: u64,
    runner: &mut Runner<F>,
) -> Result<Statistics, Failure<E>>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<QueryResult, E>>,
{
    let p = source.names.len();
    let mut first = String::from("SELECT ");
    for i in 0..p {
        let sep = if i > 0 { ", " } else { "" };
        let _ = write!(first, "{sep}COUNT(__v{i}) AS n_{i}, SUM(__v{i}) AS s_{i}");
    }
    let _ = write!(first, " {}", source.from);
    let a = runner.query(first).await?;
    let mut counts = Vec::with_capacity(p);
    let mut means = Vec::with_capacity(p);
    for (i, name) in source.names.iter().enumerate() {
        let n = number(&a, &format!("n_{i}"))?;
        enough(name, n, k)?;
        counts.push(n);
        means.push(number(&a, &format!("s_{i}"))? / n);
    }
    let mut second = String::from("SELECT ");
    for (i, m) in means.iter().enumerate() {
        let sep = if i > 0 { ", " } else { "" };
        let _ = write!(
            second,
            "{sep}SUM((__v{i} - ({m:?})) * (__v{i} - ({m:?}))) AS q_{i}"
        );
    }
    let _ = write!(second, " {}", source.from);
    let b = runner.query(second).await?;
    let mut out = Vec::with_capacity(p);
    for (i, name) in source.names.iter().enumerate() {
        let (n, mean) = (counts[i], means[i]);
        let variance = number(&b, &format!("q_{i}"))? / (n - 1.0);
        out.push(Moments {
            variable: name.clone(),
            n: n as u64,
            mean,
            variance,
            sd: variance.sqrt(),
            std_error: (variance / n).sqrt(),
        });
    }
    Ok(Statistics::Summary { variables: out })
}

/// Pearson correlations over the rows where every variable is present.
pub(super) async fn correlation<E, F, Fut>(
    source: &Source,
    k: u64,
    runner: &mut Runner<F>,
) -> Result<Statistics, Failure<E>>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<QueryResult, E>>,
{
    let p = source.names.len();
    let complete = format!("{} WHERE {}", source.from, source.complete());
    let mut first = String::from("SELECT COUNT(*) AS n");
    for i in 0..p {
        let _ = write!(first, ", SUM(__v{i}) AS s_{i}");
    }
    let _ = write!(first, " {complete}");
    let a = runner.query(first).await?;
    let n = number(&a, "n")?;
    enough("the complete cases", n, k)?;
    let means: Vec<f64> = (0..p)
        .map(|i| number(&a, &format!("s_{i}")).map(|s| s / n))
        .collect::<Result<_, _>>()?;
    let mut second = String::from("SELECT ");
    for i in 0..p {
        for j in i..p {
            let sep = if i + j > 0 { ", " } else { "" };
            let (mi, mj) = (means[i], means[j]);
            let _ = write!(
                second,
                "{sep}SUM((__v{i} - ({mi:?})) * (__v{j} - ({mj:?}))) AS c_{i}_{j}"
            );
        }
    }
    let _ = write!(second, " {complete}");
    let b = runner.query(second).await?;
    let c = |i: usize, j: usize| {
        let (i, j) = (i.min(j), i.max(j));
        number(&b, &format!("c_{i}_{j}"))
    };
    let diagonal: Vec<f64> = (0..p).map(|i| c(i, i)).collect::<Result<_, _>>()?;
    if let Some(i) = diagonal.iter().position(|d| *d <= 0.0) {
        return Err(DescribeError::Invalid(format!(
            "{} does not vary over the complete cases",
            source.names[i]
        ))
        .into());
    }
    let sds = diagonal.iter().map(|d| (d / (n - 1.0)).sqrt()).collect();
    let matrix = (0..p)
        .map(|i| {
            (0..p)
                .map(|j| {
                    if i == j {
                        Ok(1.0)
                    } else {
                        c(i, j).map(|cij| cij / (diagonal[i] * diagonal[j]).sqrt())
                    }
                })
                .collect::<Result<Vec<f64>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Statistics::Correlation(Correlation {
        variables: source.names.clone(),
        n: n as u64,
        means,
        sds,
        matrix,
    }))
}

/// A statistic over fewer than k rows (or fewer than two: no variance) is not released; nor is
/// the small count itself said.
fn enough(what: &str, n: f64, k: u64) -> Result<(), DescribeError> {
    if n < k as f64 || n < 2.0 {
        return Err(DescribeError::Disclosive(format!(
            "{what}: fewer than k = {} rows",
            k.max(2)
        )));
    }
    Ok(())
}

//! Kaplan–Meier survival curves, federated: counts per declared time bin from every site.
//!
//! The local step is one aggregate query: per group, the people still followed at each bin's
//! start (`COUNT(*) FILTER (WHERE t >= start)`) and the events inside each bin. Counts add up
//! across sites, so the hub's product-limit estimate equals the pooled one on the same bins
//! (times within a bin are tied at its end, censorings after events, as `survfit` treats
//! ties). Disclosure: a group of fewer than k people is withheld (by the ordinary small-cell
//! rule, at each site and at the hub), and each curve stops where fewer than k are still at
//! risk: the tail of a curve is where single patients become visible.

use std::fmt::Write;

use datafusion::execution::SessionState;
use medfed_core::result::QueryResult;
use medfed_core::survival::{KmBin, KmCurve, KmFit};
use serde::{Deserialize, Serialize};

use crate::variables::{self, VariableError};

/// Most bins a curve may have (each is two counts per group in the sites' answer).
pub const MAX_BINS: usize = 400;

/// What a researcher asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KmSpec {
    /// Table with one row per person (or per episode).
    pub table: String,
    /// Follow-up time column (numeric: days, months, …).
    pub time: String,
    /// Event indicator column: 1 event, 0 censored.
    pub event: String,
    /// Curves per value of this column.
    #[serde(default)]
    pub group: Option<String>,
    /// Bin width in the time column's unit.
    pub bin_width: f64,
    /// End of the last bin.
    pub max_time: f64,
    /// SQL condition selecting the rows to use.
    #[serde(default, rename = "where")]
    pub filter: Option<String>,
}

/// Why a curve cannot be estimated or released.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum KmError {
    /// The request itself is wrong.
    #[error("{0}")]
    Invalid(String),
    /// Releasing it would disclose individuals.
    #[error("refused (disclosure control): {0}")]
    Disclosive(String),
}

impl KmSpec {
    /// Bin starts, then the last bin's end.
    pub fn breaks(&self) -> Result<Vec<f64>, KmError> {
        let (w, max) = (self.bin_width, self.max_time);
        if !(w.is_finite() && w > 0.0 && max.is_finite() && max > 0.0) {
            return Err(KmError::Invalid(
                "bin_width and max_time must be positive".into(),
            ));
        }
        let bins = (max / w).ceil() as usize;
        if bins > MAX_BINS {
            return Err(KmError::Invalid(format!(
                "{bins} bins; at most {MAX_BINS}: widen the bins or shorten max_time"
            )));
        }
        Ok((0..=bins).map(|i| i as f64 * w).collect())
    }

    /// Checks the columns against the catalogue and returns the site query.
    pub async fn plan(&self, state: &SessionState) -> Result<String, KmError> {
        variables::check_filter(self.filter.as_deref()).map_err(KmError::Invalid)?;
        let mut columns = vec![self.time.clone(), self.event.clone()];
        columns.extend(self.group.clone());
        let types = variables::resolve(state, &self.table, &columns)
            .await
            .map_err(|e| match e {
                VariableError::Identifier(_) => KmError::Disclosive(e.to_string()),
                VariableError::Unknown(m) => KmError::Invalid(m),
            })?;
        for c in [&self.time, &self.event] {
            if !variables::is_numeric(&types[&c.to_ascii_lowercase()]) {
                return Err(KmError::Invalid(format!("{c} must be a number")));
            }
        }
        self.sql()
    }

    fn sql(&self) -> Result<String, KmError> {
        let breaks = self.breaks()?;
        let mut s = String::from("SELECT ");
        if let Some(g) = &self.group {
            let _ = write!(s, "{g} AS grp, ");
        }
        s.push_str("COUNT(*) AS n");
        for (i, pair) in breaks.windows(2).enumerate() {
            let (lo, hi) = (pair[0], pair[1]);
            let _ = write!(
                s,
                ", COUNT(*) FILTER (WHERE __t >= {lo:?}) AS r_{i}, \
                 COUNT(*) FILTER (WHERE __e = 1 AND __t >= {lo:?} AND __t < {hi:?}) AS d_{i}"
            );
        }
        let mut wher = format!("{} IS NOT NULL AND {} IS NOT NULL", self.time, self.event);
        if let Some(g) = &self.group {
            let _ = write!(wher, " AND {g} IS NOT NULL");
        }
        if let Some(f) = &self.filter {
            let _ = write!(wher, " AND ({f})");
        }
        let _ = write!(
            s,
            " FROM (SELECT *, CAST({} AS DOUBLE) AS __t, CAST({} AS DOUBLE) AS __e FROM {} \
             WHERE {wher}) AS __km",
            self.time, self.event, self.table
        );
        if let Some(g) = &self.group {
            let _ = write!(s, " GROUP BY {g}");
        }
        Ok(s)
    }

    /// The curves from the network's answer to [`Self::plan`]'s query.
    pub fn curves(&self, answer: &QueryResult, min_cell_count: u64) -> Result<KmFit, KmError> {
        let breaks = self.breaks()?;
        let col = |name: &str| answer.columns.iter().position(|c| c == name);
        let n_at = col("n").ok_or_else(|| KmError::Invalid("malformed answer".into()))?;
        let suppressed: Vec<usize> = answer.privacy.suppressed.iter().map(|s| s.row).collect();
        let (mut curves, mut withheld) = (Vec::new(), Vec::new());
        for (row_index, row) in answer.rows.iter().enumerate() {
            let label = match col("grp") {
                Some(i) => match &row[i] {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                },
                None => "all".into(),
            };
            let Some(n) = row[n_at]
                .as_u64()
                .filter(|_| !suppressed.contains(&row_index))
            else {
                withheld.push(label);
                continue;
            };
            let count = |name: String| col(&name).and_then(|i| row[i].as_u64()).unwrap_or(0);
            curves.push(curve(label, n, &breaks, count, min_cell_count));
        }
        if curves.is_empty() {
            return Err(KmError::Disclosive(format!(
                "every group has fewer than k = {min_cell_count} people"
            )));
        }
        curves.sort_by(|a, b| a.group.cmp(&b.group));
        Ok(KmFit {
            time: self.time.clone(),
            event: self.event.clone(),
            group: self.group.clone(),
            curves,
            withheld_groups: withheld,
            sites: answer.sites.clone(),
            privacy: answer.privacy.clone(),
        })
    }
}

/// The product-limit estimate over `breaks` from at-risk (`r_i`) and event (`d_i`) counts.
fn curve(group: String, n: u64, breaks: &[f64], count: impl Fn(String) -> u64, k: u64) -> KmCurve {
    let (mut survival, mut greenwood) = (1.0f64, 0.0f64);
    let mut bins = Vec::new();
    let mut truncated_at = None;
    for (i, pair) in breaks.windows(2).enumerate() {
        let (at_risk, events) = (count(format!("r_{i}")), count(format!("d_{i}")));
        if at_risk < k.max(1) {
            truncated_at = (at_risk > 0).then_some(pair[0]);
            break;
        }
        let (r, d) = (at_risk as f64, events as f64);
        survival *= 1.0 - d / r;
        if r > d {
            greenwood += d / (r * (r - d));
        }
        let half = 1.959963984540054 * greenwood.sqrt();
        bins.push(KmBin {
            start: pair[0],
            end: pair[1],
            at_risk,
            events,
            survival,
            lower: survival * (-half).exp(),
            upper: (survival * half.exp()).min(1.0),
        });
    }
    KmCurve {
        group,
        n,
        bins,
        truncated_at,
    }
}

/// The same estimate from rows `(time, event)` in one process: the reference federated curves
/// are checked against.
pub fn pooled_curve(rows: &[(f64, bool)], breaks: &[f64], k: u64) -> KmCurve {
    let count = |name: String| {
        let (kind, i) = name.split_at(2);
        let i: usize = i.parse().expect("bin index");
        let (lo, hi) = (breaks[i], breaks[i + 1]);
        rows.iter()
            .filter(|(t, e)| {
                if kind == "r_" {
                    *t >= lo
                } else {
                    *e && *t >= lo && *t < hi
                }
            })
            .count() as u64
    };
    curve("all".into(), rows.len() as u64, breaks, count, k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_limit_with_greenwood_bands_and_truncation() {
        // 20 people: event times 1..=10 for the first ten, censored at 5 for the rest.
        let mut rows: Vec<(f64, bool)> = (1..=10).map(|t| (t as f64 - 0.5, true)).collect();
        rows.extend((0..10).map(|_| (4.5, false)));
        let breaks: Vec<f64> = (0..=10).map(f64::from).collect();
        let c = pooled_curve(&rows, &breaks, 5);
        // Bin 0: 20 at risk, 1 event → S = 19/20.
        assert_eq!((c.bins[0].at_risk, c.bins[0].events), (20, 1));
        assert!((c.bins[0].survival - 0.95).abs() < 1e-15);
        // Bin 4 [4,5): 16 at risk (10 censored at 4.5 still count), 1 event.
        assert_eq!(c.bins[4].at_risk, 16);
        let s4: f64 = [
            19.0 / 20.0,
            18.0 / 19.0,
            17.0 / 18.0,
            16.0 / 17.0,
            15.0 / 16.0,
        ]
        .iter()
        .product();
        assert!((c.bins[4].survival - s4).abs() < 1e-12);
        // After bin 4 only 5 remain: k = 5 keeps bin 5, then 4 at risk truncates.
        assert_eq!(c.bins.len(), 6);
        assert_eq!(c.truncated_at, Some(6.0));
        let b = &c.bins[1];
        assert!(b.lower < b.survival && b.survival < b.upper && b.upper <= 1.0);
    }

    #[test]
    fn the_site_query_counts_per_bin_and_refuses_bad_requests() {
        let spec = KmSpec {
            table: "cohort".into(),
            time: "days".into(),
            event: "died".into(),
            group: Some("arm".into()),
            bin_width: 30.0,
            max_time: 90.0,
            filter: None,
        };
        let sql = spec.sql().unwrap();
        assert!(
            sql.contains("COUNT(*) FILTER (WHERE __t >= 60.0) AS r_2"),
            "{sql}"
        );
        assert!(sql.ends_with("GROUP BY arm"), "{sql}");
        let too_many = KmSpec {
            bin_width: 0.1,
            ..spec.clone()
        };
        assert!(
            too_many
                .breaks()
                .unwrap_err()
                .to_string()
                .contains("at most")
        );
        let zero = KmSpec {
            bin_width: 0.0,
            ..spec
        };
        assert!(zero.breaks().is_err());
    }
}

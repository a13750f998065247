//! From a formula to the model's columns and the SQL each step sends to the sites.
//!
//! A model column is a SQL expression over one row (`CAST(age AS DOUBLE)`, a 0/1 dummy for a
//! level, or a product for an interaction), named as R names it. An IRLS iteration is then one
//! aggregate query: `SUM(w·xⱼ·xₖ)` for j ≤ k (XᵀWX), `SUM(w·z·xⱼ)` (XᵀWz) and `SUM(deviance)`,
//! with the coefficients written into the linear predictor as literals. Covariates appear by
//! their own column names inside every SUM, so the SQL checker at the hub and at each site sees
//! exactly which columns are summed (identifiers are refused there as everywhere).

use std::fmt::Write;

use super::family::{Family, FamilySql, ln_factorial_sql};
use super::formula::{Formula, Var};

/// How a variable enters the model.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// A number, used as it is.
    Numeric,
    /// A boolean: one dummy named `<var>TRUE`.
    Boolean,
    /// Categories: one dummy per level but the first (the reference), as R's treatment contrasts.
    Categorical(Vec<Level>),
}

/// One level of a categorical variable: its SQL literal and its name in coefficient labels.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Level {
    pub sql: String,
    pub label: String,
}

/// One column of the design matrix.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ModelColumn {
    /// R's coefficient name.
    pub name: String,
    /// The row-level expression; `None` for the intercept.
    pub sql: Option<String>,
}

/// The model's columns and where its rows come from.
#[derive(Debug, Clone)]
pub(crate) struct Design {
    pub columns: Vec<ModelColumn>,
    /// `FROM` clause: the table, complete cases only, the researcher's filter.
    source: String,
    table: String,
    /// The `WHERE` condition of `source`.
    row_filter: String,
    y: String,
    prior_weight: String,
    offset: String,
}

impl Design {
    /// The design for `formula` over `table`, with each variable's kind (by column name).
    pub fn new(
        formula: &Formula,
        table: &str,
        weights: Option<&str>,
        filter: Option<&str>,
        kind_of: &dyn Fn(&Var) -> Kind,
    ) -> Self {
        let mut columns = Vec::new();
        if formula.intercept {
            columns.push(ModelColumn {
                name: "(Intercept)".into(),
                sql: None,
            });
        }
        for term in &formula.terms {
            // Cartesian product of each variable's columns, names joined with ':'.
            let mut parts: Vec<(String, String)> = vec![(String::new(), String::new())];
            for v in term {
                let own: Vec<(String, String)> = match kind_of(v) {
                    Kind::Numeric => vec![(v.label(), format!("CAST({} AS DOUBLE)", v.column))],
                    Kind::Boolean => vec![(
                        format!("{}TRUE", v.label()),
                        format!("CASE WHEN {} THEN 1.0 ELSE 0.0 END", v.column),
                    )],
                    Kind::Categorical(levels) => levels
                        .iter()
                        .skip(1)
                        .map(|l| {
                            (
                                format!("{}{}", v.label(), l.label),
                                format!("CASE WHEN {} = {} THEN 1.0 ELSE 0.0 END", v.column, l.sql),
                            )
                        })
                        .collect(),
                };
                parts = parts
                    .iter()
                    .flat_map(|(n, s)| {
                        own.iter().map(move |(n2, s2)| {
                            if n.is_empty() {
                                (n2.clone(), format!("({s2})"))
                            } else {
                                (format!("{n}:{n2}"), format!("{s} * ({s2})"))
                            }
                        })
                    })
                    .collect();
            }
            columns.extend(parts.into_iter().map(|(name, sql)| ModelColumn {
                name,
                sql: Some(sql),
            }));
        }
        let mut needed: Vec<String> = formula.columns();
        needed.extend(weights.map(str::to_string));
        let complete: Vec<String> = needed.iter().map(|c| format!("{c} IS NOT NULL")).collect();
        let mut row_filter = complete.join(" AND ");
        if let Some(f) = filter {
            let _ = write!(row_filter, " AND ({f})");
        }
        let source = format!("SELECT * FROM {table} WHERE {row_filter}");
        let offset = if formula.offsets.is_empty() {
            "0.0".to_string()
        } else {
            formula
                .offsets
                .iter()
                .map(|(c, log)| {
                    if *log {
                        format!("ln(CAST({c} AS DOUBLE))")
                    } else {
                        format!("CAST({c} AS DOUBLE)")
                    }
                })
                .collect::<Vec<_>>()
                .join(" + ")
        };
        Design {
            columns,
            source,
            table: table.to_string(),
            row_filter,
            y: format!("CAST({} AS DOUBLE)", formula.response),
            prior_weight: weights.map_or("1.0".into(), |w| format!("CAST({w} AS DOUBLE)")),
            offset,
        }
    }

    /// Rows with the response, prior weight and offset named `__y`, `__pw`, `__o`.
    fn base(&self) -> String {
        format!(
            "SELECT *, {} AS __y, {} AS __pw, {} AS __o FROM ({}) AS __glm_src",
            self.y, self.prior_weight, self.offset, self.source
        )
    }

    /// Complete-case rows, for the level queries (before the columns are known).
    pub fn level_sql(&self, column: &str) -> String {
        format!(
            "SELECT {column} AS level, COUNT(*) AS n FROM ({}) AS __glm_src GROUP BY {column}",
            self.source
        )
    }

    /// The response's distinct values (binomial: must be 0 and 1).
    pub fn response_levels_sql(&self) -> String {
        format!(
            "SELECT __y AS level, COUNT(*) AS n FROM ({}) AS __glm_rows GROUP BY __y",
            self.base()
        )
    }

    /// Observation count and the sums starting values and the AIC need.
    pub fn summary_sql(&self, family: Family, weighted: bool) -> String {
        let mut s = String::from(
            "SELECT COUNT(*) AS n, SUM(__pw) AS sw, SUM(__pw * __y) AS swy, SUM(__pw * __o) AS swo",
        );
        if weighted {
            s.push_str(", SUM(ln(__pw)) AS slw, COUNT(*) FILTER (WHERE __pw <= 0) AS bad_w");
        }
        match family {
            Family::Poisson => {
                let _ = write!(
                    s,
                    ", SUM(__pw * CASE WHEN __y > 0 THEN __y * ln(__y) ELSE 0.0 END) AS swylny, \
                     SUM(__pw * {}) AS swlf, \
                     COUNT(*) FILTER (WHERE __y < 0 OR __y <> floor(__y)) AS bad_y",
                    ln_factorial_sql("__y")
                );
            }
            Family::Binomial => {
                s.push_str(", COUNT(*) FILTER (WHERE __y <> 0 AND __y <> 1) AS bad_y");
            }
            Family::Gaussian => {}
        }
        let _ = write!(s, " FROM ({}) AS __glm_rows", self.base());
        s
    }

    /// The linear predictor at `beta`, offset included.
    fn eta(&self, beta: &[f64]) -> String {
        let mut s = format!("({})", self.offset);
        for (c, b) in self.columns.iter().zip(beta) {
            match &c.sql {
                None => {
                    let _ = write!(s, " + ({b:?})");
                }
                Some(x) => {
                    let _ = write!(s, " + ({b:?}) * {x}");
                }
            }
        }
        s
    }

    /// One IRLS iteration at `beta`: n, XᵀWX (upper triangle, row-major), XᵀWz, deviance.
    /// With `deviance_only`, just n and the deviance (the null model's).
    pub fn iteration_sql(&self, family: Family, beta: &[f64], deviance_only: bool) -> String {
        let [w, wz, dev] = family.row_sql();
        let mut out = String::from("SELECT COUNT(*) AS n");
        if !deviance_only {
            let times = |weight: &str, c: &ModelColumn| match &c.sql {
                None => weight.to_string(),
                Some(x) => format!("{weight} * {x}"),
            };
            for (j, cj) in self.columns.iter().enumerate() {
                for (k, ck) in self.columns.iter().enumerate().skip(j) {
                    let arg = match (&cj.sql, &ck.sql) {
                        (None, _) => times("__w", ck),
                        (Some(_), None) => times("__w", cj),
                        (Some(x), Some(y)) if x == y => format!("__w * {x} * {x}"),
                        (Some(x), Some(y)) => format!("__w * {x} * {y}"),
                    };
                    let _ = write!(out, ", SUM({arg}) AS h_{j}_{k}");
                }
            }
            for (j, c) in self.columns.iter().enumerate() {
                let _ = write!(out, ", SUM({}) AS g_{j}", times("__wz", c));
            }
        }
        let _ = write!(
            out,
            ", SUM(__dev) AS dev FROM (SELECT *, {w} AS __w, {wz} AS __wz, {dev} AS __dev FROM \
             (SELECT *, {mu} AS __mu FROM (SELECT *, {eta} AS __eta FROM ({base}) AS __glm_rows) \
             AS __glm_eta) AS __glm_mu) AS __glm_w",
            mu = family.mu_sql(),
            eta = self.eta(beta),
            base = self.base(),
        );
        out
    }

    /// Count, mean and mean square of each model column but the intercept (`n`, `m_j`, `q_j`,
    /// j counting those columns): the network-wide standardisation of learned models, as sums
    /// that merge exactly — also under secure aggregation, which hides each site's own SD.
    pub fn moments_sql(&self) -> String {
        let mut s = String::from("SELECT COUNT(*) AS n");
        for (j, x) in self
            .columns
            .iter()
            .filter_map(|c| c.sql.as_ref())
            .enumerate()
        {
            let _ = write!(s, ", AVG({x}) AS m_{j}, AVG(({x}) * ({x})) AS q_{j}");
        }
        let _ = write!(s, " FROM ({}) AS __glm_rows", self.base());
        s
    }

    /// The response as a SQL expression.
    pub fn response_sql(&self) -> &str {
        &self.y
    }

    /// The rows of the GLM kernel: response, prior weight, offset, covariates.
    pub fn glm_row_source(&self) -> medfed_core::kernel::RowSource {
        self.row_source(&[
            self.y.clone(),
            self.prior_weight.clone(),
            self.offset.clone(),
        ])
    }

    /// The design's rows for a site kernel: the `leading` expressions, then one column per
    /// model column but the intercept.
    pub fn row_source(&self, leading: &[String]) -> medfed_core::kernel::RowSource {
        let mut columns = leading.to_vec();
        columns.extend(self.columns.iter().filter_map(|c| c.sql.clone()));
        medfed_core::kernel::RowSource {
            table: self.table.clone(),
            columns,
            filter: Some(self.row_filter.clone()),
        }
    }

    /// Row-level design matrix, response, prior weight and offset: for the pooled fit in one
    /// process only (never sent to a site; the checker would refuse it anyway).
    pub fn rows_sql(&self) -> String {
        let mut s = String::from("SELECT __y, __pw, __o");
        for (j, c) in self.columns.iter().enumerate() {
            let _ = write!(s, ", {} AS x{j}", c.sql.as_deref().unwrap_or("1.0"));
        }
        let _ = write!(s, " FROM ({}) AS __glm_rows", self.base());
        s
    }
}

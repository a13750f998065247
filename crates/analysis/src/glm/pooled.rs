//! The same model fitted in one process on pooled rows: the baseline federated fits are checked
//! against (tests) and timed against (`medfed bench glm`).
//!
//! Independent of the federated path's arithmetic: it reads the design matrix row by row and
//! runs dense IRLS with nalgebra (Xᵀ·diag(w)·X by matrix product), where the federated fit only
//! ever sees the sums its SQL computes. Only the coding of the design (dummies, interactions) is
//! shared. Row-level by nature: never for use on a site's behalf over the network.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type, UInt64Type};
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use medfed_core::result::QueryResult;
use nalgebra::{DMatrix, DVector};

use super::{Family, FitError, GlmError, GlmSpec, MAX_ITERATIONS, TOLERANCE, plan};

/// A pooled fit's estimates.
#[derive(Debug, Clone)]
pub struct PooledFit {
    /// Coefficient names, in model order.
    pub names: Vec<String>,
    /// Estimates.
    pub beta: Vec<f64>,
    /// Standard errors (dispersion-scaled for gaussian).
    pub std_errors: Vec<f64>,
    /// Residual deviance.
    pub deviance: f64,
    /// Observations.
    pub n: usize,
    /// IRLS iterations.
    pub iterations: u32,
}

/// Runs `sql` on `ctx` and returns its rows as a [`QueryResult`] (no disclosure control).
pub async fn run_local(ctx: &SessionContext, sql: &str) -> Result<QueryResult, DataFusionError> {
    let batches = ctx.sql(sql).await?.collect().await?;
    let columns = match batches.first() {
        Some(b) => b
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect(),
        None => Vec::new(),
    };
    let mut rows = Vec::new();
    for b in &batches {
        let cols = b
            .columns()
            .iter()
            .map(|c| json_column(c.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        for i in 0..b.num_rows() {
            rows.push(cols.iter().map(|c| c[i].clone()).collect());
        }
    }
    Ok(QueryResult {
        columns,
        rows,
        sites: Default::default(),
        privacy: Default::default(),
    })
}

fn json_column(c: &dyn Array) -> Result<Vec<serde_json::Value>, DataFusionError> {
    use arrow::compute::cast;
    use serde_json::Value;
    /// Each row as JSON (null where invalid) through `value`.
    fn rows(a: &dyn Array, value: impl Fn(usize) -> Value) -> Vec<Value> {
        (0..a.len())
            .map(|i| if a.is_valid(i) { value(i) } else { Value::Null })
            .collect()
    }
    let t = c.data_type();
    Ok(if t.is_integer() && !t.is_unsigned_integer() {
        let a = cast(c, &DataType::Int64)?;
        let p = a.as_primitive::<Int64Type>();
        rows(&a, |i| p.value(i).into())
    } else if t.is_unsigned_integer() {
        let a = cast(c, &DataType::UInt64)?;
        let p = a.as_primitive::<UInt64Type>();
        rows(&a, |i| p.value(i).into())
    } else if t.is_numeric() {
        let a = cast(c, &DataType::Float64)?;
        let p = a.as_primitive::<Float64Type>();
        rows(&a, |i| p.value(i).into())
    } else if *t == DataType::Boolean {
        let b = c.as_boolean();
        rows(c, |i| b.value(i).into())
    } else {
        let a = cast(c, &DataType::Utf8)?;
        let p = a.as_string::<i32>();
        rows(&a, |i| p.value(i).into())
    })
}

/// Fits `spec` on the rows of `ctx` in this process.
pub async fn fit(
    ctx: &SessionContext,
    spec: &GlmSpec,
) -> Result<PooledFit, FitError<DataFusionError>> {
    let state = ctx.state();
    let mut run = |_, sql: String| async move { run_local(ctx, &sql).await };
    let planned = plan(&state, spec, &mut run).await?;
    let design = planned.design;
    let batches = ctx
        .sql(&design.rows_sql())
        .await
        .map_err(FitError::Run)?
        .collect()
        .await
        .map_err(FitError::Run)?;
    let p = design.columns.len();
    let (x, y, w, o) = matrices(&batches, p).map_err(FitError::Run)?;
    let names = design.columns.iter().map(|c| c.name.clone()).collect();
    Ok(irls(names, &x, &y, &w, &o, spec.family)?)
}

type Rows = (DMatrix<f64>, DVector<f64>, DVector<f64>, DVector<f64>);

fn matrices(batches: &[RecordBatch], p: usize) -> Result<Rows, DataFusionError> {
    let n: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut x = DMatrix::zeros(n, p);
    let mut vectors = [DVector::zeros(n), DVector::zeros(n), DVector::zeros(n)];
    let mut at = 0;
    for b in batches {
        let col = |i: usize| -> Result<Vec<f64>, DataFusionError> {
            let a = arrow::compute::cast(b.column(i), &DataType::Float64)?;
            Ok(a.as_primitive::<Float64Type>().values().to_vec())
        };
        for (k, v) in vectors.iter_mut().enumerate() {
            for (i, value) in col(k)?.into_iter().enumerate() {
                v[at + i] = value;
            }
        }
        for j in 0..p {
            for (i, value) in col(3 + j)?.into_iter().enumerate() {
                x[(at + i, j)] = value;
            }
        }
        at += b.num_rows();
    }
    let [y, w, o] = vectors;
    Ok((x, y, w, o))
}

/// Dense IRLS from β = 0 (intercept at the link of the mean when the first column is constant).
fn irls(
    names: Vec<String>,
    x: &DMatrix<f64>,
    y: &DVector<f64>,
    w: &DVector<f64>,
    o: &DVector<f64>,
    family: Family,
) -> Result<PooledFit, GlmError> {
    let (n, p) = x.shape();
    let mut beta = DVector::zeros(p);
    if names.first().is_some_and(|c| c == "(Intercept)") {
        let mean = y.dot(w) / w.sum();
        beta[0] = family.link_of(mean);
    }
    let singular = || GlmError::Numeric("singular design".into());
    let mut iterations = 0;
    loop {
        iterations += 1;
        let eta = x * &beta + o;
        let (mut weight, mut wz, mut dev) = (DVector::zeros(n), DVector::zeros(n), 0.0);
        for i in 0..n {
            let (wi, wzi, devi) = family.working(eta[i], y[i], w[i], o[i]);
            weight[i] = wi;
            wz[i] = wzi;
            dev += devi;
        }
        let mut xw = x.clone();
        for (i, mut row) in xw.row_iter_mut().enumerate() {
            row *= weight[i];
        }
        let h = x.tr_mul(&xw);
        let g = x.tr_mul(&wz);
        let chol = h.clone().cholesky().ok_or_else(singular)?;
        let next = chol.solve(&g);
        let moved = next
            .iter()
            .zip(beta.iter())
            .all(|(b1, b0)| (b1 - b0).abs() <= TOLERANCE * (b0.abs() + 0.1));
        beta = next;
        if moved || iterations >= MAX_ITERATIONS {
            let dispersion = if family.estimates_dispersion() {
                dev / (n - p) as f64
            } else {
                1.0
            };
            let inv = chol.inverse();
            return Ok(PooledFit {
                names,
                std_errors: (0..p).map(|j| (dispersion * inv[(j, j)]).sqrt()).collect(),
                beta: beta.iter().copied().collect(),
                deviance: dev,
                n,
                iterations,
            });
        }
    }
}

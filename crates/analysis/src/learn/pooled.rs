//! The pooled optimum FedAvg is checked against: L2-penalised logistic regression on all rows
//! in one process, by Newton's method (exact to rounding, unlike any SGD).
//!
//! The objective is the one every site descends: mean log-loss + λ/2·‖w‖² (not the intercept).

use nalgebra::{DMatrix, DVector};

/// The minimiser over rows `y` (0/1) and feature columns `x` (already standardised).
pub fn logistic_optimum(y: &[f64], x: &[Vec<f64>], l2: f64) -> Option<Vec<f64>> {
    let (n, p) = (y.len(), x.len() + 1);
    let row = |i: usize| -> DVector<f64> {
        DVector::from_iterator(p, std::iter::once(1.0).chain(x.iter().map(|c| c[i])))
    };
    let mut w = DVector::zeros(p);
    for _ in 0..100 {
        let mut grad = DVector::zeros(p);
        let mut hess = DMatrix::zeros(p, p);
        for (i, yi) in y.iter().enumerate() {
            let xi = row(i);
            let mu = 1.0 / (1.0 + (-xi.dot(&w)).exp());
            grad += &xi * (mu - yi);
            hess += &xi * xi.transpose() * (mu * (1.0 - mu));
        }
        grad /= n as f64;
        hess /= n as f64;
        for j in 1..p {
            grad[j] += l2 * w[j];
            hess[(j, j)] += l2;
        }
        let step = hess.cholesky()?.solve(&grad);
        w -= &step;
        if step.norm() < 1e-13 {
            return Some(w.iter().copied().collect());
        }
    }
    None
}

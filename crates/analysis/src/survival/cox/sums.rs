//! One stratum's Cox partial likelihood, its score and information, in one pass over the rows
//! in descending time order (risk sets are running sums), O(n·p²).
//!
//! Two exact rescalings keep `exp(xβ)` finite without changing any result: covariates are
//! centred on the stratum's means (a shift of x within a stratum cancels in every ratio and in
//! the log-likelihood), and the linear predictor is shifted by its maximum (added back to
//! `log S0`). Ties: Efron's approximation removes a growing share of the tied events' weight
//! from the risk set for each of them; Breslow's keeps it whole.

use medfed_core::kernel::{CoxSums, Ties};

/// A stratum's rows, sorted by descending time and centred, ready for repeated evaluation.
#[derive(Debug, Clone)]
pub struct CoxRows {
    time: Vec<f64>,
    event: Vec<bool>,
    /// Row-major n × p, centred.
    x: Vec<f64>,
    p: usize,
}

impl CoxRows {
    /// The rows given column by column: `time`, `event` (1/0), one vector per covariate.
    pub fn new(time: &[f64], event: &[f64], covariates: &[Vec<f64>]) -> Self {
        let (n, p) = (time.len(), covariates.len());
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| time[b].total_cmp(&time[a]));
        let means: Vec<f64> = covariates
            .iter()
            .map(|c| c.iter().sum::<f64>() / n.max(1) as f64)
            .collect();
        let mut x = Vec::with_capacity(n * p);
        for &i in &order {
            x.extend(covariates.iter().zip(&means).map(|(c, m)| c[i] - m));
        }
        Self {
            time: order.iter().map(|&i| time[i]).collect(),
            event: order.iter().map(|&i| event[i] == 1.0).collect(),
            x,
            p,
        }
    }

    /// Rows in the stratum.
    pub fn len(&self) -> usize {
        self.time.len()
    }

    /// True without rows.
    pub fn is_empty(&self) -> bool {
        self.time.is_empty()
    }

    /// The partial log-likelihood at `beta` with its score and information.
    pub fn sums(&self, beta: &[f64], ties: Ties) -> CoxSums {
        let (n, p) = (self.len(), self.p);
        let row = |i: usize| &self.x[i * p..(i + 1) * p];
        let eta: Vec<f64> = (0..n)
            .map(|i| row(i).iter().zip(beta).map(|(x, b)| x * b).sum())
            .collect();
        let shift = eta.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let shift = if shift.is_finite() { shift } else { 0.0 };
        let w: Vec<f64> = eta.iter().map(|e| (e - shift).exp()).collect();

        // Risk-set sums S0, S1, S2 (upper triangle) and the tied events' D0, D1, D2.
        let (mut s0, mut s1, mut s2) = (0.0, vec![0.0; p], vec![0.0; p * p]);
        let (mut d1, mut d2) = (vec![0.0; p], vec![0.0; p * p]);
        let mut out = CoxSums {
            n: n as u64,
            events: 0,
            loglik: 0.0,
            score: vec![0.0; p],
            information: vec![0.0; p * p],
        };
        let (mut phi1, mut phi2) = (vec![0.0; p], vec![0.0; p * p]);
        let mut i = 0;
        while i < n {
            let t = self.time[i];
            let mut end = i;
            let (mut d, mut d0) = (0usize, 0.0);
            d1.iter_mut().for_each(|v| *v = 0.0);
            d2.iter_mut().for_each(|v| *v = 0.0);
            while end < n && self.time[end] == t {
                let (xi, wi) = (row(end), w[end]);
                s0 += wi;
                for j in 0..p {
                    s1[j] += wi * xi[j];
                    for k in j..p {
                        s2[j * p + k] += wi * xi[j] * xi[k];
                    }
                }
                if self.event[end] {
                    d += 1;
                    d0 += wi;
                    out.loglik += eta[end];
                    for j in 0..p {
                        out.score[j] += xi[j];
                        d1[j] += wi * xi[j];
                        for k in j..p {
                            d2[j * p + k] += wi * xi[j] * xi[k];
                        }
                    }
                }
                end += 1;
            }
            for l in 0..d {
                let a = match ties {
                    Ties::Efron => l as f64 / d as f64,
                    Ties::Breslow => 0.0,
                };
                let phi0 = s0 - a * d0;
                for j in 0..p {
                    phi1[j] = s1[j] - a * d1[j];
                    for k in j..p {
                        phi2[j * p + k] = s2[j * p + k] - a * d2[j * p + k];
                    }
                }
                out.loglik -= phi0.ln() + shift;
                for j in 0..p {
                    let mj = phi1[j] / phi0;
                    out.score[j] -= mj;
                    for k in j..p {
                        out.information[j * p + k] += phi2[j * p + k] / phi0 - mj * phi1[k] / phi0;
                    }
                }
            }
            out.events += d as u64;
            i = end;
        }
        for j in 0..p {
            for k in 0..j {
                out.information[j * p + k] = out.information[k * p + j];
            }
        }
        out
    }
}

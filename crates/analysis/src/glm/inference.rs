//! The hub's algebra: solve each iteration's normal equations, and Wald inference at the end.

use medfed_core::glm::{Coefficient, Coefficients};
use medfed_core::kernel::{GlmSums, KernelAnswer};
use nalgebra::{DMatrix, DVector};
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

use super::{Answer, Family, GlmError};
use crate::kernel::KernelRound;

/// One iteration's network-wide sums.
#[derive(Debug, Clone)]
pub(crate) struct Sums {
    /// Observations.
    pub n: u64,
    /// XᵀWX (symmetric).
    pub xtwx: DMatrix<f64>,
    /// XᵀWz.
    pub xtwz: DVector<f64>,
    /// Deviance at the iteration's coefficients.
    pub deviance: f64,
}

impl Sums {
    /// Reads the `h_j_k`, `g_j`, `n` and `dev` columns of an iteration's answer.
    pub fn read(a: &Answer<'_>, p: usize) -> Result<Self, GlmError> {
        let mut xtwx = DMatrix::zeros(p, p);
        for j in 0..p {
            for k in j..p {
                let h = a.number(&format!("h_{j}_{k}"))?;
                xtwx[(j, k)] = h;
                xtwx[(k, j)] = h;
            }
        }
        let xtwz = DVector::from_iterator(
            p,
            (0..p)
                .map(|j| a.number(&format!("g_{j}")))
                .collect::<Result<Vec<_>, _>>()?,
        );
        Ok(Sums {
            n: a.count("n")?,
            xtwx,
            xtwz,
            deviance: a.number("dev")?,
        })
    }

    /// The network's sums of a GLM kernel step (each site's [`GlmSums`] added up).
    pub fn from_round(round: &KernelRound, p: usize) -> Result<Self, GlmError> {
        let mut total = GlmSums {
            xtwx: vec![0.0; p * p],
            xtwz: vec![0.0; p],
            ..GlmSums::default()
        };
        for answer in round.answers.values() {
            let KernelAnswer::Glm(s) = answer else {
                return Err(GlmError::Numeric(
                    "a site answered another kernel's sums".into(),
                ));
            };
            if s.xtwx.len() != p * p || s.xtwz.len() != p {
                return Err(GlmError::Numeric(
                    "a site answered sums of the wrong size".into(),
                ));
            }
            total.n += s.n;
            total.deviance += s.deviance;
            total
                .xtwx
                .iter_mut()
                .zip(&s.xtwx)
                .for_each(|(a, b)| *a += b);
            total
                .xtwz
                .iter_mut()
                .zip(&s.xtwz)
                .for_each(|(a, b)| *a += b);
        }
        if !total.deviance.is_finite() || total.xtwx.iter().any(|v| !v.is_finite()) {
            return Err(GlmError::Numeric(
                "the sums are not finite: the fit diverged (separation, or a covariate on a \
                 huge scale)"
                    .into(),
            ));
        }
        Ok(Sums {
            n: total.n,
            xtwx: DMatrix::from_row_slice(p, p, &total.xtwx),
            xtwz: DVector::from_column_slice(&total.xtwz),
            deviance: total.deviance,
        })
    }

    /// The next coefficients: (XᵀWX)⁻¹ XᵀWz.
    pub fn solve(&self) -> Result<Vec<f64>, GlmError> {
        let chol = self.xtwx.clone().cholesky().ok_or_else(singular)?;
        let beta = chol.solve(&self.xtwz);
        if beta.iter().all(|b| b.is_finite()) {
            Ok(beta.iter().copied().collect())
        } else {
            Err(GlmError::Numeric(
                "the coefficients diverged (perfect separation, or a covariate on a huge scale)"
                    .into(),
            ))
        }
    }
}

fn singular() -> GlmError {
    GlmError::Numeric(
        "the design is singular: a covariate is constant, duplicated or a combination of \
         others, or an interaction has no observations"
            .into(),
    )
}

/// Coefficients with their inference, and the dispersion used.
pub(crate) struct Estimates {
    pub coefficients: Coefficients,
    pub dispersion: f64,
}

/// Standard errors from φ·(XᵀWX)⁻¹ at the final weights (as R's `summary.glm`), Wald tests
/// (Student's t on the residual df for gaussian, normal otherwise) and Wald 95 % intervals.
pub(crate) fn estimates(
    sums: &Sums,
    beta: &[f64],
    names: &[String],
    family: Family,
    n: u64,
) -> Result<Estimates, GlmError> {
    let p = beta.len();
    let df = n.saturating_sub(p as u64);
    let dispersion = if family.estimates_dispersion() {
        if df == 0 {
            return Err(GlmError::Numeric("no residual degrees of freedom".into()));
        }
        sums.deviance / df as f64
    } else {
        1.0
    };
    let inverse = sums.xtwx.clone().cholesky().ok_or_else(singular)?.inverse();
    let normal = Normal::standard();
    let t = if family.estimates_dispersion() {
        Some(StudentsT::new(0.0, 1.0, df as f64).expect("df > 0"))
    } else {
        None
    };
    let (quantile, tail) = match &t {
        Some(t) => (t.inverse_cdf(0.975), t as &dyn ContinuousCDF<f64, f64>),
        None => (
            normal.inverse_cdf(0.975),
            &normal as &dyn ContinuousCDF<f64, f64>,
        ),
    };
    let coefficients = (0..p)
        .map(|j| {
            let se = (dispersion * inverse[(j, j)]).sqrt();
            let z = beta[j] / se;
            let c = Coefficient {
                estimate: beta[j],
                std_error: se,
                z,
                p: 2.0 * tail.sf(z.abs()),
                ci95: [beta[j] - quantile * se, beta[j] + quantile * se],
            };
            (names[j].clone(), c)
        })
        .collect();
    Ok(Estimates {
        coefficients: Coefficients(coefficients),
        dispersion,
    })
}

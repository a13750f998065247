//! The three GLM families as SQL fragments over a row's linear predictor.
//!
//! Each IRLS iteration needs, per row, the working weight `w` and `w·z` (z the working
//! response) at the current coefficients. Written without the division in `z`, they are:
//!
//! | family | μ | w | w·z | deviance contribution |
//! |---|---|---|---|---|
//! | gaussian | η | 1 | y − o | (y − μ)² |
//! | binomial | 1/(1+e^−η) | μ(1−μ) | μ(1−μ)(η−o) + y − μ | 2[y ln(1+e^−η) + (1−y) ln(1+e^η)] |
//! | poisson | e^η | μ | μ(η−o) + y − μ | 2[y ln(y/μ) − (y − μ)] |
//!
//! all times the prior weight; o is the offset (η includes it, the coefficients do not).

pub use medfed_core::glm::Family;

/// The families' SQL (the federated path's per-row arithmetic) and AIC.
pub(crate) trait FamilySql {
    /// SQL for μ from the column `__eta`.
    fn mu_sql(self) -> &'static str;
    /// SQL for (w, w·z, deviance contribution) from `__y`, `__eta`, `__mu`, `__pw`, `__o`.
    fn row_sql(self) -> [&'static str; 3];
    /// AIC from the deviance and the constants of the summary query, as R's family `aic()`
    /// plus 2 per coefficient.
    fn aic(self, c: &AicTerms) -> f64;
}

impl FamilySql for Family {
    fn mu_sql(self) -> &'static str {
        match self {
            Self::Gaussian => "__eta",
            Self::Binomial => "1.0 / (1.0 + exp(-__eta))",
            Self::Poisson => "exp(__eta)",
        }
    }

    fn row_sql(self) -> [&'static str; 3] {
        match self {
            Self::Gaussian => [
                "__pw",
                "__pw * (__y - __o)",
                "__pw * (__y - __mu) * (__y - __mu)",
            ],
            Self::Binomial => [
                "__pw * __mu * (1.0 - __mu)",
                "__pw * (__mu * (1.0 - __mu) * (__eta - __o) + __y - __mu)",
                "2.0 * __pw * (__y * ln(1.0 + exp(-__eta)) + (1.0 - __y) * ln(1.0 + exp(__eta)))",
            ],
            Self::Poisson => [
                "__pw * __mu",
                "__pw * (__mu * (__eta - __o) + __y - __mu)",
                "2.0 * __pw * (CASE WHEN __y > 0 THEN __y * (ln(__y) - __eta) ELSE 0.0 END \
                 - (__y - __mu))",
            ],
        }
    }

    fn aic(self, c: &AicTerms) -> f64 {
        let p = c.p as f64;
        match self {
            Self::Gaussian => {
                let n = c.n as f64;
                // R: n(ln(2π·dev/n) + 1) + 2 − Σ ln w; the 2 pays for the dispersion.
                n * ((2.0 * std::f64::consts::PI * c.deviance / n).ln() + 1.0) + 2.0 - c.sum_log_w
                    + 2.0 * p
            }
            // For 0/1 outcomes −2·log-likelihood is the deviance.
            Self::Binomial => c.deviance + 2.0 * p,
            // −2 Σ w(y ln μ − μ − ln y!) = deviance − 2 Σ w(y ln y − y − ln y!).
            Self::Poisson => {
                c.deviance - 2.0 * (c.sum_w_ylny - c.sum_w_y - c.sum_w_lfact) + 2.0 * p
            }
        }
    }
}

/// What the AIC needs: the fit's deviance and sums from the summary query.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AicTerms {
    /// Observations.
    pub n: u64,
    /// Coefficients.
    pub p: usize,
    pub deviance: f64,
    /// Σ ln(prior weight).
    pub sum_log_w: f64,
    /// Σ w·y.
    pub sum_w_y: f64,
    /// Σ w·y·ln y (0 ln 0 = 0).
    pub sum_w_ylny: f64,
    /// Σ w·ln(y!).
    pub sum_w_lfact: f64,
}

/// SQL for ln(y!) of a non-negative integer column `y`: exact for y ≤ 10, the Stirling series
/// with three correction terms beyond (error below 1e-11 there), since SQL has no lgamma.
pub(crate) fn ln_factorial_sql(y: &str) -> String {
    let mut s = String::from("CASE");
    let mut acc = 0.0f64;
    for k in 0..=10u32 {
        if k > 1 {
            acc += f64::from(k).ln();
        }
        s.push_str(&format!(" WHEN {y} = {k} THEN {acc:?}"));
    }
    s.push_str(&format!(
        " ELSE {y} * ln({y}) - {y} + 0.5 * ln(2.0 * pi() * {y}) + 1.0 / (12.0 * {y}) \
         - 1.0 / (360.0 * {y} * {y} * {y}) + 1.0 / (1260.0 * power({y}, 5)) END"
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_parse_and_link() {
        assert_eq!("Binomial".parse::<Family>().unwrap(), Family::Binomial);
        assert!("gamma".parse::<Family>().unwrap_err().contains("gaussian"));
        assert!((Family::Binomial.link_of(0.5)).abs() < 1e-15);
        assert!((Family::Poisson.link_of(1.0)).abs() < 1e-15);
    }

    #[test]
    fn stirling_matches_exact_log_factorials() {
        // Evaluate the ELSE branch's formula in Rust at the first value it is used for.
        let y = 11.0f64;
        let stirling =
            y * y.ln() - y + 0.5 * (2.0 * std::f64::consts::PI * y).ln() + 1.0 / (12.0 * y)
                - 1.0 / (360.0 * y.powi(3))
                + 1.0 / (1260.0 * y.powi(5));
        let exact: f64 = (2..=11).map(|k| f64::from(k).ln()).sum();
        assert!((stirling - exact).abs() < 1e-10, "{stirling} vs {exact}");
        assert!(ln_factorial_sql("y").contains("WHEN y = 3 THEN 1.791759469228055"));
    }
}

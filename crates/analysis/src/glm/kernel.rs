//! The site's side of a GLM iteration as a kernel: XᵀWX, XᵀWz and the deviance over the
//! site's rows in one pass, O(n·p²) in native arithmetic rather than p² SQL aggregates.

use medfed_core::glm::Family;
use medfed_core::kernel::GlmSums;

/// The sums at `beta` over rows given column by column: response, prior weight, offset, then
/// the covariates (the intercept, when `intercept`, is implicit).
pub(crate) fn sums(
    columns: &[Vec<f64>],
    family: Family,
    beta: &[f64],
    intercept: bool,
) -> Result<GlmSums, String> {
    let [y, pw, offset, covariates @ ..] = columns else {
        return Err("a GLM kernel reads response, weight, offset and covariates".into());
    };
    let p = beta.len();
    if covariates.len() + usize::from(intercept) != p {
        return Err(format!(
            "{} covariate columns for {p} coefficients",
            covariates.len()
        ));
    }
    if pw.iter().any(|w| *w <= 0.0) {
        return Err("prior weights must be positive".into());
    }
    let valid = |v: f64| match family {
        Family::Gaussian => true,
        Family::Binomial => v == 0.0 || v == 1.0,
        Family::Poisson => v >= 0.0 && v.fract() == 0.0,
    };
    if !y.iter().all(|v| valid(*v)) {
        return Err(format!(
            "the outcome has values a {} model cannot take",
            family.name()
        ));
    }
    let mut out = GlmSums {
        n: y.len() as u64,
        xtwx: vec![0.0; p * p],
        xtwz: vec![0.0; p],
        deviance: 0.0,
    };
    let mut x = vec![1.0; p];
    let first = usize::from(intercept);
    for i in 0..y.len() {
        for (j, c) in covariates.iter().enumerate() {
            x[first + j] = c[i];
        }
        let eta = offset[i] + x.iter().zip(beta).map(|(x, b)| x * b).sum::<f64>();
        let (w, wz, dev) = family.working(eta, y[i], pw[i], offset[i]);
        out.deviance += dev;
        for j in 0..p {
            let wx = w * x[j];
            out.xtwz[j] += wz * x[j];
            let row = &mut out.xtwx[j * p..(j + 1) * p];
            for k in j..p {
                row[k] += wx * x[k];
            }
        }
    }
    for j in 0..p {
        for k in 0..j {
            out.xtwx[j * p + k] = out.xtwx[k * p + j];
        }
    }
    Ok(out)
}

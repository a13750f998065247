//! Differential privacy: noise from OpenDP's proven samplers, and the arithmetic around them.
//!
//! Why OpenDP and not `rand_distr::Laplace`: a textbook Laplace sampler over `f64` leaks through
//! the gaps of floating-point numbers (Mironov, CCS 2012). OpenDP samples *discrete* Laplace and
//! Gaussian noise exactly (Canonne, Kamath & Steinke 2020); for `f64` it rounds the input onto a
//! grid of 2^k and adds discrete noise on that grid, so every release is a proven mechanism.
//! Integer partials (counts, sums of integers) get integer noise and stay integers.
//!
//! Randomness: OpenDP's default `use-openssl` feature vendors and compiles OpenSSL (minutes of CI
//! on two cores) only to call `RAND_priv_bytes`. We build without it, so OpenDP draws its bits
//! from `rand`'s `thread_rng`: ChaCha20 seeded from the operating system's CSPRNG and reseeded
//! every 64 KiB — a cryptographically secure generator. OpenDP's "non-secure" label on that path
//! is about fork-safety of the thread-local state; a site node never forks.
//!
//! The CSPRNG cannot be seeded, by design; statistical tests of the noise therefore use many
//! draws and bounds whose false-alarm probability is negligible, not a fixed seed.
//!
//! ```
//! use medfed_privacy::dp;
//! // A count with sensitivity 1 released at ε = 0.5: Laplace scale 2, 95 % of draws within ±6.
//! let scale = dp::laplace_scale(1.0, 0.5);
//! assert_eq!(scale, 2.0);
//! let noisy = dp::noise_i64(&[1000], scale).unwrap();
//! assert!((noisy[0] - 1000).abs() < 200);
//! assert!((dp::laplace_ci95(scale) - 5.99).abs() < 0.01);
//! ```

use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::{make_gaussian, make_laplace};
use opendp::measures::{MaxDivergence, ZeroConcentratedDivergence};
use opendp::metrics::{L1Distance, L2Distance};

/// A failure of the noise machinery (a bad scale, or OpenDP refusing an input).
#[derive(Debug, thiserror::Error)]
#[error("differential privacy: {0}")]
pub struct DpError(pub String);

fn dp_err(e: opendp::error::Error) -> DpError {
    DpError(e.to_string())
}

/// The Laplace scale that gives ε-DP for a statistic of L1 `sensitivity`.
pub fn laplace_scale(sensitivity: f64, epsilon: f64) -> f64 {
    sensitivity / epsilon
}

/// Half-width of the central 95 % interval of Laplace(`scale`) noise: P(|X| > t) = e^(-t/b).
pub fn laplace_ci95(scale: f64) -> f64 {
    scale * 20f64.ln()
}

/// Half-width of the 95 % interval of a sum of independent Laplace noises (normal approximation:
/// each has variance 2b²), as when the hub adds up several sites' noised partials.
pub fn summed_laplace_ci95(scales: &[f64]) -> f64 {
    match scales {
        [] => 0.0,
        [one] => laplace_ci95(*one),
        many => 1.96 * many.iter().map(|b| 2.0 * b * b).sum::<f64>().sqrt(),
    }
}

/// Threshold a noisy group count must reach for the group to be released at all (partition
/// selection), for **discrete** Laplace noise of `scale` b on the count (what [`noise_i64`]
/// adds). A person can create up to `max_partitions` L groups that exist only because of them:
/// L groups of 1, or (where the count is of rows) one group of up to L. Discrete Laplace has
/// P(Z ≥ m) = q^m / (1 + q) for m ≥ 1, q = e^(−1/b) — up to 2/(1+q) times the continuous
/// tail ½e^(−m/b), so the continuous formula would miss δ. τ is the least integer with
/// L · P(Z ≥ τ − 1) ≤ δ and P(Z ≥ τ − L) ≤ δ (noisy counts are integers, so "≥ τ" for an
/// integer τ is exact).
pub fn partition_threshold(scale: f64, max_partitions: u32, delta: f64) -> f64 {
    let l = f64::from(max_partitions.max(1));
    let q = (-1.0 / scale).exp();
    // Smallest integer m ≥ 1 with factor · q^m / (1 + q) ≤ δ.
    let least = |factor: f64| {
        let m = (scale * (factor / (delta * (1.0 + q))).ln())
            .ceil()
            .max(1.0);
        // Guard the ceiling against rounding in ln/exp: step up until the tail fits.
        (0..3)
            .map(|i| m + f64::from(i))
            .find(|m| factor * q.powf(*m) / (1.0 + q) <= delta)
            .unwrap_or(m + 3.0)
    };
    (1.0 + least(l)).max(l + least(1.0))
}

/// P(Z ≥ m) for discrete Laplace noise Z of `scale` and an integer m ≥ 1.
pub fn discrete_laplace_tail(scale: f64, m: i64) -> f64 {
    let q = (-1.0 / scale).exp();
    q.powf(m as f64) / (1.0 + q)
}

fn check_scale(scale: f64) -> Result<(), DpError> {
    if scale.is_finite() && scale > 0.0 {
        Ok(())
    } else {
        Err(DpError(format!(
            "noise scale must be positive and finite, not {scale}"
        )))
    }
}

/// Adds discrete Laplace noise of `scale` to each integer.
pub fn noise_i64(values: &[i64], scale: f64) -> Result<Vec<i64>, DpError> {
    check_scale(scale)?;
    let m = make_laplace::<_, _, MaxDivergence>(
        VectorDomain::new(AtomDomain::<i64>::default()),
        L1Distance::<i64>::default(),
        scale,
        None,
    )
    .map_err(dp_err)?;
    m.invoke(&values.to_vec()).map_err(dp_err)
}

/// Adds Laplace noise of `scale` to each float (OpenDP's discretised, float-safe sampler).
pub fn noise_f64(values: &[f64], scale: f64) -> Result<Vec<f64>, DpError> {
    check_scale(scale)?;
    if values.iter().any(|v| v.is_nan()) {
        return Err(DpError("cannot noise NaN".into()));
    }
    let m = make_laplace::<_, _, MaxDivergence>(
        VectorDomain::new(AtomDomain::<f64>::new_non_nan()),
        L1Distance::<f64>::default(),
        scale,
        None,
    )
    .map_err(dp_err)?;
    m.invoke(&values.to_vec()).map_err(dp_err)
}

/// Adds discrete Gaussian noise of standard deviation `sigma` to each integer (used for
/// distributed DP shares under secure aggregation, where Gaussians add up).
pub fn gaussian_i64(values: &[i64], sigma: f64) -> Result<Vec<i64>, DpError> {
    check_scale(sigma)?;
    let m = make_gaussian::<_, _, ZeroConcentratedDivergence>(
        VectorDomain::new(AtomDomain::<i64>::default()),
        L2Distance::<i64>::default(),
        sigma,
        None,
    )
    .map_err(dp_err)?;
    m.invoke(&values.to_vec()).map_err(dp_err)
}

/// Adds Gaussian noise of standard deviation `sigma` to each float (OpenDP's discretised,
/// float-safe sampler): DP-FedAvg's noise on a clipped model update.
pub fn gaussian_f64(values: &[f64], sigma: f64) -> Result<Vec<f64>, DpError> {
    check_scale(sigma)?;
    if values.iter().any(|v| !v.is_finite()) {
        return Err(DpError("cannot noise a non-finite value".into()));
    }
    let m = make_gaussian::<_, _, ZeroConcentratedDivergence>(
        VectorDomain::new(AtomDomain::<f64>::new_non_nan()),
        L2Distance::<f64>::default(),
        sigma,
        None,
    )
    .map_err(dp_err)?;
    m.invoke(&values.to_vec()).map_err(dp_err)
}

/// Standard deviation of each of `parties` shares of distributed Gaussian noise so that any
/// `min_parties` surviving shares still add up to at least `sigma` (dropouts only add privacy
/// loss if the sum carries less noise than promised, so shares are sized for the worst case).
pub fn gaussian_share_sigma(sigma: f64, min_parties: usize) -> f64 {
    sigma / (min_parties.max(1) as f64).sqrt()
}

/// ρ-zCDP of a Gaussian mechanism with L2 `sensitivity` and standard deviation `sigma`.
pub fn gaussian_rho(sensitivity: f64, sigma: f64) -> f64 {
    sensitivity * sensitivity / (2.0 * sigma * sigma)
}

/// The (ε, δ) implied by ρ-zCDP (Bun & Steinke 2016, Prop. 1.3): ε = ρ + 2·√(ρ·ln(1/δ)).
pub fn zcdp_epsilon(rho: f64, delta: f64) -> f64 {
    rho + 2.0 * (rho * (1.0 / delta).ln()).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The empirical variance of many discrete-Laplace draws matches the mechanism's.
    ///
    /// Discrete Laplace with scale b: Var = 2q/(1-q)², q = e^(-1/b). With 40 000 draws the
    /// sample variance's relative standard error is about √(5/40 000) ≈ 1.1 % (kurtosis 6 for
    /// Laplace), so a ±8 % band is over 7 standard errors wide.
    #[test]
    fn dp_count_variance_matches_the_mechanism() {
        let b = 4.0;
        let n = 40_000;
        let draws = noise_i64(&vec![100; n], b).unwrap();
        let mean = draws.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
        let var = draws
            .iter()
            .map(|&x| (x as f64 - mean).powi(2))
            .sum::<f64>()
            / (n - 1) as f64;
        let q = (-1.0 / b).exp();
        let expected = 2.0 * q / (1.0 - q).powi(2);
        assert!((mean - 100.0).abs() < 0.2, "mean {mean}");
        assert!(
            (var / expected - 1.0).abs() < 0.08,
            "variance {var}, mechanism {expected}"
        );
        // And it is noise: the draws are not all the input.
        assert!(draws.iter().filter(|&&x| x != 100).count() > n / 2);
    }

    #[test]
    fn float_noise_is_centred_with_laplace_variance() {
        let b = 2.5;
        let n = 40_000;
        let draws = noise_f64(&vec![10.0; n], b).unwrap();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        assert!((mean - 10.0).abs() < 0.15, "mean {mean}");
        assert!((var / (2.0 * b * b) - 1.0).abs() < 0.08, "variance {var}");
    }

    #[test]
    fn gaussian_shares_add_up_to_the_promised_noise() {
        let sigma = 10.0;
        let parties = 5;
        let share = gaussian_share_sigma(sigma, parties);
        let n = 20_000;
        let mut total = vec![0i64; n];
        for _ in 0..parties {
            for (t, x) in total
                .iter_mut()
                .zip(gaussian_i64(&vec![0; n], share).unwrap())
            {
                *t += x;
            }
        }
        let var = total.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / n as f64;
        assert!((var / (sigma * sigma) - 1.0).abs() < 0.06, "variance {var}");
    }

    /// The tail formula the partition threshold rests on, against OpenDP's sampler: 400 000
    /// draws of discrete Laplace with b = 2; P(Z ≥ 3) = q³/(1+q) ≈ 0.1389. The binomial standard
    /// error is ≈ 5.5e-4, so ±0.003 is over 5 standard errors (false alarm p < 1e-7).
    #[test]
    fn discrete_laplace_tail_matches_the_sampler() {
        let n = 400_000;
        let draws = noise_i64(&vec![0; n], 2.0).unwrap();
        for m in [1, 3, 6] {
            let seen = draws.iter().filter(|&&z| z >= m).count() as f64 / n as f64;
            let want = discrete_laplace_tail(2.0, m);
            assert!((seen - want).abs() < 0.003, "P(Z ≥ {m}) {seen} vs {want}");
        }
    }

    /// With L partitions per person or one group of up to L, the chance that a group created
    /// by one person passes stays within δ.
    #[test]
    fn partition_threshold_meets_delta_for_every_contribution_bound() {
        for (b, l, delta) in [
            (2.0, 1, 1e-7),
            (10.0, 3, 1e-6),
            (0.5, 1, 1e-9),
            (40.0, 5, 1e-5),
        ] {
            let tau = partition_threshold(b, l, delta) as i64;
            let many = f64::from(l) * discrete_laplace_tail(b, tau - 1);
            let one = discrete_laplace_tail(b, tau - i64::from(l));
            assert!(many <= delta && one <= delta, "b {b} L {l}: {many} {one}");
        }
    }

    #[test]
    fn bad_scales_are_refused() {
        assert!(noise_i64(&[1], 0.0).is_err());
        assert!(noise_f64(&[1.0], f64::NAN).is_err());
        assert!(noise_f64(&[f64::NAN], 1.0).is_err());
    }

    #[test]
    fn thresholds_and_intervals() {
        // b = 2, one partition per person, δ = 1e-7: the continuous formula gave
        // 1 + 2·ln(5e6) ≈ 31.85, where a 1-person group passes with probability ≈ 1.15 δ.
        let tau = partition_threshold(2.0, 1, 1e-7);
        assert_eq!(tau, 33.0);
        assert!(discrete_laplace_tail(2.0, tau as i64 - 1) <= 1e-7);
        assert!(
            discrete_laplace_tail(2.0, tau as i64 - 2) > 1e-7,
            "τ is the least"
        );
        assert!(discrete_laplace_tail(2.0, 31) > 1e-7, "the old τ missed δ");
        assert!((summed_laplace_ci95(&[1.0, 1.0]) - 1.96 * 2.0).abs() < 1e-12);
        // ρ = 0.5 at δ = 1e-6: ε ≈ 0.5 + 2·√(0.5·13.8155) ≈ 5.757.
        assert!((zcdp_epsilon(gaussian_rho(1.0, 1.0), 1e-6) - 5.757).abs() < 0.001);
    }
}

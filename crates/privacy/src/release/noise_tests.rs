//! Statistical proof that each DP mechanism adds the noise its report declares.
//!
//! For every mechanism — DP COUNT, bounded SUM and AVG at one site, and COUNT and SUM under
//! secure aggregation with distributed noise — 10 000 independent draws of answer − truth are
//! tested against the declared distribution and scale (Kolmogorov–Smirnov for reals, χ² for
//! integers). Each test must accept the declared scale (p > 1e-4) and reject the declared scale
//! × 0.7 and × 1.3 (p < 1e-4); the declared 95 % interval must cover the truth 93–97 % of the
//! time. Sample sizes are fixed; the noise comes from the operating system's CSPRNG, so each
//! check has a false-alarm probability of about 1e-4 (the interval check: 10 000 draws put 95 %
//! ± 0.22 % per standard error, so 93–97 % is 9 standard errors).

use std::collections::BTreeMap;

use arrow::array::StringArray;
use statrs::distribution::{ContinuousCDF, Laplace, Normal};

use super::*;
use crate::secagg::cells;

const DRAWS: usize = 10_000;
const ALPHA: f64 = 1e-4;

/// Asymptotic two-sided Kolmogorov–Smirnov p-value of `draws` against `cdf` (Stephens'
/// small-sample correction).
fn ks_p(draws: &[f64], cdf: impl Fn(f64) -> f64) -> f64 {
    let mut xs = draws.to_vec();
    xs.sort_by(f64::total_cmp);
    let n = xs.len() as f64;
    let d = xs
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let f = cdf(x);
            (f - i as f64 / n).max((i + 1) as f64 / n - f)
        })
        .fold(0.0, f64::max);
    let sn = n.sqrt();
    let lambda = (sn + 0.12 + 0.11 / sn) * d;
    if lambda < 0.2 {
        return 1.0;
    }
    let q: f64 = (1..=100)
        .map(|k: i32| 2.0 * (-1f64).powi(k - 1) * (-2.0 * f64::from(k * k) * lambda * lambda).exp())
        .sum();
    q.clamp(0.0, 1.0)
}

/// χ² goodness-of-fit p-value of integer `draws` against `pmf`: one bin per integer expected
/// at least 5 times, the two tails pooled.
fn chi2_p(draws: &[i64], pmf: impl Fn(i64) -> f64) -> f64 {
    use statrs::distribution::ChiSquared;
    let n = draws.len() as f64;
    let (mut lo, mut hi) = (0i64, 0i64);
    while n * pmf(lo - 1) >= 5.0 {
        lo -= 1;
    }
    while n * pmf(hi + 1) >= 5.0 {
        hi += 1;
    }
    let tail = |range: Box<dyn Iterator<Item = i64>>| {
        let mut p = 0.0;
        for z in range {
            let q = pmf(z);
            p += q;
            if q < 1e-18 {
                break;
            }
        }
        p
    };
    let left = tail(Box::new((lo - 100_000..lo).rev()));
    let right = tail(Box::new(hi + 1..hi + 100_000));
    let mut observed: BTreeMap<i64, f64> = BTreeMap::new();
    for &z in draws {
        *observed.entry(z.clamp(lo - 1, hi + 1)).or_default() += 1.0;
    }
    let mut stat = 0.0;
    let mut bins = 0;
    for z in lo - 1..=hi + 1 {
        let expected = n * if z < lo {
            left
        } else if z > hi {
            right
        } else {
            pmf(z)
        };
        if expected <= 0.0 {
            continue;
        }
        let o = observed.get(&z).copied().unwrap_or(0.0);
        stat += (o - expected).powi(2) / expected;
        bins += 1;
    }
    let chi = ChiSquared::new(f64::from(bins - 1)).expect("at least two bins");
    1.0 - chi.cdf(stat)
}

fn discrete_laplace(scale: f64) -> impl Fn(i64) -> f64 {
    let q = (-1.0 / scale).exp();
    move |z| (1.0 - q) / (1.0 + q) * q.powf(z.unsigned_abs() as f64)
}

fn discrete_gaussian(sigma: f64) -> impl Fn(i64) -> f64 {
    let w = move |z: i64| (-(z as f64).powi(2) / (2.0 * sigma * sigma)).exp();
    let total: f64 = (-(40.0 * sigma) as i64..=(40.0 * sigma) as i64)
        .map(w)
        .sum();
    move |z| w(z) / total
}

/// Accepts the declared scale, rejects it × 0.7 and × 1.3.
fn fits_only_the_declared_scale(what: &str, scale: f64, p_at: impl Fn(f64) -> f64) {
    let p = p_at(scale);
    assert!(
        p > ALPHA,
        "{what}: declared scale {scale} rejected, p = {p:e}"
    );
    for wrong in [0.7, 1.3] {
        let p = p_at(scale * wrong);
        assert!(p < ALPHA, "{what}: scale × {wrong} not rejected, p = {p:e}");
    }
}

fn covers(what: &str, errors: impl Iterator<Item = f64>, ci95: f64) {
    let errors: Vec<f64> = errors.collect();
    let inside = errors.iter().filter(|e| e.abs() <= ci95).count() as f64 / errors.len() as f64;
    assert!(
        (0.93..=0.97).contains(&inside),
        "{what}: the 95 % interval ±{ci95} covers {inside}"
    );
}

/// DRAWS groups that all hold the same truth: 1 000 people, a count of 1 000, a sum of
/// 37 000 (ages clamped to [0, 100]) as an integer and as a real.
fn groups() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k0", DataType::Utf8, true),
        Field::new("p0", DataType::Int64, true),
        Field::new("p1", DataType::Float64, true),
        Field::new("p2", DataType::Int64, true),
        Field::new("__n", DataType::Int64, false),
    ]));
    let keys: Vec<String> = (0..DRAWS).map(|i| format!("g{i:05}")).collect();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(keys)),
            Arc::new(Int64Array::from(vec![1000; DRAWS])),
            Arc::new(Float64Array::from(vec![37_000.0; DRAWS])),
            Arc::new(Int64Array::from(vec![37_000; DRAWS])),
            Arc::new(Int64Array::from(vec![1000; DRAWS])),
        ],
    )
    .unwrap()
}

fn dp(epsilon: f64) -> Protection {
    Protection {
        dp: Some(DpRelease {
            epsilon,
            delta: 1e-6,
            max_rows_per_person: 1,
            bounds: BTreeMap::new(),
        }),
        ..Default::default()
    }
}

fn floats(b: &RecordBatch, name: &str) -> Vec<f64> {
    let c = cast(b.column_by_name(name).unwrap(), &DataType::Float64).unwrap();
    c.as_primitive::<Float64Type>().values().to_vec()
}

fn ints(b: &RecordBatch, name: &str) -> Vec<i64> {
    let c = cast(b.column_by_name(name).unwrap(), &DataType::Int64).unwrap();
    c.as_primitive::<Int64Type>().values().to_vec()
}

#[test]
fn dp_count_and_bounded_sums_add_the_declared_laplace() {
    let bounds = Some((0.0, 100.0));
    let roles = [
        ColumnRole::Key,
        ColumnRole::Count,
        ColumnRole::Sum { range: bounds },
        ColumnRole::Sum { range: bounds },
        ColumnRole::Contributors,
    ];
    // ε = 1 over four columns: counts get scale 4 (large enough for a discrete interval to
    // cover 93–97 %), sums 400.
    let (out, report) = protect(&groups(), &roles, &dp(1.0), &DisclosureRules::default()).unwrap();
    assert_eq!(out.num_rows(), DRAWS, "1 000-people groups all pass τ");
    // COUNT: discrete Laplace.
    let b = report.scales["p0"];
    assert_eq!(report.distributions["p0"], "discrete Laplace");
    let errors: Vec<i64> = ints(&out, "p0").iter().map(|v| v - 1000).collect();
    fits_only_the_declared_scale("DP COUNT", b, |s| chi2_p(&errors, discrete_laplace(s)));
    covers(
        "DP COUNT",
        errors.iter().map(|&e| e as f64),
        dp::laplace_ci95(b),
    );
    // Bounded SUM over reals: Laplace of scale 100/ε_share.
    let b = report.scales["p1"];
    assert_eq!(report.distributions["p1"], "Laplace");
    let errors: Vec<f64> = floats(&out, "p1").iter().map(|v| v - 37_000.0).collect();
    fits_only_the_declared_scale("bounded SUM (real)", b, |s| {
        let d = Laplace::new(0.0, s).unwrap();
        ks_p(&errors, |x| d.cdf(x))
    });
    covers(
        "bounded SUM (real)",
        errors.into_iter(),
        dp::laplace_ci95(b),
    );
    // Bounded SUM over integers: discrete Laplace, an integer answer (never 2^24 × it).
    let b = report.scales["p2"];
    assert_eq!(report.distributions["p2"], "discrete Laplace");
    let errors: Vec<i64> = ints(&out, "p2").iter().map(|v| v - 37_000).collect();
    fits_only_the_declared_scale("bounded SUM (integer)", b, |s| {
        chi2_p(&errors, discrete_laplace(s))
    });
}

/// AVG = SUM(x) / COUNT(x): the sum is released as noisy Σ(x − m) + m × the noisy count, so
/// what the report declares — Laplace on Σ(x − m) — is read back as released sum − m × released
/// count − (truth − m × count).
#[test]
fn dp_avg_adds_the_declared_laplace_to_the_centred_sum() {
    let roles = [
        ColumnRole::Key,
        ColumnRole::ValueCount(2),
        ColumnRole::Sum {
            range: Some((0.0, 100.0)),
        },
        ColumnRole::Contributors,
    ];
    let batch = groups().project(&[0, 1, 2, 4]).unwrap();
    let (out, report) = protect(&batch, &roles, &dp(3.0), &DisclosureRules::default()).unwrap();
    let m = 50.0;
    let b = report.scales["p1"];
    assert!(report.distributions["p1"].contains("less 50 × its count"));
    let counts = ints(&out, "p0");
    let errors: Vec<f64> = floats(&out, "p1")
        .iter()
        .zip(&counts)
        .map(|(s, &c)| (s - m * c as f64) - (37_000.0 - m * 1000.0))
        .collect();
    fits_only_the_declared_scale("DP AVG (centred sum)", b, |s| {
        let d = Laplace::new(0.0, s).unwrap();
        ks_p(&errors, |x| d.cdf(x))
    });
    covers(
        "DP AVG (centred sum)",
        errors.into_iter(),
        dp::laplace_ci95(b),
    );
    let count_errors: Vec<i64> = counts.iter().map(|c| c - 1000).collect();
    fits_only_the_declared_scale("DP AVG (count)", report.scales["p0"], |s| {
        chi2_p(&count_errors, discrete_laplace(s))
    });
}

/// Under secure aggregation each of 3 sites adds a discrete Gaussian share of σ/√t (t = 2) to
/// its masked cells; the network's sum carries σ·√(3/2), which the hub declares as the
/// per-site share and its sum over the survivors. The sum column is an integer column the
/// sites clamped to reals: it must decode as the real it is.
#[test]
fn distributed_dp_count_and_sum_carry_the_declared_gaussian() {
    let bounds = Some((0.0, 100.0));
    let roles = [
        ColumnRole::Key,
        ColumnRole::Count,
        ColumnRole::Sum { range: bounds },
        ColumnRole::Contributors,
    ];
    let batch = groups().project(&[0, 1, 2, 4]).unwrap();
    let protection = Protection {
        secure_aggregation: true,
        ..dp(2.0)
    };
    let (sites, threshold) = (3usize, 2usize);
    let (table, report) =
        protect(&batch, &roles, &protection, &DisclosureRules::default()).unwrap();
    let domain = cells::domain((0..sites).map(|_| cells::announce(&table).unwrap()));
    assert_eq!(domain.len(), DRAWS);
    let fixed = cells::fixed_point(&table.schema());
    let mut sum = vec![0u64; cells::vector_len(&table.schema(), &fixed, domain.len())];
    for _ in 0..sites {
        let mut v = cells::to_vector(&table, &domain, None, &fixed).unwrap();
        cells::add_noise(
            &mut v,
            &table.schema(),
            domain.len(),
            &report.sigma,
            &fixed,
            threshold,
        )
        .unwrap();
        for (s, x) in sum.iter_mut().zip(v) {
            *s = s.wrapping_add(x);
        }
    }
    // The hub's plan may type the sum as an integer (SUM over an integer column) although the
    // sites clamped it to reals: it decodes from fixed point either way.
    let hub_schema = |sum_type: DataType| {
        Arc::new(Schema::new(vec![
            Field::new("k0", DataType::Utf8, true),
            Field::new("p0", DataType::Int64, true),
            Field::new("p1", sum_type, true),
            Field::new("__n", DataType::Int64, true),
            Field::new("__cell", DataType::UInt8, false),
        ]))
    };
    let released: Vec<(usize, String)> = domain.iter().cloned().enumerate().collect();
    let merge = |schema| {
        cells::from_vector(
            &sum,
            &schema,
            domain.len(),
            &released,
            &fixed,
            &Default::default(),
        )
        .unwrap()
    };
    let (merged, as_int) = (
        merge(hub_schema(DataType::Float64)),
        merge(hub_schema(DataType::Int64)),
    );
    let reals = floats(&merged, "p1");
    let rounded: Vec<i64> = reals.iter().map(|v| v.round() as i64).collect();
    assert_eq!(
        ints(&as_int, "p1"),
        rounded,
        "an integer plan type rounds the real sum"
    );
    let total = |column: &str| {
        dp::gaussian_share_sigma(report.sigma[column], threshold) * (sites as f64).sqrt()
    };
    let errors: Vec<i64> = ints(&merged, "p0").iter().map(|v| v - 3000).collect();
    let sigma = total("p0");
    fits_only_the_declared_scale("distributed DP COUNT", sigma, |s| {
        chi2_p(&errors, discrete_gaussian(s))
    });
    covers(
        "distributed DP COUNT",
        errors.iter().map(|&e| e as f64),
        1.96 * sigma,
    );
    let errors: Vec<f64> = reals.iter().map(|v| v - 111_000.0).collect();
    let sigma = total("p1");
    fits_only_the_declared_scale("distributed DP SUM", sigma, |s| {
        let d = Normal::new(0.0, s).unwrap();
        ks_p(&errors, |x| d.cdf(x))
    });
    covers("distributed DP SUM", errors.into_iter(), 1.96 * sigma);
}

//! `medfed bench secagg` and `medfed bench dp`: the privacy layer's costs, each against the
//! unprotected baseline in the same run.

use std::time::Instant;

use medfed_privacy::secagg::{Id, decode_fixed, encode_fixed};
use medfed_privacy::{DisclosureRules, DpRelease, Protection};
use serde_json::json;

use super::stats;

#[derive(clap::Args)]
pub struct SecAggArgs {
    /// Sites in the round.
    #[arg(long, default_value_t = 15)]
    sites: usize,
    /// Values per site.
    #[arg(long, default_value_t = 100_000)]
    len: usize,
    /// Shares needed to unmask (default: two thirds of the sites, rounded up).
    #[arg(long)]
    threshold: Option<usize>,
    /// Timed rounds per case.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Inputs: reals with 2^-24 resolution, so the plain f64 sum and the ring sum can be compared.
fn inputs(sites: usize, len: usize) -> Vec<Vec<f64>> {
    (0..sites)
        .map(|s| {
            (0..len)
                .map(|j| ((s * 7919 + j * 104_729) % 100_000) as f64 / 64.0 - 500.0)
                .collect()
        })
        .collect()
}

/// One full round (all four steps, sites' work in parallel); returns the unmasked sum.
fn round(xs: &[Vec<u64>], threshold: usize, dropped: &[Id]) -> anyhow::Result<Vec<u64>> {
    Ok(medfed_privacy::secagg::simulate_round(xs, threshold, dropped)?.0)
}

pub fn secagg(a: SecAggArgs) -> anyhow::Result<()> {
    let threshold = a
        .threshold
        .unwrap_or(a.sites.div_ceil(3) * 2)
        .clamp(2, a.sites);
    let reals = inputs(a.sites, a.len);
    let xs: Vec<Vec<u64>> = reals
        .iter()
        .map(|v| v.iter().map(|&x| encode_fixed(x)).collect())
        .collect();
    let plain = |skip: &[Id]| -> Vec<f64> {
        let mut sum = vec![0.0; a.len];
        for (i, x) in reals.iter().enumerate() {
            if !skip.contains(&((i + 1) as Id)) {
                sum.iter_mut().zip(x).for_each(|(s, v)| *s += v);
            }
        }
        sum
    };
    let mut plain_ms = Vec::new();
    for _ in 0..a.rounds {
        let t = Instant::now();
        std::hint::black_box(plain(&[]));
        plain_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (plain_p50, _) = stats(plain_ms);
    let mut rows = Vec::new();
    for (case, dropped) in [("no dropout", vec![]), ("1 site drops", vec![3 as Id])] {
        let mut ms = Vec::new();
        let mut max_err = 0f64;
        for _ in 0..a.rounds {
            let t = Instant::now();
            let sum = round(&xs, threshold, &dropped)?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            let want = plain(&dropped);
            max_err = sum
                .iter()
                .zip(&want)
                .map(|(&s, w)| (decode_fixed(s) - w).abs())
                .fold(max_err, f64::max);
        }
        let (p50, p99) = stats(ms);
        rows.push(json!({
            "case": case, "p50_ms": p50, "p99_ms": p99, "plain_ms": plain_p50,
            "ratio_to_plain": p50 / plain_p50.max(1e-9), "max_abs_error": max_err,
        }));
    }
    let out = json!({
        "sites": a.sites, "len": a.len, "threshold": threshold, "rounds": a.rounds,
        "plain_sum_p50_ms": plain_p50, "cases": rows,
    });
    if a.json {
        println!("{out}");
        return Ok(());
    }
    println!(
        "secure aggregation: {} sites x {} values, threshold {threshold}, {} rounds each (all sites simulated on this machine)",
        a.sites, a.len, a.rounds
    );
    println!(
        "{:<14} {:>10} {:>10} {:>12} {:>10} {:>14}",
        "case", "p50 ms", "p99 ms", "plain ms", "ratio", "max |error|"
    );
    for r in &rows {
        println!(
            "{:<14} {:>10.1} {:>10.1} {:>12.2} {:>10.1} {:>14.2e}",
            r["case"].as_str().unwrap_or_default(),
            r["p50_ms"].as_f64().unwrap_or_default(),
            r["p99_ms"].as_f64().unwrap_or_default(),
            plain_p50,
            r["ratio_to_plain"].as_f64().unwrap_or_default(),
            r["max_abs_error"].as_f64().unwrap_or_default(),
        );
    }
    println!(
        "(ratio against a plain in-memory f64 sum of the same vectors; the ring sum is exact, \
         the error is the fixed-point encoding's 2^-25 rounding per input)"
    );
    Ok(())
}

#[derive(clap::Args)]
pub struct DpArgs {
    /// Synthetic patients at the one site.
    #[arg(long, default_value_t = 100_000)]
    patients: usize,
    /// Timed runs per case.
    #[arg(long, default_value_t = 30)]
    iterations: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// The site's partial step (plan from cache, execute, protect) against the raw SQL in
/// DataFusion: with the privacy columns but k = 1 (nothing suppressed), with disclosure control,
/// and with DP — the overhead a site adds before anything leaves.
pub async fn dp(a: DpArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = medfed_synth::SynthConfig {
        patients: a.patients,
        seed: 7,
        profile: "general".into(),
        id_base: 0,
    };
    let summary = medfed_synth::synthesize(dir.path(), &cfg, |_| {})?;
    let store =
        medfed_store::SiteStore::open(&medfed_store::StoreConfig::omop_dir(&summary.omop_dir))
            .await?;
    let queries = [
        (
            "count_by_gender_decade",
            "SELECT gender_concept_id AS k0, (year_of_birth / 10) * 10 AS k1, COUNT(*) AS p0 \
             FROM person GROUP BY 1, 2",
        ),
        (
            "mean_birth_year_by_gender",
            "SELECT gender_concept_id AS k0, SUM(year_of_birth) AS p0, COUNT(year_of_birth) AS p1 \
             FROM person GROUP BY 1",
        ),
    ];
    let none = Protection {
        rules: DisclosureRules::none(),
        dp: None,
        secure_aggregation: false,
        model_step: false,
    };
    let exact = Protection::default();
    let mut release = DpRelease {
        epsilon: 0.1,
        ..Default::default()
    };
    release
        .bounds
        .insert("year_of_birth".into(), (1900.0, 2030.0));
    let noisy = Protection {
        dp: Some(release),
        ..Default::default()
    };
    let mut rows = Vec::new();
    for (name, sql) in queries {
        let cache = medfed_analysis::sql::PartialPlanCache::default();
        let mut p50s = Vec::new();
        // The baseline: the same SQL straight through DataFusion, no privacy layer at all.
        let ms = super::time(a.iterations, || async {
            store.context().sql(sql).await?.collect().await?;
            Ok(())
        })
        .await?;
        let (p50, p99) = stats(ms);
        p50s.push(p50);
        rows.push(
            json!({"query": name, "mode": "raw", "p50_ms": p50, "p99_ms": p99,
            "overhead_vs_none": 1.0}),
        );
        for (mode, p) in [("k=1", &none), ("exact", &exact), ("dp", &noisy)] {
            let ms = super::time(a.iterations, || async {
                medfed_analysis::sql::run_site_partial(
                    store.context(),
                    Some(&cache),
                    sql,
                    p,
                    &p.rules,
                )
                .await?;
                Ok(())
            })
            .await?;
            let (p50, p99) = stats(ms);
            p50s.push(p50);
            rows.push(
                json!({"query": name, "mode": mode, "p50_ms": p50, "p99_ms": p99,
                "overhead_vs_none": p50 / p50s[0]}),
            );
        }
    }
    if a.json {
        println!("{}", json!({ "patients": a.patients, "rows": rows }));
        return Ok(());
    }
    println!(
        "site partial step, {} patients, {} runs each (plan cached)",
        a.patients, a.iterations
    );
    println!(
        "{:<28} {:<6} {:>9} {:>9} {:>9}",
        "query", "mode", "p50 ms", "p99 ms", "vs raw"
    );
    for r in &rows {
        println!(
            "{:<28} {:<6} {:>9.2} {:>9.2} {:>8.2}x",
            r["query"].as_str().unwrap_or_default(),
            r["mode"].as_str().unwrap_or_default(),
            r["p50_ms"].as_f64().unwrap_or_default(),
            r["p99_ms"].as_f64().unwrap_or_default(),
            r["overhead_vs_none"].as_f64().unwrap_or_default(),
        );
    }
    Ok(())
}

//! `medfed bench glm`: a federated logistic regression against the same fit on pooled rows in
//! one process, in the same run, with and without secure aggregation.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use medfed_analysis::glm::{Family, GlmSpec, pooled};
use medfed_devnet::{Devnet, DevnetConfig};
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::stats;

/// The simulated network the model benchmarks (glm, cox, fedavg) share.
#[derive(clap::Args)]
pub struct Simulation {
    /// Number of sites.
    #[arg(long, default_value_t = 5)]
    pub sites: usize,
    /// Patients over all sites (split evenly).
    #[arg(long, default_value_t = 1_000_000)]
    pub patients: usize,
    /// Continuous covariates.
    #[arg(long, default_value_t = 20)]
    pub covariates: usize,
    /// Working directory (data is reused between runs of the same size).
    #[arg(long, default_value = "bench-glm")]
    pub dir: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl Simulation {
    /// The sites' extracts (written once per size) and a network serving them as `sim`,
    /// with the researcher who asks it; `net` names the network's directory.
    pub(super) async fn start(
        &self,
        net: &str,
    ) -> anyhow::Result<(Vec<PathBuf>, Devnet, medfed_hub::auth::Principal)> {
        let files = write_sites(&Extract {
            sites: self.sites,
            patients: self.patients,
            covariates: self.covariates,
            dir: &self.dir,
        })?;
        let (devnet, who) = network(&files, self.sites, &self.dir.join(net)).await?;
        Ok((files, devnet, who))
    }

    /// `x1 + x2 + … + xp`.
    pub(super) fn covariate_sum(&self) -> String {
        (1..=self.covariates)
            .map(|j| format!("x{j}"))
            .collect::<Vec<_>>()
            .join(" + ")
    }
}

#[derive(clap::Args)]
pub struct GlmArgs {
    #[command(flatten)]
    sim: Simulation,
    /// Timed fits of each kind.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// The simulated extract: `patients` split evenly over `sites`, `covariates` columns, under `dir`.
pub(super) struct Extract<'a> {
    pub sites: usize,
    pub patients: usize,
    pub covariates: usize,
    pub dir: &'a std::path::Path,
}

/// One Parquet extract per site: x1..xp ~ N(site shift, 1), y ~ Bernoulli(logit⁻¹(Xβ)), and
/// a survival outcome: death time exponential with hazard 0.01·exp(Xβ/2), censored uniformly
/// over 0–100, as whole days `fu` with `died` 1/0 (so times tie). Written once per size.
pub(super) fn write_sites(a: &Extract) -> anyhow::Result<Vec<PathBuf>> {
    use rand_distr::{Distribution, StandardNormal};
    let dir = a.dir.join(format!(
        "extract-v2-{}x{}x{}",
        a.sites, a.patients, a.covariates
    ));
    std::fs::create_dir_all(&dir)?;
    let mut fields: Vec<Field> = (1..=a.covariates)
        .map(|j| Field::new(format!("x{j}"), DataType::Float64, false))
        .collect();
    fields.push(Field::new("y", DataType::Int64, false));
    fields.push(Field::new("fu", DataType::Float64, false));
    fields.push(Field::new("died", DataType::Int64, false));
    let schema = Arc::new(Schema::new(fields));
    let per_site = a.patients / a.sites;
    (0..a.sites)
        .map(|s| {
            let path = dir.join(format!("site{s}.parquet"));
            if path.exists() {
                return Ok(path);
            }
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(s as u64);
            let shift = 0.1 * s as f64;
            let beta: Vec<f64> = (1..=a.covariates).map(|j| 0.5 / j as f64).collect();
            let mut cols: Vec<Vec<f64>> = vec![Vec::with_capacity(per_site); a.covariates];
            let mut y = Vec::with_capacity(per_site);
            let (mut fu, mut died) = (Vec::with_capacity(per_site), Vec::with_capacity(per_site));
            for _ in 0..per_site {
                let mut eta = -0.5;
                for (j, col) in cols.iter_mut().enumerate() {
                    let z: f64 = StandardNormal.sample(&mut rng);
                    let x = shift + z;
                    eta += beta[j] * x;
                    col.push(x);
                }
                y.push(i64::from(rng.random_bool(1.0 / (1.0 + (-eta).exp()))));
                let hazard = 0.01 * (0.5 * (eta + 0.5)).exp();
                let death = -rng.random::<f64>().ln() / hazard;
                let censor: f64 = rng.random_range(0.0..100.0);
                fu.push(death.min(censor).floor());
                died.push(i64::from(death <= censor));
            }
            let mut arrays: Vec<arrow::array::ArrayRef> = cols
                .into_iter()
                .map(|c| Arc::new(Float64Array::from(c)) as _)
                .collect();
            arrays.push(Arc::new(Int64Array::from(y)));
            arrays.push(Arc::new(Float64Array::from(fu)));
            arrays.push(Arc::new(Int64Array::from(died)));
            let batch = RecordBatch::try_new(schema.clone(), arrays)?;
            let mut w = parquet::arrow::ArrowWriter::try_new(
                std::fs::File::create(&path)?,
                schema.clone(),
                None,
            )?;
            w.write(&batch)?;
            w.close()?;
            Ok(path)
        })
        .collect()
}

/// A network of `sites` on loopback whose sites each serve one of `files` as table `sim`, and
/// the researcher who asks it.
pub(super) async fn network(
    files: &[PathBuf],
    sites: usize,
    dir: &std::path::Path,
) -> anyhow::Result<(Devnet, medfed_hub::auth::Principal)> {
    let cfg = DevnetConfig {
        sites,
        patients_per_site: 1_000,
        extra_tables: vec![("sim".into(), files.to_vec())],
        ..DevnetConfig::new(dir)
    };
    let net = Devnet::start(&cfg, |_, _| {}).await?;
    let who = net
        .hub
        .authenticate(Some(&format!("Bearer {}", net.token)), "bench")
        .await?;
    Ok((net, who))
}

/// The sites' extracts as one table `sim`, in this process.
pub(super) async fn pooled_context(
    files: &[PathBuf],
) -> anyhow::Result<datafusion::prelude::SessionContext> {
    let ctx = datafusion::prelude::SessionContext::new();
    let paths: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    let df = ctx.read_parquet(paths, Default::default()).await?;
    ctx.register_table("sim", df.into_view())?;
    Ok(ctx)
}

pub async fn run(a: GlmArgs) -> anyhow::Result<()> {
    let sim = &a.sim;
    if !sim.json {
        eprintln!(
            "writing {} sites x {} patients x {} covariates (once)...",
            sim.sites,
            sim.patients / sim.sites,
            sim.covariates
        );
    }
    let (files, net, who) = sim.start("net").await?;
    let formula = format!("y ~ {}", sim.covariate_sum());
    let spec = GlmSpec {
        table: "sim".into(),
        formula,
        family: Family::Binomial,
        weights: None,
        filter: None,
    };
    let fit = async |secure: bool| -> anyhow::Result<(f64, medfed_core::glm::GlmFit)> {
        let req = medfed_hub::GlmRequest {
            study: net.studies["exact"].clone(),
            spec: spec.clone(),
            sites: None,
            secure_aggregation: Some(secure),
            register: None,
        };
        let t = Instant::now();
        let f = net.hub.glm(&who, &req).await?;
        Ok((t.elapsed().as_secs_f64() * 1e3, f))
    };
    let ctx = pooled_context(&files).await?;
    let (mut fed, mut sec, mut pool) = (vec![], vec![], vec![]);
    let (mut fed_fit, mut sec_fit, mut pooled_fit) = (None, None, None);
    for _ in 0..a.runs.max(1) {
        let (ms, f) = fit(false).await?;
        fed.push(ms);
        fed_fit = Some(f);
        let (ms, f) = fit(true).await?;
        sec.push(ms);
        sec_fit = Some(f);
        let t = Instant::now();
        let p = pooled::fit(&ctx, &spec)
            .await
            .map_err(|e| anyhow::anyhow!("pooled fit: {e:?}"))?;
        pool.push(t.elapsed().as_secs_f64() * 1e3);
        pooled_fit = Some(p);
    }
    let (fed_fit, sec_fit, pooled_fit) = (fed_fit.unwrap(), sec_fit.unwrap(), pooled_fit.unwrap());
    let max_diff = |f: &medfed_core::glm::GlmFit| {
        f.coefficients
            .0
            .iter()
            .zip(&pooled_fit.beta)
            .map(|((_, c), b)| (c.estimate - b).abs())
            .fold(0.0, f64::max)
    };
    let (fed_p50, _) = stats(fed.clone());
    let (sec_p50, _) = stats(sec.clone());
    let (pool_p50, _) = stats(pool.clone());
    let out = json!({
        "sites": sim.sites, "patients": fed_fit.n, "coefficients": fed_fit.coefficients.0.len(),
        "iterations": fed_fit.iterations,
        "federated_ms": fed_p50, "secure_ms": sec_p50, "pooled_ms": pool_p50,
        "federated_over_pooled": fed_p50 / pool_p50, "secure_over_pooled": sec_p50 / pool_p50,
        "max_abs_diff_federated": max_diff(&fed_fit), "max_abs_diff_secure": max_diff(&sec_fit),
        "pooled_iterations": pooled_fit.iterations,
    });
    if sim.json {
        println!("{out}");
    } else {
        print_table(&out);
    }
    net.shutdown().await;
    Ok(())
}

fn print_table(o: &serde_json::Value) {
    println!(
        "logistic regression, {} patients over {} sites, {} coefficients, {} IRLS iterations \
         (pooled: {})",
        o["patients"], o["sites"], o["coefficients"], o["iterations"], o["pooled_iterations"]
    );
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED)
        .set_header(["fit", "p50 ms", "÷ pooled", "max |β − β_pooled|"]);
    for (name, ms, ratio, diff) in [
        (
            "federated",
            "federated_ms",
            "federated_over_pooled",
            "max_abs_diff_federated",
        ),
        (
            "federated + secure aggregation",
            "secure_ms",
            "secure_over_pooled",
            "max_abs_diff_secure",
        ),
    ] {
        t.add_row([
            name.to_string(),
            format!("{:.0}", o[ms].as_f64().unwrap_or(0.0)),
            format!("{:.2}", o[ratio].as_f64().unwrap_or(0.0)),
            format!("{:.1e}", o[diff].as_f64().unwrap_or(0.0)),
        ]);
    }
    t.add_row([
        "pooled, one process (dense IRLS)".to_string(),
        format!("{:.0}", o["pooled_ms"].as_f64().unwrap_or(0.0)),
        "1.00".into(),
        "0".into(),
    ]);
    println!("{t}");
}

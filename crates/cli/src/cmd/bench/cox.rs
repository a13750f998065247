//! `medfed bench cox`: a Cox model stratified by site, federated (one kernel step per
//! Newton–Raphson iteration at every site) against the same fit on the pooled strata in one
//! process, in the same run.

use std::path::PathBuf;
use std::time::Instant;

use medfed_analysis::kernel;
use medfed_analysis::survival::cox::{self, CoxRows, CoxSpec};
use medfed_core::kernel::{RowSource, Ties};
use serde_json::json;

use super::glm::Simulation;
use super::stats;

#[derive(clap::Args)]
pub struct CoxArgs {
    #[command(flatten)]
    sim: Simulation,
    /// Timed fits of each kind.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// The pooled reference: every site's file read in this process, one stratum each, then
/// Newton–Raphson over the strata's summed sums.
async fn pooled_fit(files: &[PathBuf], p: usize) -> anyhow::Result<(Vec<f64>, u32)> {
    let mut columns = vec!["fu".to_string(), "died".to_string()];
    columns.extend((1..=p).map(|j| format!("x{j}")));
    let rows = RowSource {
        table: "sim".into(),
        columns,
        filter: None,
    };
    let mut strata = Vec::new();
    for f in files {
        let ctx = datafusion::prelude::SessionContext::new();
        ctx.register_parquet("sim", f.display().to_string(), Default::default())
            .await?;
        let prepared = kernel::prepare(&ctx.state(), &rows).await?;
        let cols = kernel::collect(&ctx, &prepared).await?;
        strata.push(CoxRows::new(&cols[0], &cols[1], &cols[2..]));
    }
    let (beta, _, iterations) =
        cox::pooled(&strata, Ties::Efron, p).map_err(|e| anyhow::anyhow!("pooled fit: {e}"))?;
    Ok((beta, iterations))
}

pub async fn run(a: CoxArgs) -> anyhow::Result<()> {
    let sim = &a.sim;
    let (files, net, who) = sim.start("net-cox").await?;
    let req = medfed_hub::CoxRequest {
        study: net.studies["exact"].clone(),
        spec: CoxSpec {
            table: "sim".into(),
            formula: format!("Surv(fu, died) ~ {}", sim.covariate_sum()),
            ties: Ties::Efron,
            filter: None,
        },
        sites: None,
        secure_aggregation: None,
    };
    let (mut fed, mut pool) = (vec![], vec![]);
    let (mut fed_fit, mut pooled) = (None, None);
    for _ in 0..a.runs.max(1) {
        let t = Instant::now();
        fed_fit = Some(net.hub.cox(&who, &req).await?);
        fed.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        pooled = Some(pooled_fit(&files, sim.covariates).await?);
        pool.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (fit, (beta, pooled_iterations)) = (fed_fit.unwrap(), pooled.unwrap());
    let max_diff = fit
        .coefficients
        .0
        .iter()
        .zip(&beta)
        .map(|((_, c), b)| (c.estimate - b).abs())
        .fold(0.0, f64::max);
    let (fed_p50, _) = stats(fed);
    let (pool_p50, _) = stats(pool);
    let out = json!({
        "sites": sim.sites, "patients": fit.n, "events": fit.events,
        "coefficients": fit.coefficients.0.len(), "iterations": fit.iterations,
        "pooled_iterations": pooled_iterations,
        "federated_ms": fed_p50, "pooled_ms": pool_p50,
        "federated_over_pooled": fed_p50 / pool_p50, "max_abs_diff": max_diff,
    });
    if sim.json {
        println!("{out}");
    } else {
        println!(
            "Cox stratified by site, {} patients ({} events) over {} sites, {} coefficients, \
             {} Newton iterations (pooled: {})",
            out["patients"],
            out["events"],
            sim.sites,
            out["coefficients"],
            out["iterations"],
            pooled_iterations
        );
        let mut t = comfy_table::Table::new();
        t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED)
            .set_header(["fit", "p50 ms", "÷ pooled", "max |β − β_pooled|"]);
        t.add_row([
            "federated (site kernels)".to_string(),
            format!("{fed_p50:.0}"),
            format!("{:.2}", fed_p50 / pool_p50),
            format!("{max_diff:.1e}"),
        ]);
        t.add_row([
            "pooled strata, one process".to_string(),
            format!("{pool_p50:.0}"),
            "1.00".into(),
            "0".into(),
        ]);
        println!("{t}");
    }
    net.shutdown().await;
    Ok(())
}

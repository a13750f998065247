//! `medfed bench describe`: each descriptive statistic across N sites against the same
//! computation on the pooled rows in one process, in the same run.

use std::path::PathBuf;
use std::time::Instant;

use medfed_analysis::describe::{self, DescribeSpec, Kind};
use medfed_analysis::glm::pooled::run_local;
use medfed_core::describe::Statistics;
use serde_json::json;

use super::glm::{Extract, network, pooled_context, write_sites};
use super::stats;

#[derive(clap::Args)]
pub struct DescribeArgs {
    /// Number of sites.
    #[arg(long, default_value_t = 5)]
    sites: usize,
    /// Patients over all sites (split evenly).
    #[arg(long, default_value_t = 1_000_000)]
    patients: usize,
    /// Variables of the summary and the correlation matrix.
    #[arg(long, default_value_t = 10)]
    variables: usize,
    /// Timed runs of each.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Working directory (data is reused between runs of the same size; shared with bench glm).
    #[arg(long, default_value = "bench-glm")]
    dir: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// The headline number of a description, to compare federated with pooled.
fn headline(s: &Statistics) -> Vec<f64> {
    match s {
        Statistics::Summary { variables } => variables.iter().map(|m| m.variance).collect(),
        Statistics::Correlation(c) => c.matrix.iter().flatten().copied().collect(),
        Statistics::Histogram(h) => h.counts.iter().map(|c| c.unwrap_or(f64::NAN)).collect(),
        Statistics::Table(t) => t.chi_square.iter().map(|c| c.statistic).collect(),
    }
}

pub async fn run(a: DescribeArgs) -> anyhow::Result<()> {
    let covariates = a.variables.max(2);
    let files = write_sites(&Extract {
        sites: a.sites,
        patients: a.patients,
        covariates,
        dir: &a.dir,
    })?;
    let (net, who) = network(&files, a.sites, &a.dir.join("net-describe")).await?;
    let ctx = pooled_context(&files).await?;
    let vars: Vec<String> = (1..=covariates).map(|j| format!("x{j}")).collect();
    let kinds = [
        (
            "summary",
            Kind::Summary {
                variables: vars.clone(),
            },
        ),
        ("correlation", Kind::Correlation { variables: vars }),
        (
            "histogram (40 bins)",
            Kind::Histogram {
                variable: "x1".into(),
                low: -4.0,
                width: 0.2,
                bins: 40,
                quantiles: vec![0.25, 0.5, 0.75],
            },
        ),
        (
            "2-way table + chi-square",
            Kind::Table {
                rows: "y".into(),
                columns: "CAST(x2 > 0 AS INT)".into(),
            },
        ),
    ];
    let mut rows = Vec::new();
    for (name, kind) in kinds {
        let spec = DescribeSpec {
            table: "sim".into(),
            filter: None,
            kind,
        };
        let req = medfed_hub::DescribeRequest {
            study: net.studies["exact"].clone(),
            spec: spec.clone(),
            sites: None,
            secure_aggregation: None,
        };
        let (mut fed, mut pool) = (vec![], vec![]);
        let (mut fed_out, mut pool_out) = (None, None);
        for _ in 0..a.runs.max(1) {
            let t = Instant::now();
            fed_out = Some(net.hub.describe(&who, &req).await?);
            fed.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            let local = |sql: String| {
                let ctx = &ctx;
                async move { run_local(ctx, &sql).await }
            };
            let p = describe::describe(&ctx.state(), &spec, 0, local)
                .await
                .map_err(|e| anyhow::anyhow!("pooled: {e:?}"))?;
            pool.push(t.elapsed().as_secs_f64() * 1e3);
            pool_out = Some(p);
        }
        let (f, p) = (fed_out.unwrap(), pool_out.unwrap());
        let diff = headline(&f.statistics)
            .iter()
            .zip(headline(&p.statistics))
            .map(|(a, b)| ((a - b) / b.abs().max(1e-300)).abs())
            .fold(0.0, f64::max);
        let ((fed_ms, _), (pool_ms, _)) = (stats(fed), stats(pool));
        rows.push(
            json!({"statistic": name, "queries": f.queries, "federated_ms": fed_ms,
                         "pooled_ms": pool_ms, "max_rel_diff": diff}),
        );
    }
    net.shutdown().await;
    let out = json!({"sites": a.sites, "patients": a.patients, "variables": covariates,
                     "results": rows});
    if a.json {
        println!("{out}");
        return Ok(());
    }
    println!(
        "descriptive statistics, {} patients over {} sites, {} variables",
        a.patients, a.sites, covariates
    );
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED)
        .set_header([
            "statistic",
            "queries",
            "federated p50 ms",
            "pooled p50 ms",
            "max rel. diff",
        ]);
    for r in &rows {
        t.add_row([
            r["statistic"].as_str().unwrap_or_default().to_string(),
            r["queries"].to_string(),
            format!("{:.0}", r["federated_ms"].as_f64().unwrap_or(0.0)),
            format!("{:.0}", r["pooled_ms"].as_f64().unwrap_or(0.0)),
            format!("{:.1e}", r["max_rel_diff"].as_f64().unwrap_or(0.0)),
        ]);
    }
    println!("{t}");
    Ok(())
}

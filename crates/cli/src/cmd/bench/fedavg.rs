//! `medfed bench fedavg`: federated training rounds per second through the hub (each round a
//! governed `train` kernel at every site), for logistic regression and the MLP, in the clear
//! and under secure aggregation, and DP-FedAvg for logistic regression.

use std::time::Instant;

use medfed_analysis::learn::{Architecture, FedAvgSpec};
use serde_json::json;

use super::glm::Simulation;

#[derive(clap::Args)]
pub struct FedAvgArgs {
    #[command(flatten)]
    sim: Simulation,
    /// Rounds per model.
    #[arg(long, default_value_t = 10)]
    rounds: u32,
    /// Local epochs per round.
    #[arg(long, default_value_t = 1)]
    local_epochs: u32,
    /// Local mini-batch size.
    #[arg(long, default_value_t = 256)]
    batch_size: u32,
    /// MLP hidden units.
    #[arg(long, default_value_t = 32)]
    hidden: u32,
}

/// How a benchmarked run is protected.
#[derive(Clone, Copy)]
enum Mode {
    Exact,
    Secure,
    /// DP-FedAvg in the DP study at ε = 0.5 per site (its whole budget).
    Dp,
}

pub async fn run(a: FedAvgArgs) -> anyhow::Result<()> {
    let sim = &a.sim;
    let (_, net, who) = sim.start("net-fedavg").await?;
    let mut rows = Vec::new();
    let mlp = Architecture::Mlp { hidden: a.hidden };
    for (name, model, mode) in [
        ("logistic", Architecture::Logistic, Mode::Exact),
        ("logistic", Architecture::Logistic, Mode::Secure),
        ("logistic", Architecture::Logistic, Mode::Dp),
        ("mlp", mlp, Mode::Exact),
        ("mlp", mlp, Mode::Secure),
    ] {
        let dp = matches!(mode, Mode::Dp);
        // The simulated covariates are N(0.1·site, 1): ±6 holds them all.
        let bounds = (1..=sim.covariates)
            .map(|j| (format!("x{j}"), [-6.0, 6.0]))
            .collect();
        let req = medfed_hub::FedAvgRequest {
            study: net.studies[if dp { "dp" } else { "exact" }].clone(),
            spec: FedAvgSpec {
                table: "sim".into(),
                formula: format!("y ~ {}", sim.covariate_sum()),
                model,
                rounds: a.rounds,
                local_epochs: a.local_epochs,
                batch_size: a.batch_size,
                learning_rate: if dp { 2.0 } else { 0.05 },
                l2: 0.0,
                proximal_mu: 0.0,
                fraction: 1.0,
                min_sites: 2,
                tolerance: 0.0,
                seed: 1,
                clip: dp.then_some(1.0),
                bounds: if dp { bounds } else { Default::default() },
                filter: None,
            },
            sites: None,
            register: None,
            epsilon: dp.then_some(0.5),
            secure_aggregation: Some(matches!(mode, Mode::Secure)),
        };
        let t = Instant::now();
        let trained = net.hub.fedavg(&who, &req).await?;
        let secs = t.elapsed().as_secs_f64();
        let m = &trained.model;
        let first = m.history.first().and_then(|r| r.loss);
        let last = m.history.last().and_then(|r| r.loss);
        let protection = match mode {
            Mode::Exact => "exact",
            Mode::Secure => "secure aggregation",
            Mode::Dp => "DP ε = 0.5 (full batch)",
        };
        rows.push(json!({
            "model": name, "protection": protection, "parameters": m.weights.len(),
            "rounds": m.rounds, "seconds": secs, "rounds_per_second": f64::from(m.rounds) / secs,
            "rows_per_second": (sim.patients as f64 * f64::from(a.local_epochs) * f64::from(m.rounds)) / secs,
            "first_loss": first, "last_loss": last,
        }));
    }
    let out = json!({"sites": sim.sites, "patients": sim.patients, "local_epochs": a.local_epochs,
                     "batch_size": a.batch_size, "models": rows});
    if sim.json {
        println!("{out}");
    } else {
        println!(
            "FedAvg, {} patients over {} sites, {} epoch(s) of batch {} per round (rounds \
             include the planning queries' time)",
            sim.patients, sim.sites, a.local_epochs, a.batch_size
        );
        let mut t = comfy_table::Table::new();
        t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED)
            .set_header([
                "model",
                "protection",
                "parameters",
                "rounds",
                "rounds/s",
                "rows/s",
                "loss first → last",
            ]);
        for r in &rows {
            t.add_row([
                r["model"].as_str().unwrap_or("").to_string(),
                r["protection"].as_str().unwrap_or("").to_string(),
                r["parameters"].to_string(),
                r["rounds"].to_string(),
                format!("{:.2}", r["rounds_per_second"].as_f64().unwrap_or(0.0)),
                format!("{:.0}", r["rows_per_second"].as_f64().unwrap_or(0.0)),
                format!(
                    "{:.4} → {:.4}",
                    r["first_loss"].as_f64().unwrap_or(f64::NAN),
                    r["last_loss"].as_f64().unwrap_or(f64::NAN)
                ),
            ]);
        }
        println!("{t}");
    }
    net.shutdown().await;
    Ok(())
}

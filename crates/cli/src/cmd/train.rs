//! `medfed train`: federated learning through the hub (FedAvg / FedProx).

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use medfed_hub::Trained;

use crate::cmd::query::StudyArgs;
use crate::output::Format;

#[derive(clap::Subcommand)]
pub enum TrainCommand {
    /// Train logistic regression or an MLP on any table by FedAvg / FedProx.
    Fedavg(Box<FedAvgArgs>),
    /// The 30-day readmission study end to end on synthetic hospitals: federated vs each
    /// site alone vs pooled, scored on every site's held-out patients.
    Readmission(super::readmission::ReadmissionArgs),
    /// Score a registered model at each site on the rows `--where` selects (held-out
    /// patients): AUROC, AUPRC, Brier score and log-loss, computed by the sites.
    Evaluate(super::evaluate::EvaluateArgs),
}

#[derive(clap::Args)]
pub struct FedAvgArgs {
    /// Where and under which study (its terms must allow `fedavg`).
    #[command(flatten)]
    on: StudyArgs,
    /// Table whose rows are the training examples.
    #[arg(long)]
    table: String,
    /// `outcome ~ features` (0/1 outcome; R's syntax, `factor()` for categories).
    #[arg(long)]
    formula: String,
    /// logistic or mlp.
    #[arg(long, default_value = "logistic")]
    model: String,
    /// Hidden units of the MLP.
    #[arg(long, default_value_t = 16)]
    hidden: u32,
    /// Rounds at most.
    #[arg(long, default_value_t = 50)]
    rounds: u32,
    /// Local epochs per round.
    #[arg(long, default_value_t = 1)]
    local_epochs: u32,
    /// Local mini-batch size.
    #[arg(long, default_value_t = 64)]
    batch_size: u32,
    /// Local SGD step size.
    #[arg(long, default_value_t = 0.1)]
    learning_rate: f64,
    /// L2 penalty on the weights.
    #[arg(long, default_value_t = 0.0)]
    l2: f64,
    /// FedProx's proximal μ (0: FedAvg).
    #[arg(long, default_value_t = 0.0)]
    proximal_mu: f64,
    /// Share of the sites selected each round.
    #[arg(long, default_value_t = 1.0)]
    fraction: f64,
    /// Seed of selection, initialisation and shuffling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// SQL condition selecting the training rows.
    #[arg(long = "where")]
    filter: Option<String>,
    /// Keep the trained model in the hub's registry under this name.
    #[arg(long)]
    register: Option<String>,
    /// DP studies (DP-FedAvg): ε of the whole run at each site.
    #[arg(long)]
    epsilon: Option<f64>,
    /// DP studies: the L2 bound each site clips its update to.
    #[arg(long)]
    clip: Option<f64>,
    /// DP studies: an input's declared range, `name=low:high` (repeatable; every input).
    #[arg(long = "bounds", value_parser = crate::cmd::query::parse_bounds)]
    bounds: Vec<(String, (f64, f64))>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub async fn run(cmd: TrainCommand) -> anyhow::Result<()> {
    match cmd {
        TrainCommand::Fedavg(a) => fedavg(*a).await,
        TrainCommand::Readmission(a) => super::readmission::run(a).await,
        TrainCommand::Evaluate(a) => super::evaluate::run(a).await,
    }
}

async fn fedavg(a: FedAvgArgs) -> anyhow::Result<()> {
    let model = match a.model.as_str() {
        "logistic" => serde_json::json!("logistic"),
        "mlp" => serde_json::json!({"mlp": {"hidden": a.hidden}}),
        other => anyhow::bail!("unknown model {other:?}: logistic or mlp"),
    };
    let mut body = a.on.request(serde_json::json!({
        "table": a.table, "formula": a.formula, "model": model, "rounds": a.rounds,
        "local_epochs": a.local_epochs, "batch_size": a.batch_size,
        "learning_rate": a.learning_rate, "l2": a.l2, "proximal_mu": a.proximal_mu,
        "fraction": a.fraction, "seed": a.seed,
    }));
    if let Some(f) = a.filter {
        body["where"] = f.into();
    }
    if let Some(r) = a.register {
        body["register"] = r.into();
    }
    if let Some(e) = a.epsilon {
        body["epsilon"] = e.into();
    }
    if let Some(c) = a.clip {
        body["clip"] = c.into();
    }
    if !a.bounds.is_empty() {
        let bounds: std::collections::BTreeMap<_, _> = a
            .bounds
            .into_iter()
            .map(|(n, (lo, hi))| (n, [lo, hi]))
            .collect();
        body["bounds"] = serde_json::json!(bounds);
    }
    let trained: Trained = a.on.hub.client().post("/v1/analyses/fedavg", &body).await?;
    let m = &trained.model;
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&trained)?),
        Format::Csv => {
            println!("round,selected,answered,loss,update_norm");
            for r in &m.history {
                println!(
                    "{},{},{},{},{}",
                    r.round,
                    r.selected.join(";"),
                    r.answered.join(";"),
                    r.loss.map(|l| l.to_string()).unwrap_or_default(),
                    r.update_norm
                );
            }
        }
        Format::Table => {
            println!(
                "{} {:?}: {} — {} rounds ({}), {} rows",
                m.algorithm,
                m.model,
                m.formula,
                m.rounds,
                if m.converged {
                    "converged"
                } else {
                    "not converged"
                },
                m.n
            );
            if let Some(c) = &m.coefficients {
                let mut t = Table::new();
                t.load_preset(UTF8_FULL_CONDENSED)
                    .set_header(["", "coefficient"]);
                for (name, b) in c {
                    t.add_row([name.clone(), format!("{b:.6}")]);
                }
                println!("{t}");
            }
            let mut t = Table::new();
            t.load_preset(UTF8_FULL_CONDENSED)
                .set_header(["round", "sites", "loss", "‖Δw‖"]);
            let every = (m.history.len() / 10).max(1);
            for r in m
                .history
                .iter()
                .filter(|r| (r.round as usize).is_multiple_of(every) || r.round == 1)
            {
                t.add_row([
                    r.round.to_string(),
                    r.answered.join(", "),
                    r.loss
                        .map(|l| format!("{l:.5}"))
                        .unwrap_or_else(|| "–".into()),
                    format!("{:.2e}", r.update_norm),
                ]);
            }
            println!("{t}");
        }
    }
    if let (Some(r), false) = (&trained.registered, matches!(a.format, Format::Json)) {
        eprintln!("registered as {} version {}", r.model, r.version);
    }
    Ok(())
}

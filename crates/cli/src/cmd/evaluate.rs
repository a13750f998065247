//! `medfed train evaluate`: a registered model scored at each site on the rows a condition
//! selects (its held-out patients), by the sites themselves (`POST /v1/analyses/evaluate`).

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use medfed_analysis::learn::Evaluation;

use crate::cmd::model::versions_of;
use crate::cmd::query::StudyArgs;
use crate::output::Format;

#[derive(clap::Args)]
pub struct EvaluateArgs {
    /// Where and under which study (its terms must allow `fedavg`).
    #[command(flatten)]
    on: StudyArgs,
    /// The registered model (from `medfed train fedavg --register NAME`).
    #[arg(long)]
    model: String,
    /// Its version (default: the latest).
    #[arg(long)]
    model_version: Option<i64>,
    /// Table whose rows are scored (default: the one it was trained on).
    #[arg(long)]
    table: Option<String>,
    /// SQL condition selecting the rows to score, e.g. "holdout = 1".
    #[arg(long = "where")]
    filter: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub async fn run(a: EvaluateArgs) -> anyhow::Result<()> {
    let versions = versions_of(&a.on.hub, &a.model, a.model_version).await?;
    let v = versions.last().expect("versions_of returns one at least");
    let art = &v.artifact;
    if art.get("weights").is_none() {
        anyhow::bail!(
            "{} version {} is a {} fit, not a trained model: only FedAvg models are scored",
            v.model,
            v.version,
            v.kind
        );
    }
    let table = a
        .table
        .clone()
        .or_else(|| v.parameters["table"].as_str().map(str::to_string))
        .ok_or_else(|| anyhow::anyhow!("say which table to score with --table"))?;
    let mut body = a.on.request(serde_json::json!({
        "table": table, "formula": art["formula"], "model": art["model"],
        "weights": art["weights"], "scaling": art["scaling"],
    }));
    if let Some(f) = &a.filter {
        body["where"] = f.clone().into();
    }
    let scored: Evaluation =
        a.on.hub
            .client()
            .post("/v1/analyses/evaluate", &body)
            .await?;
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&scored)?),
        Format::Csv => {
            println!("site,n,positives,auroc,auprc,brier,log_loss");
            for (site, m) in &scored.metrics {
                println!(
                    "{site},{},{},{},{},{},{}",
                    m.n, m.positives, m.auroc, m.auprc, m.brier, m.log_loss
                );
            }
        }
        Format::Table => {
            println!("{} v{} ({}) on {table}", v.model, v.version, v.kind);
            let mut t = Table::new();
            t.load_preset(UTF8_FULL_CONDENSED).set_header([
                "site",
                "rows",
                "positives",
                "AUROC",
                "AUPRC",
                "Brier",
                "log-loss",
            ]);
            for (site, m) in &scored.metrics {
                t.add_row([
                    site.clone(),
                    m.n.to_string(),
                    m.positives.to_string(),
                    format!("{:.3}", m.auroc),
                    format!("{:.3}", m.auprc),
                    format!("{:.4}", m.brier),
                    format!("{:.4}", m.log_loss),
                ]);
            }
            println!("{t}");
            for (site, o) in scored
                .sites
                .iter()
                .filter(|(s, _)| !scored.metrics.contains_key(*s))
            {
                println!(
                    "{site}: {} {}",
                    o.status,
                    o.message.as_deref().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}

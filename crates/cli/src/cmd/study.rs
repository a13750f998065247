//! `medfed study propose|approve|reject|list|show`: studies over the hub's HTTP API.

use comfy_table::Table;
use medfed_core::study::{PrivacyMode, StudyTerms};
use serde_json::{Value, json};

use super::query::HubArgs;

#[derive(clap::Subcommand)]
pub enum StudyCommand {
    /// Propose a study (researchers and clinicians).
    Propose {
        #[command(flatten)]
        hub: HubArgs,
        #[arg(long)]
        title: String,
        #[arg(long)]
        purpose: String,
        /// Sites asked to take part (repeatable).
        #[arg(long = "site", required = true)]
        sites: Vec<String>,
        /// Analyses it needs (repeatable): sql, stats, glm, survival, fedavg.
        #[arg(long = "analysis", default_value = "sql")]
        analyses: Vec<String>,
        /// Tables it needs (repeatable).
        #[arg(long = "table", required = true)]
        tables: Vec<String>,
        /// Columns it needs, as table.column (repeatable; none: whole tables).
        #[arg(long = "column")]
        columns: Vec<String>,
        /// exact or dp.
        #[arg(long, default_value = "exact")]
        privacy: String,
        /// Total ε per site (DP studies).
        #[arg(long)]
        epsilon: Option<f64>,
        /// Colleagues who may also run it (repeatable).
        #[arg(long = "member")]
        members: Vec<String>,
    },
    /// Approve a study for a site you are custodian of.
    Approve {
        #[command(flatten)]
        on: Decision,
        /// Why (e.g. the ethics approval reference).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Reject a study for a site you are custodian of.
    Reject {
        #[command(flatten)]
        on: Decision,
        /// Why (shown to the researcher).
        #[arg(long)]
        reason: String,
    },
    /// List studies and each site's decision.
    List {
        #[command(flatten)]
        hub: HubArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Which study, for which site.
#[derive(clap::Args)]
pub struct Decision {
    #[command(flatten)]
    hub: HubArgs,
    /// The study id.
    study: String,
    /// Your site.
    #[arg(long)]
    site: String,
}

pub async fn run(cmd: StudyCommand) -> anyhow::Result<()> {
    match cmd {
        StudyCommand::Propose {
            hub,
            title,
            purpose,
            sites,
            analyses,
            tables,
            columns,
            privacy,
            epsilon,
            members,
        } => {
            let privacy = match privacy.as_str() {
                "exact" => PrivacyMode::Exact,
                "dp" => PrivacyMode::Dp,
                other => anyhow::bail!("--privacy must be exact or dp, not {other}"),
            };
            let terms = StudyTerms {
                analyses,
                tables,
                columns,
                privacy,
                epsilon,
            };
            let body = json!({"title": title, "purpose": purpose, "sites": sites,
                "members": members, "terms": terms});
            let study: Value = hub.client().post("/v1/studies", &body).await?;
            println!(
                "proposed study {} (pending at every site)",
                study["id"].as_str().unwrap_or("?")
            );
        }
        StudyCommand::Approve { on, reason } => decide(&on, "approve", reason).await?,
        StudyCommand::Reject { on, reason } => decide(&on, "reject", Some(reason)).await?,
        StudyCommand::List { hub, json } => {
            let v: Value = hub.client().get("/v1/studies").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v["studies"])?);
                return Ok(());
            }
            let mut table = Table::new();
            table.set_header(["id", "title", "proposer", "privacy", "sites"]);
            for s in v["studies"].as_array().into_iter().flatten() {
                let sites = s["sites"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, d)| format!("{k}: {}", d["state"].as_str().unwrap_or("?")))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                table.add_row([
                    s["id"].as_str().unwrap_or(""),
                    s["title"].as_str().unwrap_or(""),
                    s["proposer"].as_str().unwrap_or(""),
                    s["terms"]["privacy"].as_str().unwrap_or(""),
                    &sites,
                ]);
            }
            println!("{table}");
        }
    }
    Ok(())
}

async fn decide(on: &Decision, decision: &str, reason: Option<String>) -> anyhow::Result<()> {
    let Decision { hub, study, site } = on;
    let body = json!({"site": site, "decision": decision, "reason": reason});
    let _: Value = hub
        .client()
        .post(&format!("/v1/studies/{study}/decisions"), &body)
        .await?;
    println!("study {study}: {decision}d for {site}");
    Ok(())
}

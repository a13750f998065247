//! `medfed review list|show|approve|reject`: releases held for custodians' review (a check the
//! network or a site marked "review" fired), over the hub's HTTP API.

use comfy_table::Table;
use serde_json::{Value, json};

use super::query::HubArgs;

#[derive(clap::Subcommand)]
pub enum ReviewCommand {
    /// The reviews you may see: custodians their sites', researchers their own.
    List {
        #[command(flatten)]
        hub: HubArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One review, with its evidence and (to reviewers, or once approved) its result as JSON.
    Show {
        #[command(flatten)]
        hub: HubArgs,
        id: String,
    },
    /// Approve a held release for your site(s).
    Approve {
        #[command(flatten)]
        on: Decision,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Reject a held release for your site(s); it is then never released.
    Reject {
        #[command(flatten)]
        on: Decision,
        /// Why (shown to the researcher, kept in the audit trail).
        #[arg(long)]
        reason: String,
    },
}

/// Which review, for which of your sites.
#[derive(clap::Args)]
pub struct Decision {
    #[command(flatten)]
    hub: HubArgs,
    /// The review id (`r-…`).
    id: String,
    /// Your site (default: every contributing site you are custodian of).
    #[arg(long)]
    site: Option<String>,
}

pub async fn run(cmd: ReviewCommand) -> anyhow::Result<()> {
    match cmd {
        ReviewCommand::List { hub, json } => {
            let reviews: Vec<Value> = hub.client().get("/v1/reviews").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reviews)?);
                return Ok(());
            }
            let mut table = Table::new();
            table.set_header(["id", "status", "study", "researcher", "checks", "sites"]);
            for r in &reviews {
                table.add_row([
                    text(&r["id"]),
                    text(&r["status"]),
                    text(&r["study"]),
                    text(&r["researcher"]),
                    keys(&r["checks"], |_| String::new()),
                    keys(&r["sites"], |d| format!(": {}", text(&d["decision"]))),
                ]);
            }
            println!("{table}");
        }
        ReviewCommand::Show { hub, id } => {
            let r: Value = hub.client().get(&format!("/v1/reviews/{id}")).await?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
        ReviewCommand::Approve { on, reason } => decide(&on, "approve", reason).await?,
        ReviewCommand::Reject { on, reason } => decide(&on, "reject", Some(reason)).await?,
    }
    Ok(())
}

async fn decide(on: &Decision, decision: &str, reason: Option<String>) -> anyhow::Result<()> {
    let body = json!({ "decision": decision, "site": on.site, "reason": reason });
    let r: Value = on
        .hub
        .client()
        .post(&format!("/v1/reviews/{}", on.id), &body)
        .await?;
    println!(
        "review {}: {decision}d; now {} ({})",
        on.id,
        text(&r["status"]),
        keys(&r["sites"], |d| format!(": {}", text(&d["decision"])))
    );
    Ok(())
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

/// An object's keys, each followed by `suffix` of its value, comma-separated.
fn keys(v: &Value, suffix: impl Fn(&Value) -> String) -> String {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, d)| format!("{k}{}", suffix(d)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

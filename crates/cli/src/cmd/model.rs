//! `medfed model list|show|export`: the hub's model registry.

use std::path::PathBuf;

use clap::Subcommand;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use medfed_hub::state::ModelVersion;

use crate::cmd::query::HubArgs;

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Every model version you may see: name, version, kind, study, n, ε, sites.
    List {
        #[command(flatten)]
        hub: HubArgs,
    },
    /// One model's versions, whole (parameters, metrics, coefficients, audit digest) as JSON.
    Show {
        #[command(flatten)]
        hub: HubArgs,
        /// The model's name.
        name: String,
        /// Only this version (default: all).
        #[arg(long)]
        model_version: Option<i64>,
    },
    /// A model version's coefficients as JSON, to score with elsewhere.
    Export {
        #[command(flatten)]
        hub: HubArgs,
        /// The model's name.
        name: String,
        /// The version (default: the latest).
        #[arg(long)]
        model_version: Option<i64>,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub async fn run(c: ModelCommand) -> anyhow::Result<()> {
    match c {
        ModelCommand::List { hub } => {
            let versions: Vec<ModelVersion> = hub.client().get("/v1/models").await?;
            let mut t = Table::new();
            t.load_preset(UTF8_FULL_CONDENSED).set_header([
                "model",
                "version",
                "kind",
                "study",
                "n",
                "ε",
                "sites",
                "trained by",
            ]);
            for v in &versions {
                t.add_row([
                    v.model.clone(),
                    v.version.to_string(),
                    v.kind.clone(),
                    v.study.clone(),
                    v.metrics["n"].to_string(),
                    format!("{}", v.epsilon),
                    v.sites.join(", "),
                    v.trained_by.clone(),
                ]);
            }
            println!("{t}");
        }
        ModelCommand::Show {
            hub,
            name,
            model_version,
        } => {
            let versions = versions_of(&hub, &name, model_version).await?;
            println!("{}", serde_json::to_string_pretty(&versions)?);
        }
        ModelCommand::Export {
            hub,
            name,
            model_version,
            out,
        } => {
            let versions = versions_of(&hub, &name, model_version).await?;
            let v = versions.last().expect("versions_of returns one at least");
            let doc = serde_json::json!({
                "model": v.model, "version": v.version, "kind": v.kind,
                "model_spec": v.artifact, "trained_on": v.parameters, "metrics": v.metrics,
                "audit_digest": v.audit_digest,
            });
            let text = serde_json::to_string_pretty(&doc)?;
            match out {
                Some(path) => std::fs::write(&path, text + "\n")?,
                None => println!("{text}"),
            }
        }
    }
    Ok(())
}

pub(crate) async fn versions_of(
    hub: &HubArgs,
    name: &str,
    version: Option<i64>,
) -> anyhow::Result<Vec<ModelVersion>> {
    let all: Vec<ModelVersion> = hub.client().get(&format!("/v1/models/{name}")).await?;
    let chosen: Vec<ModelVersion> = all
        .into_iter()
        .filter(|v| version.is_none_or(|n| v.version == n))
        .collect();
    if chosen.is_empty() {
        anyhow::bail!("{name} has no version {}", version.unwrap_or_default());
    }
    Ok(chosen)
}

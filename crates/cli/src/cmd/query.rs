//! `medfed query`: a researcher's command-line client of the hub's HTTP API.

use crate::client::HubClient;
use crate::output::{Format, print_result};

/// Where the hub is and who is asking (shared by `query` and `study`).
#[derive(clap::Args)]
pub struct HubArgs {
    /// The hub's URL, e.g. http://127.0.0.1:8080 (see demo.json).
    #[arg(long, env = "MEDFED_HUB")]
    pub hub: String,
    /// Bearer token: a medfed API token or an SSO JWT (or set MEDFED_TOKEN).
    #[arg(long, env = "MEDFED_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl HubArgs {
    pub fn client(&self) -> HubClient {
        HubClient::new(&self.hub, self.token.clone())
    }
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    hub: HubArgs,
    /// The approved study this query runs under (or set MEDFED_STUDY).
    #[arg(long, env = "MEDFED_STUDY")]
    study: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Ask only these sites (repeatable); default: every site that approved the study.
    #[arg(long = "site")]
    sites: Vec<String>,
    /// The aggregate SQL query over OMOP tables.
    sql: String,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let result = a.hub.client().query(&a.sql, &a.study, &a.sites).await?;
    print_result(&result, a.format);
    Ok(())
}

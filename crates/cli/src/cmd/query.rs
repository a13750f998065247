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

/// The hub, the caller, the study an analysis runs under and the sites to ask (shared by
/// `query`, `glm`, `km` and `describe`).
#[derive(clap::Args)]
pub struct StudyArgs {
    #[command(flatten)]
    pub hub: HubArgs,
    /// The approved study this runs under (or set MEDFED_STUDY); its terms must allow the
    /// analysis.
    #[arg(long, env = "MEDFED_STUDY")]
    pub study: String,
    /// Ask only these sites (repeatable); default: every site that approved the study.
    #[arg(long = "site")]
    pub sites: Vec<String>,
}

impl StudyArgs {
    /// An analysis request: `fields` plus the study and, if any were named, the sites.
    pub fn request(&self, fields: serde_json::Value) -> serde_json::Value {
        let mut body = serde_json::json!({ "study": self.study });
        if !self.sites.is_empty() {
            body["sites"] = serde_json::json!(self.sites);
        }
        if let (Some(b), serde_json::Value::Object(f)) = (body.as_object_mut(), fields) {
            b.extend(f);
        }
        body
    }
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    on: StudyArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// DP studies: ε to spend at each site (default: the network's, 0.1).
    #[arg(long)]
    epsilon: Option<f64>,
    /// DP studies: bounds of a summed column, `column=low:high` (repeatable); values are clamped.
    #[arg(long = "bounds", value_parser = parse_bounds)]
    bounds: Vec<(String, (f64, f64))>,
    /// DP studies: rows one person may contribute (default 1).
    #[arg(long)]
    max_rows_per_person: Option<u32>,
    /// Exact studies: sum the sites' partials under secure aggregation, so the hub sees only
    /// the network's sum (default: the network's `[privacy] secure_aggregation`).
    #[arg(long)]
    secure_aggregation: bool,
    /// The aggregate SQL query over OMOP tables.
    sql: String,
}

pub(crate) fn parse_bounds(s: &str) -> Result<(String, (f64, f64)), String> {
    let err = || format!("expected column=low:high, not `{s}`");
    let (column, range) = s.split_once('=').ok_or_else(err)?;
    let (lo, hi) = range.split_once(':').ok_or_else(err)?;
    let lo: f64 = lo.trim().parse().map_err(|_| err())?;
    let hi: f64 = hi.trim().parse().map_err(|_| err())?;
    Ok((column.trim().to_string(), (lo, hi)))
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let mut options = serde_json::json!({});
    if let Some(e) = a.epsilon {
        options["epsilon"] = e.into();
    }
    if !a.bounds.is_empty() {
        let bounds: std::collections::BTreeMap<_, _> = a.bounds.into_iter().collect();
        options["bounds"] = serde_json::json!(bounds);
    }
    if let Some(l) = a.max_rows_per_person {
        options["max_rows_per_person"] = l.into();
    }
    if a.secure_aggregation {
        options["secure_aggregation"] = true.into();
    }
    let result =
        a.on.hub
            .client()
            .query_with(&a.sql, &a.on.study, &a.on.sites, options)
            .await?;
    print_result(&result, a.format);
    Ok(())
}

//! `medfed glm`: fit an exact federated GLM through the hub, printed as R prints one.

use medfed_core::glm::GlmFit;

use crate::cmd::query::StudyArgs;
use crate::output::{Format, glm_table};

#[derive(clap::Args)]
pub struct Args {
    /// Where and under which study (its terms must allow `glm`).
    #[command(flatten)]
    on: StudyArgs,
    /// The table whose rows are the observations (OMOP or an extra table the sites declare).
    #[arg(long)]
    table: String,
    /// R model formula, e.g. "y ~ a + b*c + factor(g)" (`- 1` drops the intercept,
    /// `offset(log(t))` adds an offset).
    #[arg(long)]
    formula: String,
    /// gaussian, binomial (0/1 outcome, logit) or poisson (counts, log).
    #[arg(long, default_value = "gaussian")]
    family: String,
    /// Column of prior weights.
    #[arg(long)]
    weights: Option<String>,
    /// SQL condition selecting the rows to use (besides complete cases).
    #[arg(long = "where")]
    filter: Option<String>,
    /// Sum each iteration's XᵀWX and XᵀWz under secure aggregation.
    #[arg(long)]
    secure_aggregation: bool,
    /// Keep the released fit in the hub's model registry under this name (a new version).
    #[arg(long)]
    register: Option<String>,
    /// Output format (json: R's names, `{"n", "df_residual", "coefficients": {...}, ...}`).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let family: medfed_analysis::glm::Family =
        a.family.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let mut body = a.on.request(serde_json::json!({
        "table": a.table,
        "formula": a.formula,
        "family": family,
    }));
    if let Some(w) = a.weights {
        body["weights"] = w.into();
    }
    if let Some(f) = a.filter {
        body["where"] = f.into();
    }
    if a.secure_aggregation {
        body["secure_aggregation"] = true.into();
    }
    if let Some(name) = a.register {
        body["register"] = name.into();
    }
    let fit: GlmFit = a.on.hub.client().post("/v1/analyses/glm", &body).await?;
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&fit)?),
        Format::Csv => {
            println!("term,estimate,std_error,{},p,ci_low,ci_high", fit.statistic);
            for (name, c) in &fit.coefficients.0 {
                println!(
                    "\"{name}\",{},{},{},{},{},{}",
                    c.estimate, c.std_error, c.z, c.p, c.ci95[0], c.ci95[1]
                );
            }
        }
        Format::Table => println!("{}", glm_table(&fit)),
    }
    if let (Some(r), false) = (&fit.registered, matches!(a.format, Format::Json)) {
        eprintln!("registered as {} version {}", r.model, r.version);
    }
    Ok(())
}

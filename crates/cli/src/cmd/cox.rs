//! `medfed cox`: a Cox proportional-hazards model stratified by site, through the hub.

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use medfed_core::survival::CoxFit;

use crate::cmd::query::StudyArgs;
use crate::output::Format;

#[derive(clap::Args)]
pub struct Args {
    /// Where and under which study (its terms must allow `survival`).
    #[command(flatten)]
    on: StudyArgs,
    /// Table with one row per person (or episode).
    #[arg(long)]
    table: String,
    /// R formula: `Surv(time, event) ~ age + factor(sex)`.
    #[arg(long)]
    formula: String,
    /// Tied event times: efron (R's default) or breslow.
    #[arg(long, default_value = "efron")]
    ties: String,
    /// SQL condition selecting the rows to use.
    #[arg(long = "where")]
    filter: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let mut body = a.on.request(serde_json::json!({
        "table": a.table, "formula": a.formula, "ties": a.ties,
    }));
    if let Some(f) = a.filter {
        body["where"] = f.into();
    }
    let fit: CoxFit = a.on.hub.client().post("/v1/analyses/cox", &body).await?;
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&fit)?),
        Format::Csv => {
            println!("term,coef,exp_coef,se_coef,z,p,hr_low,hr_high");
            for (name, c) in &fit.coefficients.0 {
                let hr = &fit.hazard_ratios[name];
                println!(
                    "\"{name}\",{},{},{},{},{},{},{}",
                    c.estimate, hr.estimate, c.std_error, c.z, c.p, hr.lower, hr.upper
                );
            }
        }
        Format::Table => println!("{}", cox_table(&fit)),
    }
    Ok(())
}

/// R's `summary(coxph(...))` layout.
fn cox_table(f: &CoxFit) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header([
        "",
        "coef",
        "exp(coef)",
        "se(coef)",
        "z",
        "Pr(>|z|)",
        "lower .95",
        "upper .95",
    ]);
    for (name, c) in &f.coefficients.0 {
        let hr = &f.hazard_ratios[name];
        t.add_row([
            name.clone(),
            format!("{:.6}", c.estimate),
            format!("{:.6}", hr.estimate),
            format!("{:.6}", c.std_error),
            format!("{:.3}", c.z),
            format!("{:.3e}", c.p),
            format!("{:.4}", hr.lower),
            format!("{:.4}", hr.upper),
        ]);
    }
    let lr = &f.likelihood_ratio;
    format!(
        "Cox model stratified by {} ({} ties): {}\n{t}\nn = {}, events = {}; {} Newton \
         iterations{}\nLikelihood ratio test = {:.3} on {} df, p = {:.3e}",
        f.strata,
        f.ties,
        f.formula,
        f.n,
        f.events,
        f.iterations,
        if f.converged { "" } else { " (NOT converged)" },
        lr.statistic,
        lr.df,
        lr.p
    )
}

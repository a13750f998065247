//! `medfed km`: federated Kaplan–Meier curves through the hub.

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use medfed_core::survival::KmFit;

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
    /// Follow-up time column.
    #[arg(long)]
    time: String,
    /// Event column: 1 event, 0 censored.
    #[arg(long)]
    event: String,
    /// One curve per value of this column.
    #[arg(long)]
    group: Option<String>,
    /// Bin width, in the time column's unit.
    #[arg(long)]
    bin_width: f64,
    /// End of the last bin.
    #[arg(long)]
    max_time: f64,
    /// SQL condition selecting the rows to use.
    #[arg(long = "where")]
    filter: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let mut body = a.on.request(serde_json::json!({
        "table": a.table, "time": a.time, "event": a.event,
        "bin_width": a.bin_width, "max_time": a.max_time,
    }));
    if let Some(g) = a.group {
        body["group"] = g.into();
    }
    if let Some(f) = a.filter {
        body["where"] = f.into();
    }
    let fit: KmFit = a.on.hub.client().post("/v1/analyses/km", &body).await?;
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&fit)?),
        Format::Csv => {
            println!("group,start,end,at_risk,events,survival,lower,upper");
            for c in &fit.curves {
                for b in &c.bins {
                    println!(
                        "\"{}\",{},{},{},{},{},{},{}",
                        c.group, b.start, b.end, b.at_risk, b.events, b.survival, b.lower, b.upper
                    );
                }
            }
        }
        Format::Table => {
            for c in &fit.curves {
                let mut t = Table::new();
                t.load_preset(UTF8_FULL_CONDENSED)
                    .set_header(["from", "to", "at risk", "events", "survival", "95% CI"]);
                for b in &c.bins {
                    t.add_row([
                        format!("{}", b.start),
                        format!("{}", b.end),
                        b.at_risk.to_string(),
                        b.events.to_string(),
                        format!("{:.4}", b.survival),
                        format!("{:.4} – {:.4}", b.lower, b.upper),
                    ]);
                }
                println!("{}: {} people\n{t}", c.group, c.n);
                if let Some(at) = c.truncated_at {
                    println!("(stops at {at}: fewer than k people still at risk)");
                }
            }
            for g in &fit.withheld_groups {
                println!("group {g} withheld: fewer than k people");
            }
        }
    }
    Ok(())
}

//! `medfed ingest`, `medfed site listen-hl7`, `medfed site rotate-key`

use std::path::PathBuf;
use std::sync::Arc;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use indicatif::{ProgressBar, ProgressStyle};
use medfed_ingest::{Inputs, Phase, Report};

#[derive(clap::Args)]
pub struct Args {
    /// The site directory (keys/, bronze/, silver/, omop/, quarantine/, report.json).
    #[arg(long)]
    site: PathBuf,
    /// FHIR R4 Bundle JSON, Bulk Data .ndjson, or a directory of them.
    #[arg(long, num_args = 1..)]
    fhir: Vec<PathBuf>,
    /// Files of HL7 v2 messages (ADT A01/A03/A04/A08, ORU^R01).
    #[arg(long, num_args = 1..)]
    hl7: Vec<PathBuf>,
    /// CSV files; each needs a --mapping (given in the same order).
    #[arg(long, num_args = 1..)]
    csv: Vec<PathBuf>,
    /// TOML mapping specs of the CSV files.
    #[arg(long, num_args = 1..)]
    mapping: Vec<PathBuf>,
    /// Print the report as JSON instead of tables.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if a.csv.len() != a.mapping.len() {
        anyhow::bail!(
            "{} --csv files but {} --mapping specs: give one mapping per CSV",
            a.csv.len(),
            a.mapping.len()
        );
    }
    let inputs = Inputs {
        fhir: a.fhir,
        hl7: a.hl7,
        csv: a.csv.into_iter().zip(a.mapping).collect(),
    };
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{prefix:>8} {bar:40.cyan/blue} {pos:>6}/{len} {msg}")
            .expect("valid template"),
    );
    let progress = |phase: Phase, done: u64, total: u64| {
        let (prefix, unit) = match phase {
            Phase::Store => ("bronze", "inputs"),
            Phase::Parse => ("parse", "objects"),
            Phase::Check => ("silver", "facts"),
            Phase::Write => ("gold", "tables"),
        };
        bar.set_prefix(prefix);
        bar.set_message(unit);
        bar.set_length(total);
        bar.set_position(done);
    };
    let today = chrono::Utc::now().date_naive();
    let report = medfed_ingest::run(&a.site, &inputs, today, &progress)?;
    bar.finish_and_clear();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&a.site, &report);
    }
    if !report.balanced() {
        anyhow::bail!(
            "the report does not balance (in ≠ loaded + quarantined): this is a bug, please report it"
        );
    }
    Ok(())
}

/// The report as the custodian reads it.
pub fn print_report(site: &std::path::Path, r: &Report) {
    let records: usize = r.records.values().sum();
    println!(
        "{} input object(s) ({} new), {records} records read in {:.2} s",
        r.inputs.len(),
        r.new_inputs,
        r.seconds
    );
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "table",
        "in",
        "loaded",
        "quarantined",
        "rows",
        "mapped",
        "top quarantine rules",
    ]);
    for (name, tr) in &r.tables {
        let mapped = tr
            .coverage
            .as_ref()
            .filter(|c| c.coded > 0)
            .map(|c| format!("{:.0}%", 100.0 * c.mapped as f64 / c.coded as f64))
            .unwrap_or_default();
        let mut rules: Vec<_> = tr.rules.iter().collect();
        rules.sort_by(|a, b| b.1.cmp(a.1));
        let rules = rules
            .iter()
            .take(3)
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        t.add_row([
            name.clone(),
            tr.received.to_string(),
            tr.loaded.to_string(),
            tr.quarantined.to_string(),
            tr.rows.to_string(),
            mapped,
            rules,
        ]);
    }
    println!("{t}");
    let unmapped: Vec<String> = r
        .tables
        .iter()
        .filter_map(|(n, t)| t.coverage.as_ref().map(|c| (n, c)))
        .flat_map(|(n, c)| {
            c.unmapped
                .iter()
                .take(3)
                .map(move |(code, k)| format!("{code} ({k} in {n})"))
        })
        .take(8)
        .collect();
    if !unmapped.is_empty() {
        println!(
            "most frequent unmapped codes (add them to {}/vocab/*.csv): {}",
            site.display(),
            unmapped.join(", ")
        );
    }
    println!(
        "every record loaded or quarantined: {}; {} duplicate(s); report: {}",
        if r.balanced() { "yes" } else { "NO" },
        r.duplicates,
        site.join("report.json").display()
    );
}

/// `medfed site listen-hl7`: stores each received message in bronze and ACKs it.
pub async fn listen_hl7(site: PathBuf, bind: String, port: u16) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind((bind.as_str(), port)).await?;
    tracing::info!(
        "MLLP listener on {}; messages go to {}/bronze/hl7",
        listener.local_addr()?,
        site.display()
    );
    let handler: medfed_ingest::source::hl7::mllp::Handler =
        Arc::new(move |message: &str| medfed_ingest::receive_hl7(&site, message));
    tokio::select! {
        r = medfed_ingest::source::hl7::mllp::serve(listener, handler) => r?,
        _ = super::shutdown_signal() => {}
    }
    Ok(())
}

/// `medfed site rotate-key`.
pub fn rotate_key(site: PathBuf) -> anyhow::Result<()> {
    let r = medfed_ingest::rotate_key(&site).map_err(anyhow::Error::msg)?;
    println!(
        "key {} retired, key {} in {}: {} keyring(s) re-wrapped, {} sealed file(s) re-sealed",
        r.old,
        r.new,
        medfed_ingest::key_path(&site).display(),
        r.keyrings,
        r.sealed
    );
    Ok(())
}

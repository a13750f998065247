//! Printing results as a table, JSON or CSV.

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use medfed_core::result::{QueryResult, SiteStatus};
use serde_json::Value;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{}", (f * 1e6).round() / 1e6),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One line naming each site's outcome, e.g. `sites: north answered (12 ms), south timed out`.
pub fn site_line(r: &QueryResult) -> String {
    let parts: Vec<String> = r
        .sites
        .iter()
        .map(|(name, o)| match (&o.status, &o.message) {
            (SiteStatus::Answered, _) => format!("{name} answered ({:.0} ms)", o.elapsed_ms),
            (status, Some(m)) => format!("{name} {status}: {m}"),
            (status, None) => format!("{name} {status}"),
        })
        .collect();
    let partial = if r.is_partial() {
        "  [PARTIAL RESULT]"
    } else {
        ""
    };
    format!("sites: {}{partial}", parts.join(", "))
}

pub fn table(r: &QueryResult) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(&r.columns);
    for row in &r.rows {
        t.add_row(row.iter().map(cell));
    }
    t.to_string()
}

pub fn print_result(r: &QueryResult, format: Format) {
    match format {
        Format::Table => {
            println!("{}", table(r));
            println!("{}", site_line(r));
        }
        Format::Json => println!("{}", serde_json::to_string_pretty(r).expect("serialisable")),
        Format::Csv => {
            println!(
                "{}",
                r.columns
                    .iter()
                    .map(|c| csv_field(c))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            for row in &r.rows {
                println!(
                    "{}",
                    row.iter()
                        .map(|v| csv_field(&cell(v)))
                        .collect::<Vec<_>>()
                        .join(",")
                );
            }
            eprintln!("{}", site_line(r));
        }
    }
}

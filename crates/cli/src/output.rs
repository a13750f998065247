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
    let suppressed: std::collections::BTreeSet<usize> =
        r.privacy.suppressed.iter().map(|s| s.row).collect();
    for (i, row) in r.rows.iter().enumerate() {
        let hidden = suppressed.contains(&i);
        t.add_row(row.iter().map(|v| match v {
            Value::Null if hidden => "suppressed".to_string(),
            v => cell(v),
        }));
    }
    t.to_string()
}

/// What protected the result, in a few lines: suppressed rows, noise, ε spent and left.
pub fn privacy_lines(r: &QueryResult) -> Vec<String> {
    let p = &r.privacy;
    let mut out = Vec::new();
    for s in &p.suppressed {
        out.push(format!("row {} suppressed: {}", s.row + 1, s.reason));
    }
    if p.mode == "dp" {
        out.push(format!(
            "privacy: {} — ε = {} (δ = {:e}) spent at each site",
            p.mechanism.as_deref().unwrap_or("differential privacy"),
            p.epsilon,
            p.delta
        ));
        for (stat, n) in &p.noise {
            out.push(format!(
                "  noise on {stat}: scale {:.3} per site, 95% of merged noise within ±{:.2}",
                n.scale_per_site, n.ci95
            ));
        }
        let left: Vec<String> = p
            .sites
            .iter()
            .filter_map(|(s, sp)| sp.epsilon_remaining.map(|e| format!("{s} {e:.3}")))
            .collect();
        out.push(format!("  ε left: {}", left.join(", ")));
    } else if !p.mode.is_empty() {
        out.push(format!(
            "privacy: exact under disclosure control (k = {}){}",
            p.min_cell_count,
            if p.secure_aggregation {
                "; secure aggregation: the hub saw only the sum of the sites' partials"
            } else {
                ""
            }
        ));
    }
    out
}

pub fn print_result(r: &QueryResult, format: Format) {
    match format {
        Format::Table => {
            println!("{}", table(r));
            println!("{}", site_line(r));
            for line in privacy_lines(r) {
                println!("{line}");
            }
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
            for line in privacy_lines(r) {
                eprintln!("{line}");
            }
        }
    }
}

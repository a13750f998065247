//! Printing results as a table, JSON or CSV.

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use std::collections::BTreeMap;

use medfed_core::glm::GlmFit;
use medfed_core::result::{QueryResult, SiteOutcome, SiteStatus};
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
    sites_line(&r.sites)
}

fn sites_line(sites: &BTreeMap<String, SiteOutcome>) -> String {
    let parts: Vec<String> = sites
        .iter()
        .map(|(name, o)| match (&o.status, &o.message) {
            (SiteStatus::Answered, _) => format!("{name} answered ({:.0} ms)", o.elapsed_ms),
            (status, Some(m)) => format!("{name} {status}: {m}"),
            (status, None) => format!("{name} {status}"),
        })
        .collect();
    let partial = if sites.values().any(|o| o.status != SiteStatus::Answered) {
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
            "privacy: {} — ε = {} (δ = {}) spent at each site",
            p.mechanism.as_deref().unwrap_or("differential privacy"),
            p.epsilon,
            medfed_privacy::ledger::Delta(p.delta)
        ));
        for (stat, n) in &p.noise {
            let kind = if n.distribution.is_empty() {
                String::new()
            } else {
                format!("{}, ", n.distribution)
            };
            out.push(format!(
                "  noise on {stat}: {kind}scale {:.3} per site, 95% of merged noise within ±{:.2}",
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
            "privacy: exact under disclosure control (k = {}, applied to {}){}",
            p.min_cell_count,
            if p.k_applied_to == "network" {
                "the network's total"
            } else {
                "each site's groups"
            },
            if p.secure_aggregation {
                "; secure aggregation: the hub saw only the sum of the sites' partials"
            } else {
                ""
            }
        ));
    }
    for (why, n) in &p.withheld_groups {
        out.push(format!(
            "{n} group(s) withheld, unnamed (the hub never learned their keys): {why}"
        ));
    }
    for note in &p.notes {
        out.push(format!("note: {note}"));
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

/// A fitted GLM as R's `summary()` prints it: the coefficient table, then deviance and AIC.
pub fn glm_table(f: &GlmFit) -> String {
    let mut t = Table::new();
    let stat = format!("{} value", f.statistic);
    let p = format!("Pr(>|{}|)", f.statistic);
    t.load_preset(UTF8_FULL_CONDENSED).set_header([
        "",
        "Estimate",
        "Std. Error",
        stat.as_str(),
        p.as_str(),
        "2.5 %",
        "97.5 %",
    ]);
    let g = |x: f64| format!("{x:.6e}");
    for (name, c) in &f.coefficients.0 {
        t.add_row([
            name.clone(),
            g(c.estimate),
            g(c.std_error),
            format!("{:.3}", c.z),
            format!("{:.3e}", c.p),
            g(c.ci95[0]),
            g(c.ci95[1]),
        ]);
    }
    let mut out = format!("{} GLM ({} link): {}\n{t}\n", f.family, f.link, f.formula);
    if let Some(null) = f.null_deviance {
        out.push_str(&format!(
            "Null deviance: {null:.4} on {} degrees of freedom\n",
            f.n.saturating_sub(1)
        ));
    }
    out.push_str(&format!(
        "Residual deviance: {:.4} on {} degrees of freedom\nAIC: {:.4}; n = {}; {} IRLS \
         iterations{}; dispersion {:.6}",
        f.deviance,
        f.df_residual,
        f.aic,
        f.n,
        f.iterations,
        if f.converged { "" } else { " (NOT converged)" },
        f.dispersion
    ));
    for (factor, level) in &f.reference_levels {
        out.push_str(&format!("\nreference level of {factor}: {level}"));
    }
    out.push_str(&format!("\n{}", sites_line(&f.sites)));
    out
}

//! `medfed describe summary|histogram|table|correlation`: descriptive statistics through the hub.

use clap::Subcommand;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use medfed_core::describe::{Description, Statistics};
use serde_json::json;

use crate::cmd::query::StudyArgs;
use crate::output::Format;

/// What every description needs: the hub, the study, the rows.
#[derive(clap::Args)]
pub struct Common {
    /// Where and under which study (its terms must allow `stats`).
    #[command(flatten)]
    on: StudyArgs,
    /// The table described.
    #[arg(long)]
    table: String,
    /// SQL condition selecting the rows.
    #[arg(long = "where")]
    filter: Option<String>,
    /// Output format (csv prints the JSON; use json).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Subcommand)]
pub enum DescribeCommand {
    /// Count, mean, variance, standard deviation per variable.
    Summary {
        #[command(flatten)]
        common: Common,
        /// A column or a SQL expression over columns, e.g. "2024 - year_of_birth" (repeatable).
        #[arg(long = "var", required = true)]
        variables: Vec<String>,
    },
    /// Counts in declared bins, and quantiles read off them.
    Histogram {
        #[command(flatten)]
        common: Common,
        /// A column or a SQL expression.
        #[arg(long = "var")]
        variable: String,
        /// First bin's lower edge.
        #[arg(long, allow_hyphen_values = true)]
        low: f64,
        /// Bin width.
        #[arg(long)]
        width: f64,
        /// Number of bins.
        #[arg(long)]
        bins: usize,
        /// Quantiles to report, e.g. 0.25 (repeatable).
        #[arg(long = "quantile")]
        quantiles: Vec<f64>,
    },
    /// Two-way contingency table with Pearson's chi-square.
    Table {
        #[command(flatten)]
        common: Common,
        /// Row variable.
        #[arg(long)]
        rows: String,
        /// Column variable.
        #[arg(long)]
        columns: String,
    },
    /// Pearson correlation matrix over complete cases.
    Correlation {
        #[command(flatten)]
        common: Common,
        /// Two or more columns or SQL expressions (repeatable).
        #[arg(long = "var", required = true)]
        variables: Vec<String>,
    },
}

pub async fn run(command: DescribeCommand) -> anyhow::Result<()> {
    let (common, kind) = match command {
        DescribeCommand::Summary { common, variables } => {
            (common, json!({"kind": "summary", "variables": variables}))
        }
        DescribeCommand::Histogram {
            common,
            variable,
            low,
            width,
            bins,
            quantiles,
        } => (
            common,
            json!({"kind": "histogram", "variable": variable, "low": low, "width": width,
                   "bins": bins, "quantiles": quantiles}),
        ),
        DescribeCommand::Table {
            common,
            rows,
            columns,
        } => (
            common,
            json!({"kind": "table", "rows": rows, "columns": columns}),
        ),
        DescribeCommand::Correlation { common, variables } => (
            common,
            json!({"kind": "correlation", "variables": variables}),
        ),
    };
    let mut body = common.on.request(kind);
    body["table"] = common.table.clone().into();
    if let Some(f) = &common.filter {
        body["where"] = f.clone().into();
    }
    let out: Description = common
        .on
        .hub
        .client()
        .post("/v1/analyses/describe", &body)
        .await?;
    match common.format {
        Format::Json | Format::Csv => println!("{}", serde_json::to_string_pretty(&out)?),
        Format::Table => print_table(&out),
    }
    Ok(())
}

fn print_table(out: &Description) {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    let count = |c: &Option<f64>| c.map_or("withheld".to_string(), |c| format!("{c}"));
    match &out.statistics {
        Statistics::Summary { variables } => {
            t.set_header(["variable", "n", "mean", "sd", "variance", "std. error"]);
            for m in variables {
                t.add_row([
                    m.variable.clone(),
                    m.n.to_string(),
                    format!("{:.6}", m.mean),
                    format!("{:.6}", m.sd),
                    format!("{:.6}", m.variance),
                    format!("{:.6}", m.std_error),
                ]);
            }
            println!("{t}");
        }
        Statistics::Histogram(h) => {
            t.set_header(["from", "to", "count"]);
            t.add_row(["", &format!("{}", h.breaks[0]), &count(&h.below)]);
            for (i, c) in h.counts.iter().enumerate() {
                let (lo, hi) = (h.breaks[i], h.breaks[i + 1]);
                t.add_row([format!("{lo}"), format!("{hi}"), count(c)]);
            }
            let last = h.breaks[h.breaks.len() - 1];
            t.add_row([format!("{last}"), String::new(), count(&h.above)]);
            println!("{}\n{t}", h.variable);
            for (q, x) in &h.quantiles {
                println!("quantile {q}: {x:.6}");
            }
            print_note(h.note.as_deref());
        }
        Statistics::Table(x) => {
            let mut header = vec![format!("{} \\ {}", x.rows, x.columns)];
            header.extend(x.column_levels.iter().cloned());
            t.set_header(header);
            for (level, row) in x.row_levels.iter().zip(&x.counts) {
                let mut cells = vec![level.clone()];
                cells.extend(row.iter().map(count));
                t.add_row(cells);
            }
            println!("{t}");
            if let Some(c) = &x.chi_square {
                println!(
                    "chi-square {:.4} on {} df, p = {:.4e}",
                    c.statistic, c.df, c.p
                );
            }
            print_note(x.note.as_deref());
        }
        Statistics::Correlation(c) => {
            let mut header = vec![format!("n = {}", c.n)];
            header.extend(c.variables.iter().cloned());
            t.set_header(header);
            for (name, row) in c.variables.iter().zip(&c.matrix) {
                let mut cells = vec![name.clone()];
                cells.extend(row.iter().map(|r| format!("{r:.4}")));
                t.add_row(cells);
            }
            println!("{t}");
        }
    }
    println!(
        "{} queries; sites: {}; privacy: {}",
        out.queries,
        out.sites.keys().cloned().collect::<Vec<_>>().join(", "),
        out.privacy.mode
    );
}

fn print_note(note: Option<&str>) {
    if let Some(n) = note {
        println!("note: {n}");
    }
}

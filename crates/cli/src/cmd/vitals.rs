//! `medfed vitals run`: the vitals rule engine over a JSON-lines stream (a file, or standard
//! input as the embedded default). Alerts go to standard output as JSON lines; events that
//! cannot be used go to standard error (or `--dead-letters FILE`) as JSON lines with the reason.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use medfed_stream::{Engine, Output, RuleSet};

#[derive(clap::Subcommand)]
pub enum VitalsCommand {
    /// Raise alerts from a vitals stream.
    Run(RunArgs),
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// Rules in TOML (default: the seeds' thresholds and NEWS2).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Events as JSON lines (default: standard input).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Write dead letters here instead of standard error.
    #[arg(long)]
    dead_letters: Option<PathBuf>,
}

pub fn run(cmd: VitalsCommand) -> anyhow::Result<()> {
    match cmd {
        VitalsCommand::Run(a) => run_file(a),
    }
}

fn run_file(a: RunArgs) -> anyhow::Result<()> {
    let rules = match &a.config {
        Some(path) => RuleSet::from_toml(&std::fs::read_to_string(path)?)?,
        None => RuleSet::default(),
    };
    let input: Box<dyn BufRead> = match &a.input {
        Some(path) => Box::new(BufReader::new(std::fs::File::open(path)?)),
        None => Box::new(std::io::stdin().lock()),
    };
    let mut dead: Box<dyn Write> = match &a.dead_letters {
        Some(path) => Box::new(std::fs::File::create(path)?),
        None => Box::new(std::io::stderr()),
    };
    let mut alerts = std::io::BufWriter::new(std::io::stdout().lock());
    let mut engine = Engine::new(rules);
    let mut emit = |out: Output| -> anyhow::Result<()> {
        for alert in out.alerts {
            serde_json::to_writer(&mut alerts, &alert)?;
            alerts.write_all(b"\n")?;
        }
        for letter in out.dead {
            serde_json::to_writer(&mut dead, &letter)?;
            dead.write_all(b"\n")?;
        }
        Ok(())
    };
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        emit(engine.push_line(&line))?;
    }
    emit(engine.flush())?;
    Ok(())
}

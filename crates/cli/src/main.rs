//! `medfed`: the one binary. Parses flags, sets up logging, and calls into the libraries.

mod client;
mod cmd;
mod output;

use clap::{Parser, Subcommand};

/// Federated analysis of hospital data: the analysis travels, the data stays.
#[derive(Parser)]
#[command(name = "medfed", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Stand up a whole network on this machine (PKI, synthetic hospitals, sites, hub) and run examples.
    Demo(cmd::demo::Args),
    /// Ask the network an aggregate SQL question through a hub.
    Query(cmd::query::Args),
    /// Fit an exact federated GLM (gaussian, binomial, poisson) with R's formula syntax.
    Glm(cmd::glm::Args),
    /// Kaplan–Meier survival curves per group, from per-bin counts at every site.
    Km(cmd::km::Args),
    /// Federated learning: FedAvg / FedProx for logistic regression and an MLP.
    Train {
        #[command(subcommand)]
        command: cmd::train::TrainCommand,
    },
    /// Cox proportional hazards stratified by site (exact: the sites' score and information sums).
    Cox(cmd::cox::Args),
    /// Real-time vitals alerting at a site: thresholds, sustained windows, NEWS2.
    Vitals {
        #[command(subcommand)]
        command: cmd::vitals::VitalsCommand,
    },
    /// The hub's model registry: list, show and export released models.
    Model {
        #[command(subcommand)]
        command: cmd::model::ModelCommand,
    },
    /// Descriptive statistics: summaries, histograms with quantiles, two-way tables, correlations.
    Describe {
        #[command(subcommand)]
        command: cmd::describe::DescribeCommand,
    },
    /// Propose, approve, reject and list studies.
    Study {
        #[command(subcommand)]
        command: cmd::study::StudyCommand,
    },
    /// Follow, approve or reject releases held for custodians' review.
    Review {
        #[command(subcommand)]
        command: cmd::review::ReviewCommand,
    },
    /// Verify or export a node's tamper-evident audit trail.
    Audit {
        #[command(subcommand)]
        command: cmd::audit::AuditCommand,
    },
    /// Write a synthetic hospital's OMOP CDM v5.4 tables as Parquet.
    Synth(cmd::synth::Args),
    /// Load a hospital's FHIR, HL7 v2 and CSV exports into its encrypted OMOP store.
    Ingest(cmd::ingest::Args),
    /// Find and redact identifiers in free-text notes.
    Deid(cmd::deid::Args),
    /// Run a site node (at a hospital).
    Site {
        #[command(subcommand)]
        command: cmd::serve::SiteCommand,
    },
    /// Run the hub (the network's coordinator).
    Hub {
        #[command(subcommand)]
        command: cmd::serve::HubCommand,
    },
    /// Create a network's certificate authority and node certificates.
    Pki {
        #[command(subcommand)]
        command: cmd::pki::PkiCommand,
    },
    /// Measure medfed against pooled (non-federated) execution.
    Bench {
        #[command(subcommand)]
        command: cmd::bench::BenchCommand,
    },
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MEDFED_LOG")
        .unwrap_or_else(|_| default.into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Site { .. } | Command::Hub { .. });
    init_logging(if serving { "info" } else { "warn" });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Demo(a) => cmd::demo::run(a).await,
            Command::Query(a) => cmd::query::run(a).await,
            Command::Glm(a) => cmd::glm::run(a).await,
            Command::Km(a) => cmd::km::run(a).await,
            Command::Cox(a) => cmd::cox::run(a).await,
            Command::Vitals { command } => cmd::vitals::run(command).await,
            Command::Train { command } => cmd::train::run(command).await,
            Command::Describe { command } => cmd::describe::run(command).await,
            Command::Model { command } => cmd::model::run(command).await,
            Command::Synth(a) => cmd::synth::run(a),
            Command::Ingest(a) => tokio::task::block_in_place(|| cmd::ingest::run(a)),
            Command::Deid(a) => cmd::deid::run(a),
            Command::Study { command } => cmd::study::run(command).await,
            Command::Review { command } => cmd::review::run(command).await,
            Command::Audit { command } => cmd::audit::run(command).await,
            Command::Site { command } => cmd::serve::site(command).await,
            Command::Hub { command } => cmd::serve::hub(command).await,
            Command::Pki { command } => cmd::pki::run(command),
            Command::Bench { command } => cmd::bench::run(command).await,
        }
    })
}

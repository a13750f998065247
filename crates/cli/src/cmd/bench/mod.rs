//! `medfed bench …`: each capability's figures, printed (`--json` for machines).

mod airlock;
mod complementary;
mod cox;
mod describe;
mod fedavg;
mod glm;
mod governance;
mod ingest;
mod privacy;
mod query;
mod vitals;

use std::time::Instant;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Start N sites + hub on loopback with mTLS and time queries end to end.
    Query(query::QueryArgs),
    /// Disclosure control: the share of the pooled total withheld under per-site k, network k
    /// (secure aggregation) and k on the pooled rows, over skewed sites with rare conditions.
    Airlock(airlock::AirlockArgs),
    /// Complementary suppression: complements chosen and time on a large table with margins,
    /// and sdcTable's documented example.
    Complementary(complementary::ComplementaryArgs),
    /// Audit trail: append throughput (entries/s) and latency, and verification speed, on SQLite
    /// and (with --postgres) PostgreSQL.
    Audit(governance::AuditArgs),
    /// Policy: hub.rego and site.rego evaluation latency per request.
    Policy(governance::PolicyArgs),
    /// Secure aggregation of N sites' vectors, with and without a dropout, against the plain sum.
    Secagg(privacy::SecAggArgs),
    /// A site's partial step with no rules, disclosure control and DP noise: the overhead.
    Dp(privacy::DpArgs),
    /// Federated logistic regression (N sites, 1 M patients x 20 covariates) vs the pooled fit.
    Glm(glm::GlmArgs),
    /// Cox model stratified by site (N sites, 1 M patients x 20 covariates) vs the pooled fit.
    Cox(cox::CoxArgs),
    /// Federated training (FedAvg) rounds per second, logistic regression and an MLP.
    Fedavg(fedavg::FedAvgArgs),
    /// Descriptive statistics (N sites, 1 M patients) vs the same computation on pooled rows.
    Describe(describe::DescribeArgs),
    /// Ingestion: FHIR patients/s and HL7 messages/s into encrypted OMOP.
    Ingest(ingest::IngestArgs),
    /// The note scrubber: texts/s, MB/s, and precision/recall per entity type on a labelled set.
    Deid(ingest::DeidArgs),
    /// The vitals rule engine: events/s on one core in process; with --nats, events/s and
    /// event-to-alert latency end to end through NATS JetStream.
    Vitals(vitals::VitalsArgs),
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Query(a) => query::run(a).await,
        BenchCommand::Airlock(a) => airlock::run(a).await,
        BenchCommand::Complementary(a) => complementary::run(a),
        BenchCommand::Audit(a) => governance::audit(a).await,
        BenchCommand::Policy(a) => governance::policy(a),
        BenchCommand::Secagg(a) => privacy::secagg(a),
        BenchCommand::Dp(a) => privacy::dp(a).await,
        BenchCommand::Glm(a) => glm::run(a).await,
        BenchCommand::Cox(a) => cox::run(a).await,
        BenchCommand::Describe(a) => describe::run(a).await,
        BenchCommand::Fedavg(a) => fedavg::run(a).await,
        BenchCommand::Ingest(a) => tokio::task::block_in_place(|| ingest::ingest(a)),
        BenchCommand::Deid(a) => ingest::deid(a),
        BenchCommand::Vitals(a) => vitals::run(a).await,
    }
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(crate) fn stats(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    (percentile(&ms, 0.5), percentile(&ms, 0.99))
}

pub(crate) async fn time<F, Fut>(iterations: usize, mut f: F) -> anyhow::Result<Vec<f64>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    for _ in 0..3 {
        f().await?;
    }
    let mut out = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        f().await?;
        out.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(out)
}

//! `medfed vitals run`: the vitals rule engine over a JSON-lines stream (a file, or standard
//! input as the embedded default), or over NATS JetStream with `--nats` (durable consumer,
//! exactly-once alerts across restarts, every alert in the site's audit trail).
//! `medfed vitals simulate`: realistic vitals with deteriorations, to NATS or standard output.
//!
//! From a file, alerts go to standard output as JSON lines; events that cannot be used go to
//! standard error (or `--dead-letters FILE`) as JSON lines with the reason.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use medfed_stream::jetstream::{self, EventPublisher, JetStreamConfig};
use medfed_stream::simulate::{SimConfig, Simulator};
use medfed_stream::{Engine, Output, RuleSet};

#[derive(clap::Subcommand)]
pub enum VitalsCommand {
    /// Raise alerts from a vitals stream: a file or standard input, or NATS JetStream (--nats).
    Run(RunArgs),
    /// Publish realistic vitals with injected deteriorations (NATS), or print them (no --nats).
    Simulate(SimulateArgs),
}

/// Where on NATS: shared by `run` and `simulate`.
#[derive(clap::Args)]
pub struct NatsArgs {
    /// NATS server with JetStream, e.g. nats://127.0.0.1:4222.
    #[arg(long, env = "MEDFED_NATS")]
    nats: Option<String>,
    /// Subjects are PREFIX.events, PREFIX.alerts and PREFIX.dead.
    #[arg(long, default_value = "vitals")]
    prefix: String,
    /// The stream holding events.
    #[arg(long, default_value = "VITALS")]
    stream: String,
    /// The stream holding alerts and dead letters.
    #[arg(long, default_value = "VITALS_OUT")]
    out_stream: String,
}

impl NatsArgs {
    fn config(&self, url: &str, state: PathBuf) -> JetStreamConfig {
        JetStreamConfig {
            prefix: self.prefix.clone(),
            stream: self.stream.clone(),
            out_stream: self.out_stream.clone(),
            ..JetStreamConfig::new(url, state)
        }
    }
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// Rules in TOML (default: the seeds' thresholds and NEWS2).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Events as JSON lines (default: standard input).
    #[arg(long, conflicts_with = "nats")]
    input: Option<PathBuf>,
    /// Write dead letters here instead of standard error.
    #[arg(long, conflicts_with = "nats")]
    dead_letters: Option<PathBuf>,
    #[command(flatten)]
    nats: NatsArgs,
    /// The durable consumer's name.
    #[arg(long, default_value = "medfed-vitals")]
    consumer: String,
    /// Checkpoints of the consumer (the site's state: keep it with the audit trail).
    #[arg(long, default_value = "vitals-state")]
    state: PathBuf,
    /// The site's audit trail (its site.toml `audit_db`: a path or postgres://…).
    #[arg(long)]
    audit_db: Option<String>,
    /// The site's signing key (its site.toml `signing_key`), for audit checkpoints.
    #[arg(long)]
    signing_key: Option<PathBuf>,
    /// The site's name in audit entries.
    #[arg(long, default_value = "site")]
    site: String,
    /// Checkpoint after this many events…
    #[arg(long, default_value_t = 2000)]
    checkpoint_events: usize,
    /// …or this many milliseconds.
    #[arg(long, default_value_t = 500)]
    checkpoint_ms: u64,
}

#[derive(clap::Args)]
pub struct SimulateArgs {
    /// Patients on monitors.
    #[arg(long, default_value_t = 100)]
    patients: usize,
    /// Events per second, all patients together.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Stop after this many events (default: after --seconds, or at Ctrl-C).
    #[arg(long)]
    events: Option<u64>,
    /// Stop after this many seconds of event time.
    #[arg(long)]
    seconds: Option<f64>,
    /// Deteriorations per patient per hour.
    #[arg(long, default_value_t = 0.5)]
    deteriorations_per_hour: f64,
    /// Seed of the random stream.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Event time of the first sample, RFC 3339 (default: now). With --seed, the same stream
    /// every time.
    #[arg(long)]
    start: Option<chrono::DateTime<chrono::Utc>>,
    /// Publish as fast as possible, time stamps still spaced at 1/rate (to NATS; standard
    /// output is always as fast as possible).
    #[arg(long)]
    fast: bool,
    #[command(flatten)]
    nats: NatsArgs,
}

pub async fn run(cmd: VitalsCommand) -> anyhow::Result<()> {
    match cmd {
        VitalsCommand::Run(a) => match a.nats.nats.clone() {
            Some(url) => run_nats(a, &url).await,
            None => tokio::task::block_in_place(|| run_file(a)),
        },
        VitalsCommand::Simulate(a) => simulate(a).await,
    }
}

fn rules(path: Option<&PathBuf>) -> anyhow::Result<RuleSet> {
    Ok(match path {
        Some(path) => RuleSet::from_toml(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
        )?,
        None => RuleSet::default(),
    })
}

fn run_file(a: RunArgs) -> anyhow::Result<()> {
    let rules = rules(a.config.as_ref())?;
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

async fn run_nats(a: RunArgs, url: &str) -> anyhow::Result<()> {
    let rules = rules(a.config.as_ref())?;
    let (Some(audit_db), Some(key)) = (&a.audit_db, &a.signing_key) else {
        anyhow::bail!(
            "--nats needs the site's audit trail: give --audit-db and --signing-key (the \
             audit_db and signing_key of the site's site.toml); every alert is audited"
        );
    };
    let key = medfed_protocol::signing::load_signing_key(key)?;
    let audit = medfed_audit::AuditLog::open(audit_db, key, Default::default()).await?;
    let cfg = JetStreamConfig {
        consumer: a.consumer.clone(),
        site: a.site.clone(),
        checkpoint_events: a.checkpoint_events.max(1),
        checkpoint_interval: Duration::from_millis(a.checkpoint_ms.max(1)),
        ..a.nats.config(url, a.state.clone())
    };
    eprintln!(
        "vitals: consuming {} from {url} (stream {}, consumer {}); alerts to {}, dead letters \
         to {}. Ctrl-C stops.",
        cfg.events_subject(),
        cfg.stream,
        cfg.consumer,
        cfg.alerts_subject(),
        cfg.dead_subject()
    );
    let stats = jetstream::run(&cfg, rules, audit.clone(), super::shutdown_signal()).await?;
    audit.checkpoint().await?;
    println!("{}", serde_json::to_string(&stats)?);
    Ok(())
}

async fn simulate(a: SimulateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.rate > 0.0, "--rate must be positive");
    let mut sim = Simulator::new(&SimConfig {
        patients: a.patients,
        deteriorations_per_hour: a.deteriorations_per_hour,
        seed: a.seed,
    });
    let limit = a.events.or(a.seconds.map(|s| (s * a.rate).ceil() as u64));
    let start = a.start.unwrap_or_else(chrono::Utc::now);
    let at = |i: u64| start + chrono::TimeDelta::microseconds((i as f64 * 1e6 / a.rate) as i64);
    let Some(url) = &a.nats.nats else {
        let limit = limit.context("printing to standard output needs --events or --seconds")?;
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        for i in 0..limit {
            serde_json::to_writer(&mut out, &sim.sample(at(i)))?;
            out.write_all(b"\n")?;
        }
        return Ok(());
    };
    let cfg = a.nats.config(url, PathBuf::new());
    let js = jetstream::connect(url).await?;
    jetstream::ensure_streams(&js, &cfg).await?;
    let mut publisher = EventPublisher::new(js, &cfg);
    let shutdown = super::shutdown_signal();
    tokio::pin!(shutdown);
    let clock = std::time::Instant::now();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    eprintln!(
        "vitals simulate: {} patients, {} events/s to {}",
        a.patients,
        a.rate,
        cfg.events_subject()
    );
    while limit.is_none_or(|l| sent < l) {
        // Paced: as many events as the rate allows by now; fast: a tick's worth at once.
        let due = if a.fast {
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                _ = tokio::task::yield_now() => {}
            }
            sent + (a.rate / 100.0).ceil() as u64
        } else {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {}
            }
            (clock.elapsed().as_secs_f64() * a.rate) as u64
        };
        let due = limit.map_or(due, |l| due.min(l));
        while sent < due {
            let ts = if a.fast { at(sent) } else { chrono::Utc::now() };
            publisher
                .publish(serde_json::to_vec(&sim.sample(ts))?.into())
                .await?;
            sent += 1;
        }
    }
    publisher.flush().await?;
    eprintln!(
        "vitals simulate: published {sent} events in {:.1} s",
        clock.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `medfed demo`'s vitals section: half an hour of a simulated 40-bed ward through the rule
/// engine in process, the first alerts printed as they fire.
pub fn demo(shown: usize) {
    const PATIENTS: usize = 40;
    let mut sim = Simulator::new(&SimConfig {
        patients: PATIENTS,
        deteriorations_per_hour: 1.0,
        seed: 3,
    });
    let mut engine = Engine::new(RuleSet::default());
    let start = chrono::Utc::now();
    // One sample per patient every 4 s for 30 minutes.
    let samples = PATIENTS * 450;
    let step = chrono::TimeDelta::milliseconds(4000 / PATIENTS as i64);
    let mut alerts = Vec::new();
    for i in 0..samples {
        alerts.extend(engine.push(sim.sample(start + step * i as i32)).alerts);
    }
    alerts.extend(engine.flush().alerts);
    for a in alerts.iter().take(shown) {
        println!(
            "   {}  {:<8} {:<11} {:<16} {:<8} {:>5} (episode from {})",
            a.ts.format("%H:%M:%S"),
            a.patient,
            a.unit.as_deref().unwrap_or("-"),
            a.rule,
            a.severity.as_str(),
            a.value,
            a.episode_start.format("%H:%M:%S")
        );
        std::thread::sleep(std::time::Duration::from_millis(150));
    }
    println!(
        "   -> {} alerts from {samples} samples of {PATIENTS} patients over 30 minutes (one per \
         episode, not per sample); on NATS: medfed vitals simulate --nats nats://127.0.0.1:4222 \
         and medfed vitals run --nats … --audit-db … --signing-key …\n",
        alerts.len()
    );
}

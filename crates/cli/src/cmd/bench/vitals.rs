//! `medfed bench vitals`: the vitals rule engine's events per second on one core, in process
//! (parsing included, and without it), on a synthetic ward whose patients sometimes
//! deteriorate; with `--nats`, also end to end through NATS JetStream: a backlog's events/s
//! (durable consumer, audit trail, alerts published, checkpoints), and event-to-alert latency
//! at the seeds' peak rate.

use std::time::{Duration, Instant};

use futures::StreamExt;
use medfed_stream::jetstream::{
    self, EventPublisher, JetStreamConfig, RunStats, ensure_streams, run_with_progress,
};
use medfed_stream::{Alert, Engine, RuleSet, VitalsEvent};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

#[derive(clap::Args)]
pub struct VitalsArgs {
    /// Events to push.
    #[arg(long, default_value_t = 2_000_000)]
    events: usize,
    /// Patients they are spread over.
    #[arg(long, default_value_t = 1_000)]
    patients: usize,
    /// Also measure end to end through this NATS server (JetStream).
    #[arg(long, env = "MEDFED_NATS")]
    nats: Option<String>,
    /// Events in the end-to-end backlog.
    #[arg(long, default_value_t = 200_000)]
    backlog: usize,
    /// Events per second of the latency run (the seeds' peak: 10 M an hour).
    #[arg(long, default_value_t = 2778.0)]
    rate: f64,
    /// Seconds of the latency run.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Print one JSON object instead of lines.
    #[arg(long)]
    json: bool,
}

/// One patient's sample; a patient in a bad spell (1 % of the time) runs a high heart rate and
/// low saturation.
fn sample(rng: &mut ChaCha8Rng, patient: usize, ts: chrono::DateTime<chrono::Utc>) -> VitalsEvent {
    let bad = rng.random_bool(0.01);
    VitalsEvent {
        patient: format!("p{patient}"),
        ts,
        device: None,
        unit: None,
        hr: Some(if bad { 135 } else { rng.random_range(60..100) }),
        sbp: Some(rng.random_range(100..150)),
        dbp: Some(rng.random_range(60..90)),
        spo2: Some(if bad { 88 } else { rng.random_range(94..100) }),
        rr: Some(rng.random_range(12..20)),
        temp: Some(36.5 + rng.random_range(0.0..1.0)),
    }
}

/// One sample a second per patient, round robin.
fn events(n: usize, patients: usize) -> Vec<VitalsEvent> {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .expect("a valid time")
        .to_utc();
    let patients = patients.max(1);
    (0..n)
        .map(|i| {
            let ts = start + chrono::TimeDelta::seconds((i / patients) as i64);
            sample(&mut rng, i % patients, ts)
        })
        .collect()
}

pub async fn run(a: VitalsArgs) -> anyhow::Result<()> {
    let mut out = tokio::task::block_in_place(|| in_process(&a))?;
    if let Some(url) = &a.nats {
        let backlog = backlog(&a, url).await?;
        let latency = latency(&a, url).await?;
        out["nats"] = json!({ "backlog": backlog, "latency": latency });
    }
    if a.json {
        println!("{out}");
        return Ok(());
    }
    println!(
        "vitals rule engine, one core: {} events over {} patients, {} alerts\n  \
         engine only:       {:>12.0} events/s\n  with JSON parsing: {:>12.0} events/s",
        out["events"],
        out["patients"],
        out["alerts"],
        out["events_per_s_engine"].as_f64().unwrap_or(0.0),
        out["events_per_s_with_json_parsing"]
            .as_f64()
            .unwrap_or(0.0)
    );
    if let Some(n) = out.get("nats") {
        let (b, l) = (&n["backlog"], &n["latency"]);
        println!(
            "end to end through NATS JetStream (durable consumer, explicit acks, audit, \
             checkpoints):\n  backlog of {} events: {:.0} events/s, {} alerts published and audited\n  \
             at {} events/s for {} s: event-to-alert latency p50 {:.2} ms, p99 {:.2} ms, max \
             {:.2} ms over {} alerts",
            b["events"],
            b["events_per_s"].as_f64().unwrap_or(0.0),
            b["alerts"],
            l["rate"],
            l["seconds"],
            l["p50_ms"].as_f64().unwrap_or(0.0),
            l["p99_ms"].as_f64().unwrap_or(0.0),
            l["max_ms"].as_f64().unwrap_or(0.0),
            l["alerts"]
        );
    }
    Ok(())
}

fn in_process(a: &VitalsArgs) -> anyhow::Result<serde_json::Value> {
    let samples = events(a.events, a.patients);
    let lines: Vec<String> = samples
        .iter()
        .map(|e| serde_json::to_string(e).expect("events serialise"))
        .collect();
    let time = |f: &mut dyn FnMut(&mut Engine) -> usize| {
        let mut engine = Engine::new(RuleSet::default());
        let t = Instant::now();
        let alerts = f(&mut engine) + engine.flush().alerts.len();
        (t.elapsed().as_secs_f64(), alerts)
    };
    let (typed_s, typed_alerts) =
        time(&mut |e| samples.iter().map(|s| e.push(s.clone()).alerts.len()).sum());
    let (json_s, json_alerts) =
        time(&mut |e| lines.iter().map(|l| e.push_line(l).alerts.len()).sum());
    anyhow::ensure!(typed_alerts == json_alerts, "parsing changed the alerts");
    let n = samples.len() as f64;
    Ok(json!({
        "events": samples.len(), "patients": a.patients, "alerts": typed_alerts,
        "events_per_s_engine": n / typed_s, "events_per_s_with_json_parsing": n / json_s,
    }))
}

/// Fresh streams for one measurement, and a scratch audit trail.
async fn network(
    url: &str,
    name: &str,
) -> anyhow::Result<(
    async_nats::jetstream::Context,
    JetStreamConfig,
    tempfile::TempDir,
)> {
    let dir = tempfile::tempdir()?;
    let tag = format!("BENCH{}{name}", std::process::id());
    let cfg = JetStreamConfig {
        prefix: tag.to_lowercase(),
        stream: format!("{tag}_IN"),
        out_stream: format!("{tag}_OUT"),
        ..JetStreamConfig::new(url, dir.path())
    };
    let js = jetstream::connect(url).await?;
    ensure_streams(&js, &cfg).await?;
    Ok((js, cfg, dir))
}

async fn audit(dir: &std::path::Path) -> anyhow::Result<medfed_audit::AuditLog> {
    let key = medfed_protocol::signing::generate();
    let path = dir.join("audit.db");
    Ok(
        medfed_audit::AuditLog::open(path.to_str().unwrap_or("audit.db"), key, Default::default())
            .await?,
    )
}

/// A backlog already in the stream, consumed as fast as the consumer goes.
async fn backlog(a: &VitalsArgs, url: &str) -> anyhow::Result<serde_json::Value> {
    let (js, cfg, dir) = network(url, "BACKLOG").await?;
    let mut publisher = EventPublisher::new(js.clone(), &cfg);
    for e in events(a.backlog, a.patients) {
        publisher.publish(serde_json::to_vec(&e)?.into()).await?;
    }
    publisher.flush().await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (tx, mut progress) = tokio::sync::watch::channel(RunStats::default());
    let log = audit(dir.path()).await?;
    let t = Instant::now();
    let consumer = {
        let cfg = cfg.clone();
        tokio::spawn(async move {
            let stop = async {
                stopped.await.ok();
            };
            run_with_progress(&cfg, RuleSet::default(), log, stop, tx).await
        })
    };
    while progress.borrow().events < a.backlog as u64 {
        progress.changed().await?;
    }
    let secs = t.elapsed().as_secs_f64();
    stop.send(()).ok();
    let stats = consumer.await??;
    js.delete_stream(&cfg.stream).await.ok();
    js.delete_stream(&cfg.out_stream).await.ok();
    Ok(json!({
        "events": a.backlog, "seconds": secs, "events_per_s": a.backlog as f64 / secs,
        "alerts": stats.alerts, "checkpoints": stats.checkpoints,
    }))
}

/// Events published at `rate` with the time of publishing as event time; an alert's latency is
/// when a subscriber to the alert subject got it, less its event's time. No lateness allowance
/// (`lateness_s = 0`): this is the pipeline's own latency; the allowance adds to it one for one.
async fn latency(a: &VitalsArgs, url: &str) -> anyhow::Result<serde_json::Value> {
    let (js, cfg, dir) = network(url, "LATENCY").await?;
    let rules = RuleSet::from_toml("lateness_s = 0")?;
    let mut alerts = js.client().subscribe(cfg.alerts_subject()).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let log = audit(dir.path()).await?;
    let consumer = {
        let cfg = JetStreamConfig {
            idle_flush: Some(Duration::from_millis(100)),
            ..cfg.clone()
        };
        tokio::spawn(async move {
            let stop = async {
                stopped.await.ok();
            };
            jetstream::run(&cfg, rules, log, stop).await
        })
    };
    let (done, mut finished) = tokio::sync::oneshot::channel::<()>();
    let collector = tokio::spawn(async move {
        let mut ms = Vec::new();
        loop {
            let m = tokio::select! {
                m = alerts.next() => m,
                _ = &mut finished => None,
            };
            let Some(m) = m else { break };
            let now = chrono::Utc::now();
            if let Ok(alert) = serde_json::from_slice::<Alert>(&m.payload) {
                ms.push((now - alert.ts).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e3);
            }
        }
        ms
    });
    let mut publisher = EventPublisher::new(js.clone(), &cfg);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let total = (a.rate * a.seconds) as u64;
    let clock = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let mut sent = 0u64;
    while sent < total {
        tick.tick().await;
        let due = ((clock.elapsed().as_secs_f64() * a.rate) as u64).min(total);
        while sent < due {
            let e = sample(
                &mut rng,
                sent as usize % a.patients.max(1),
                chrono::Utc::now(),
            );
            publisher.publish(serde_json::to_vec(&e)?.into()).await?;
            sent += 1;
        }
    }
    publisher.flush().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.send(()).ok();
    consumer.await??;
    js.delete_stream(&cfg.stream).await.ok();
    js.delete_stream(&cfg.out_stream).await.ok();
    done.send(()).ok();
    let mut ms = collector.await?;
    anyhow::ensure!(!ms.is_empty(), "no alert came back");
    ms.sort_by(f64::total_cmp);
    Ok(json!({
        "rate": a.rate, "seconds": a.seconds, "events": total, "alerts": ms.len(),
        "p50_ms": super::percentile(&ms, 0.5), "p99_ms": super::percentile(&ms, 0.99),
        "max_ms": ms[ms.len() - 1],
    }))
}

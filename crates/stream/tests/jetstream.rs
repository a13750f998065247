//! The vitals consumer against a real NATS server with JetStream (`MEDFED_TEST_NATS`, set by
//! `.ci/run`; without it these tests say they skipped). Each test uses streams and subjects of
//! its own and deletes them after.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, Context};
use medfed_audit::{AuditLog, AuditOptions};
use medfed_stream::jetstream::{
    Checkpoint, CheckpointStore, EventPublisher, JetStreamConfig, RunStats, ensure_streams,
    run_with_progress,
};
use medfed_stream::simulate::{SimConfig, Simulator};
use medfed_stream::{Alert, DeadLetter, Engine, Output, RuleSet};
use tokio::sync::{oneshot, watch};

fn nats() -> Option<String> {
    let url = std::env::var("MEDFED_TEST_NATS").ok();
    if url.is_none() {
        eprintln!("skipped: set MEDFED_TEST_NATS=nats://127.0.0.1:4222 to run against NATS");
    }
    url
}

/// Streams and subjects no other test (or run) shares.
fn config(url: &str, state: &std::path::Path) -> JetStreamConfig {
    static N: AtomicU32 = AtomicU32::new(0);
    let tag = format!(
        "T{}X{}X{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        chrono::Utc::now().timestamp_micros() % 1_000_000
    );
    JetStreamConfig {
        prefix: tag.to_lowercase(),
        stream: format!("{tag}_IN"),
        out_stream: format!("{tag}_OUT"),
        consumer: "vitals".into(),
        idle_flush: Some(Duration::from_millis(300)),
        ..JetStreamConfig::new(url, state)
    }
}

async fn audit(dir: &std::path::Path) -> AuditLog {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let path = dir.join("audit.db");
    AuditLog::open(path.to_str().unwrap(), key, AuditOptions::default())
        .await
        .unwrap()
}

/// Publishes raw payloads (not only well-formed events), as a monitors' gateway would.
async fn publish(js: &Context, cfg: &JetStreamConfig, payloads: &[Vec<u8>]) {
    let mut publisher = EventPublisher::new(js.clone(), cfg);
    for p in payloads {
        publisher.publish(p.clone().into()).await.unwrap();
    }
    publisher.flush().await.unwrap();
}

/// Everything in the output stream: (subject, Nats-Msg-Id, payload).
async fn outputs(js: &Context, cfg: &JetStreamConfig) -> Vec<(String, String, Vec<u8>)> {
    let out = js.get_stream(&cfg.out_stream).await.unwrap();
    let last = out.get_info().await.unwrap().state.last_sequence;
    let mut all = Vec::new();
    for seq in 1..=last {
        let m = out.get_raw_message(seq).await.unwrap();
        let id = m.headers.get(async_nats::header::NATS_MESSAGE_ID).unwrap();
        all.push((m.subject.to_string(), id.to_string(), m.payload.to_vec()));
    }
    all
}

async fn out_count(js: &Context, cfg: &JetStreamConfig) -> u64 {
    js.get_stream(&cfg.out_stream)
        .await
        .map(|s| s.cached_info().state.messages)
        .unwrap_or(0)
}

/// What the engine alone makes of the same payloads, in order.
fn expected(rules: &RuleSet, payloads: &[Vec<u8>]) -> Output {
    let mut engine = Engine::new(rules.clone());
    let mut out = Output::default();
    for p in payloads {
        match std::str::from_utf8(p) {
            Ok(line) => out.extend(engine.push_line(line)),
            Err(_) => out.dead.push(DeadLetter {
                reason: "not UTF-8".into(),
                raw: String::new(),
            }),
        }
    }
    out.extend(engine.flush());
    out
}

/// A consumer task: its progress, a way to stop it cleanly, and its handle (abort = crash).
struct Running {
    progress: watch::Receiver<RunStats>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<RunStats>,
}

fn spawn_consumer(cfg: &JetStreamConfig, rules: &RuleSet, audit: &AuditLog) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let (tx, progress) = watch::channel(RunStats::default());
    let (cfg, rules, audit) = (cfg.clone(), rules.clone(), audit.clone());
    let task = tokio::spawn(async move {
        run_with_progress(
            &cfg,
            rules,
            audit,
            async {
                stopped.await.ok();
            },
            tx,
        )
        .await
        .expect("the consumer runs")
    });
    Running {
        progress,
        stop,
        task,
    }
}

/// Waits until the output stream holds `n` messages (or fails after 30 s); polls often, so a
/// crash right after can fall between a publish and the checkpoint covering it.
async fn wait_for_outputs(js: &Context, cfg: &JetStreamConfig, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while out_count(js, cfg).await < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} outputs after 30 s",
            out_count(js, cfg).await
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn cleanup(js: &Context, cfg: &JetStreamConfig) {
    js.delete_stream(&cfg.stream).await.ok();
    js.delete_stream(&cfg.out_stream).await.ok();
}

fn at(patient: &str, s: i64, fields: &str) -> Vec<u8> {
    let ts = chrono::DateTime::parse_from_rfc3339("2026-01-01T10:00:00Z").unwrap()
        + chrono::TimeDelta::seconds(s);
    format!(
        r#"{{"patient": "{patient}", "ts": "{}", {fields}}}"#,
        ts.to_rfc3339()
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_stream_alerts_and_dead_letters_through_jetstream_as_specified() {
    let Some(url) = nats() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&url, dir.path());
    let rules = RuleSet::from_toml(
        r#"
        lateness_s = 30
        [[rule]]
        name = "tachycardia"
        vital = "hr"
        above = 120
        severity = "high"
        sustain_s = 20
        [[rule]]
        name = "desaturation"
        vital = "spo2"
        below = 90
        severity = "critical"
        rearm_s = 0
        "#,
    )
    .unwrap();
    let payloads = vec![
        at("p1", 0, r#""hr": 130"#),
        at("p1", 25, r#""hr": 131"#), // sustained 25 s: alerts (once the watermark passes)
        at("p2", 5, r#""spo2": 85"#), // out of order by 20 s: still ordered in, alerts
        at("p2", 6, r#""spo2": 84"#), // same episode
        b"{not json".to_vec(),
        vec![0xff, 0xfe, b'{'],
        at("p2", 40, r#""spo2": 97"#), // re-arms
        at("p2", 45, r#""spo2": 88"#), // a new episode, a new alert
        at("p3", 100, r#""hr": 80"#),  // the watermark moves to 70
        at("p1", 30, r#""hr": 150"#),  // 40 s behind the watermark: dead-lettered as late
        at("p3", 101, r#""hr": 400"#), // impossible: dead-lettered
    ];
    let want = expected(&rules, &payloads);
    assert_eq!(want.alerts.len(), 3, "{:?}", want.alerts);
    assert_eq!(want.dead.len(), 4, "{:?}", want.dead);

    let js = async_nats::connect(url.as_str())
        .await
        .map(jetstream::new)
        .unwrap();
    ensure_streams(&js, &cfg).await.unwrap();
    let log = audit(dir.path()).await;
    let running = spawn_consumer(&cfg, &rules, &log);
    publish(&js, &cfg, &payloads).await;
    // The last samples wait for the watermark until the stream has been idle for a moment.
    wait_for_outputs(&js, &cfg, 7).await;
    running.stop.send(()).unwrap();
    let stats = running.task.await.unwrap();
    assert_eq!(
        (stats.events, stats.alerts, stats.dead),
        (11, 3, 4),
        "{stats:?}"
    );
    assert_eq!(stats.broker_duplicates, 0);

    let out = outputs(&js, &cfg).await;
    let alerts: Vec<Alert> = out
        .iter()
        .filter(|(s, ..)| *s == cfg.alerts_subject())
        .map(|(_, _, p)| serde_json::from_slice(p).unwrap())
        .collect();
    assert_eq!(
        alerts, want.alerts,
        "the same alerts, in the same order, as the engine alone"
    );
    let alert_ids: Vec<&String> = out
        .iter()
        .filter(|(s, ..)| *s == cfg.alerts_subject())
        .map(|(_, id, _)| id)
        .collect();
    for (a, id) in alerts.iter().zip(alert_ids) {
        assert_eq!(&a.id(), id);
    }
    let dead: Vec<DeadLetter> = out
        .iter()
        .filter(|(s, ..)| *s == cfg.dead_subject())
        .map(|(_, _, p)| serde_json::from_slice(p).unwrap())
        .collect();
    let reasons: Vec<&str> = dead.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(dead.len(), 4, "{reasons:?}");
    assert!(reasons[0].starts_with("malformed") && dead[0].raw == "{not json");
    assert!(reasons[1].contains("not UTF-8"));
    assert!(reasons[2].starts_with("late") && dead[2].raw.contains("150"));
    assert!(reasons[3].contains("Hr = 400"));

    // Every alert and dead letter is in the site's audit trail, once, without the patient.
    let records = log.records(0, 100).await.unwrap();
    let audited: Vec<_> = records
        .iter()
        .filter(|r| r.entry.action.starts_with("vitals."))
        .collect();
    assert_eq!(audited.len(), 7);
    for r in &audited {
        assert!(!r.entry.reason.contains("p1") && !r.entry.reason.contains("p2"));
        let id = r.entry.request_id.as_deref().unwrap();
        let (_, _, payload) = out.iter().find(|(_, i, _)| i == id).unwrap();
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(payload));
        assert_eq!(r.entry.result_digest.as_deref(), Some(digest.as_str()));
    }
    cleanup(&js, &cfg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_mid_stream_and_restarted_raises_every_alert_exactly_once() {
    let Some(url) = nats() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = JetStreamConfig {
        checkpoint_events: 97,
        checkpoint_interval: Duration::from_millis(40),
        ..config(&url, dir.path())
    };
    let rules = RuleSet::default();
    // A busy ward: 60 patients, many deteriorations, a sample every 6 s each (20 minutes).
    let mut sim = Simulator::new(&SimConfig {
        patients: 60,
        deteriorations_per_hour: 3.0,
        seed: 11,
    });
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .to_utc();
    let payloads: Vec<Vec<u8>> = (0..12_000)
        .map(|i| {
            serde_json::to_vec(&sim.sample(start + chrono::TimeDelta::milliseconds(i * 100)))
                .unwrap()
        })
        .collect();
    let want = expected(&rules, &payloads);
    assert!(want.alerts.len() >= 20, "{} alerts", want.alerts.len());

    let js = async_nats::connect(url.as_str())
        .await
        .map(jetstream::new)
        .unwrap();
    ensure_streams(&js, &cfg).await.unwrap();
    publish(&js, &cfg, &payloads).await;
    let log = audit(dir.path()).await;
    let total = want.alerts.len() as u64;
    // Crash twice, at a third and at two thirds of the alerts: no checkpoint, no goodbye.
    let mut crashes = 0;
    for fraction in [3, 2] {
        let running = spawn_consumer(&cfg, &rules, &log);
        wait_for_outputs(&js, &cfg, total * (4 - fraction) / 3).await;
        running.task.abort();
        assert!(running.task.await.unwrap_err().is_cancelled());
        drop(running.stop);
        // A killed process sends nothing more; the aborted task's connection may still be
        // flushing what it had queued, so give it a moment to be as dead as a process.
        tokio::time::sleep(Duration::from_millis(300)).await;
        crashes += 1;
    }
    let running = spawn_consumer(&cfg, &rules, &log);
    wait_for_outputs(&js, &cfg, total).await;
    // Let it settle: anything more would be a duplicate.
    tokio::time::sleep(Duration::from_millis(800)).await;
    running.stop.send(()).unwrap();
    let progress = running.progress.clone();
    let last = running.task.await.unwrap();
    assert_eq!(*progress.borrow(), last);
    assert_eq!(
        last.broker_duplicates, 0,
        "the read-back, not the broker, stops repeats"
    );
    assert_eq!(crashes, 2);
    eprintln!("last run after two crashes: {last:?}");

    let out = outputs(&js, &cfg).await;
    let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, id, _) in &out {
        *ids.entry(id.as_str()).or_default() += 1;
    }
    let want_ids: BTreeMap<String, usize> = want.alerts.iter().map(|a| (a.id(), 1)).collect();
    assert_eq!(out.len(), want.alerts.len(), "every alert exactly once");
    assert!(
        ids.iter()
            .all(|(id, n)| *n == 1 && want_ids.contains_key(*id))
    );
    // The audit trail too: one entry per alert.
    assert_eq!(audited_ids(&log).await, want_ids);
    cleanup(&js, &cfg).await;
}

/// The ids of the trail's `vitals.*` entries, with how often each appears.
async fn audited_ids(log: &AuditLog) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    let mut after = 0;
    loop {
        let records = log.records(after, 1000).await.unwrap();
        let Some(r) = records.last() else { break };
        after = r.seq;
        for r in records
            .into_iter()
            .filter(|r| r.entry.action.starts_with("vitals."))
        {
            *ids.entry(r.entry.request_id.unwrap()).or_default() += 1;
        }
    }
    ids
}

/// Puts the consumer back to before the first event, as a crash right after a checkpoint at
/// the start would leave it.
fn rewind(cfg: &JetStreamConfig, rules: &RuleSet) {
    let cp = Checkpoint::new(0, 0, 0, Engine::new(rules.clone()).snapshot());
    CheckpointStore::new(&cfg.state_dir, &cfg.consumer)
        .save(&cp)
        .unwrap();
}

/// Runs a consumer until `done` holds, then a moment more (anything further would be a
/// repeat), and stops it.
async fn run_until<F: Future<Output = bool>>(
    cfg: &JetStreamConfig,
    rules: &RuleSet,
    log: &AuditLog,
    done: impl Fn() -> F,
) -> RunStats {
    let running = spawn_consumer(cfg, rules, log);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not done after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop.send(()).unwrap();
    running.task.await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_cut_in_half_by_a_crash_is_completed_on_restart_not_repeated() {
    let Some(url) = nats() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&url, dir.path());
    let rules = RuleSet::default();
    // Four desaturating patients and one broken message: four alerts and a dead letter.
    let mut payloads: Vec<Vec<u8>> = (0..40)
        .map(|i| at(&format!("p{}", i % 4), i, r#""spo2": 85"#))
        .collect();
    payloads.insert(17, b"{\"patient\": 3}".to_vec());
    let js = async_nats::connect(url.as_str())
        .await
        .map(jetstream::new)
        .unwrap();
    ensure_streams(&js, &cfg).await.unwrap();
    publish(&js, &cfg, &payloads).await;
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let first = run_until(&cfg, &rules, &audit(&a).await, || async {
        out_count(&js, &cfg).await >= 5
    })
    .await;
    assert_eq!((first.alerts, first.dead), (4, 1), "{first:?}");
    let published = outputs(&js, &cfg).await;
    let ids: BTreeMap<String, usize> = published.iter().map(|(_, id, _)| (id.clone(), 1)).collect();

    // Published, but the trail never committed the entries (here: a trail that lost them).
    rewind(&cfg, &rules);
    let log = audit(&b).await;
    let second = run_until(&cfg, &rules, &log, || async {
        audited_ids(&log).await.len() >= 5
    })
    .await;
    assert_eq!(
        (second.alerts, second.dead, second.recovered),
        (0, 0, 5),
        "nothing published again: {second:?}"
    );
    assert_eq!(outputs(&js, &cfg).await, published);
    assert_eq!(audited_ids(&log).await, ids, "each entry supplied, once");

    // Audited, but the output stream lost what was published.
    js.delete_stream(&cfg.out_stream).await.unwrap();
    ensure_streams(&js, &cfg).await.unwrap();
    rewind(&cfg, &rules);
    let third = run_until(&cfg, &rules, &log, || async {
        out_count(&js, &cfg).await >= 5
    })
    .await;
    assert_eq!((third.alerts, third.dead, third.recovered), (4, 1, 0));
    let republished: BTreeMap<String, usize> = outputs(&js, &cfg)
        .await
        .into_iter()
        .map(|(_, id, _)| (id, 1))
        .collect();
    assert_eq!(republished, ids, "each published, once");
    assert_eq!(audited_ids(&log).await, ids, "and not audited again");
    cleanup(&js, &cfg).await;
}

#[tokio::test]
async fn an_unreachable_broker_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = JetStreamConfig::new("nats://127.0.0.1:1", dir.path());
    let err =
        medfed_stream::jetstream::run(&cfg, RuleSet::default(), audit(dir.path()).await, async {})
            .await
            .unwrap_err()
            .to_string();
    assert!(
        err.contains("127.0.0.1:1") && err.contains("JetStream"),
        "{err}"
    );
}

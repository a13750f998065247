//! The consumer loop: events from the durable consumer through the engine; every alert and dead
//! letter published and audited; a checkpoint, then the acks, every
//! [`JetStreamConfig::checkpoint_events`] events or [`JetStreamConfig::checkpoint_interval`].

use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, Consumer, DeliverPolicy, pull};
use async_nats::jetstream::message::{Acker, PublishMessage};
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::{Context, stream::Stream};
use futures::StreamExt;
use medfed_audit::{AuditLog, Decision, Entry, Pending};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::{
    AckWindow, Checkpoint, CheckpointStore, JetStreamConfig, TransportError, ensure_streams, js_err,
};
use crate::{DeadLetter, Engine, Output, RuleSet};

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunStats {
    /// Events taken from the stream (evaluated or dead-lettered).
    pub events: u64,
    /// Redelivered events the checkpoint already covered, acked and skipped.
    pub skipped: u64,
    /// Alerts published.
    pub alerts: u64,
    /// Dead letters published.
    pub dead: u64,
    /// Alerts and dead letters raised again on replay that a previous run had already
    /// released: found by the read-back, not repeated.
    pub recovered: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// Publishes the broker itself recognised as repeats (its de-duplication window): stays 0
    /// while the read-back does its job.
    pub broker_duplicates: u64,
}

/// How long one wait for the next event lasts before the loop looks at its clocks.
const POLL: Duration = Duration::from_millis(50);
/// Events the consumer asks the broker for at a time.
const BATCH: usize = 1000;
/// Alert publishes (and audit entries) in flight before the sink waits for them.
const IN_FLIGHT: usize = 256;

/// Runs the vitals consumer of `cfg` with `rules` until `shutdown` resolves (then checkpoints
/// and returns) or the broker goes away (an error; a restart goes on from the checkpoint).
///
/// ```no_run
/// # async fn f(audit: medfed_audit::AuditLog) -> Result<(), Box<dyn std::error::Error>> {
/// use medfed_stream::jetstream::{JetStreamConfig, run};
/// let cfg = JetStreamConfig::new("nats://127.0.0.1:4222", "/var/lib/medfed/vitals");
/// let stats = run(&cfg, medfed_stream::RuleSet::default(), audit, async {
///     tokio::signal::ctrl_c().await.ok();
/// })
/// .await?;
/// println!("{} events, {} alerts", stats.events, stats.alerts);
/// # Ok(()) }
/// ```
pub async fn run(
    cfg: &JetStreamConfig,
    rules: RuleSet,
    audit: AuditLog,
    shutdown: impl Future<Output = ()>,
) -> Result<RunStats, TransportError> {
    run_with_progress(
        cfg,
        rules,
        audit,
        shutdown,
        watch::channel(RunStats::default()).0,
    )
    .await
}

/// As [`run`], also sending the run's figures so far at every checkpoint (for monitoring, and
/// for load tests that wait until a backlog is processed).
pub async fn run_with_progress(
    cfg: &JetStreamConfig,
    rules: RuleSet,
    audit: AuditLog,
    shutdown: impl Future<Output = ()>,
    progress: watch::Sender<RunStats>,
) -> Result<RunStats, TransportError> {
    let js = super::connect(&cfg.url).await?;
    let (events, out) = ensure_streams(&js, cfg).await?;
    let store = CheckpointStore::new(&cfg.state_dir, &cfg.consumer);
    let idle_flush = cfg
        .idle_flush
        .unwrap_or(Duration::from_secs_f64(rules.lateness_s));
    let existing = events.consumer_info(&cfg.consumer).await.ok();
    let (mut engine, cp) = match store.load()? {
        Some(cp) => (Engine::restore(rules, cp.engine.clone()), cp),
        None => {
            // No state yet: from the broker's ack floor, with an empty engine; the positions
            // are recorded at once so a crash before the first real checkpoint is covered too.
            let floor = existing.as_ref().map_or(0, |i| i.ack_floor.stream_sequence);
            let engine = Engine::new(rules);
            let cp = Checkpoint::new(
                floor,
                last_seq(&out).await?,
                audit.head().await?,
                engine.snapshot(),
            );
            store.save(&cp)?;
            (engine, cp)
        }
    };
    let released = read_back(&out, cp.out_seq, &audit, cp.audit_seq).await?;
    tracing::info!(
        from = cp.events_seq + 1,
        already_released = released.published.len(),
        "vitals consumer resuming"
    );
    let consumer = resume_consumer(&events, cfg, cp.events_seq + 1, existing.is_some()).await?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(BATCH)
        .messages()
        .await
        .map_err(|e| js_err("consume", e))?;
    let mut sink = Sink::new(js, cfg, audit, released, &cp);
    let mut pos = Position {
        seq: cp.events_seq,
        acks: Vec::new(),
        since_checkpoint: 0,
        dirty: false,
        at: Instant::now(),
        saving: None,
    };
    let mut last_event = Instant::now();
    tokio::pin!(shutdown);
    loop {
        let next = tokio::select! {
            biased;
            () = &mut shutdown => break,
            next = tokio::time::timeout(POLL, messages.next()) => next,
        };
        match next {
            Ok(Some(Ok(msg))) => {
                last_event = Instant::now();
                let seq = msg
                    .info()
                    .map_err(|e| js_err("message info", e))?
                    .stream_sequence;
                let (msg, acker) = msg.split();
                pos.acks.push(acker);
                if seq <= pos.seq {
                    sink.stats.skipped += 1;
                    continue;
                }
                pos.seq = seq;
                pos.since_checkpoint += 1;
                pos.dirty = true;
                sink.stats.events += 1;
                let out = match std::str::from_utf8(&msg.payload) {
                    Ok(line) => engine.push_line(line),
                    Err(_) => Output {
                        alerts: vec![],
                        dead: vec![DeadLetter {
                            reason: "malformed vitals event: not UTF-8".into(),
                            raw: String::from_utf8_lossy(&msg.payload).into_owned(),
                        }],
                    },
                };
                sink.emit(out, seq, &cfg.stream).await?;
            }
            Ok(Some(Err(e))) => {
                // The client reconnects and re-pulls by itself; a pause keeps a lasting outage
                // from spinning.
                tracing::warn!(error = %e, "vitals consumer: delivery problem, carrying on");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(None) => {
                checkpoint(&mut sink, &engine, &store, &mut pos, true).await?;
                return Err(js_err(
                    "consume",
                    "the server ended the consumer's message stream",
                ));
            }
            Err(_idle) => {
                if engine.pending() > 0 && last_event.elapsed() >= idle_flush {
                    sink.emit(engine.flush(), pos.seq, &cfg.stream).await?;
                    pos.dirty = true;
                }
            }
        }
        if pos.saving.as_ref().is_some_and(|h| h.is_finished()) {
            finish_save(&mut sink, &mut pos).await?;
            progress.send_replace(sink.stats.clone());
        }
        if pos.since_checkpoint >= cfg.checkpoint_events
            || (pos.dirty && pos.at.elapsed() >= cfg.checkpoint_interval)
        {
            checkpoint(&mut sink, &engine, &store, &mut pos, false).await?;
        }
    }
    checkpoint(&mut sink, &engine, &store, &mut pos, true).await?;
    progress.send_replace(sink.stats.clone());
    Ok(sink.stats)
}

/// How far the loop has got since its last checkpoint.
struct Position {
    /// The last event evaluated.
    seq: u64,
    /// Acks held until a checkpoint covers their events.
    acks: Vec<Acker>,
    since_checkpoint: usize,
    /// The engine changed since the last checkpoint.
    dirty: bool,
    at: Instant,
    /// A checkpoint being written off the consumer's task (then acking what it covers).
    saving: Option<tokio::task::JoinHandle<Result<Settled, TransportError>>>,
}

/// Snapshots the engine and hands the checkpoint to a task of its own, which waits until the
/// outputs released so far are stored (broker acks, trail commits), writes the file on a
/// blocking thread and then acks the events it covers — so events keep flowing meanwhile and
/// an alert never waits behind a checkpoint. One checkpoint is in flight at most; `wait` waits
/// for this one too (shutdown).
async fn checkpoint(
    sink: &mut Sink,
    engine: &Engine,
    store: &CheckpointStore,
    pos: &mut Position,
    wait: bool,
) -> Result<(), TransportError> {
    finish_save(sink, pos).await?;
    let outstanding = sink.take_outstanding();
    let (seq, snapshot) = (pos.seq, engine.snapshot());
    let store = store.clone();
    let acks = std::mem::take(&mut pos.acks);
    pos.saving = Some(tokio::spawn(async move {
        let settled = outstanding.settle().await?;
        let cp = Checkpoint::new(seq, settled.out_seq, settled.audit_seq, snapshot);
        tokio::task::spawn_blocking(move || store.save(&cp))
            .await
            .map_err(|e| js_err("checkpoint", e))??;
        for acker in acks {
            acker.ack().await.map_err(|e| js_err("ack", e))?;
        }
        Ok(settled)
    }));
    pos.since_checkpoint = 0;
    pos.dirty = false;
    pos.at = Instant::now();
    if wait {
        finish_save(sink, pos).await?;
    }
    Ok(())
}

/// Waits for the checkpoint in flight, if any.
async fn finish_save(sink: &mut Sink, pos: &mut Position) -> Result<(), TransportError> {
    if let Some(saving) = pos.saving.take() {
        let settled = saving.await.map_err(|e| js_err("checkpoint", e))??;
        sink.settled(settled);
        sink.stats.checkpoints += 1;
    }
    Ok(())
}

/// The durable consumer, (re)created to deliver from `start`: the checkpoint, not the broker's
/// delivery state, says where the engine is, and redeliveries after a crash would otherwise
/// arrive behind newer events.
async fn resume_consumer(
    events: &Stream,
    cfg: &JetStreamConfig,
    start: u64,
    exists: bool,
) -> Result<Consumer<pull::Config>, TransportError> {
    if exists {
        events
            .delete_consumer(&cfg.consumer)
            .await
            .map_err(|e| js_err("reset consumer", e))?;
    }
    events
        .create_consumer(pull::Config {
            durable_name: Some(cfg.consumer.clone()),
            description: Some("medfed vitals alerting".into()),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start.max(1),
            },
            ack_policy: AckPolicy::Explicit,
            ack_wait: (cfg.checkpoint_interval * 4).max(Duration::from_secs(30)),
            max_ack_pending: (cfg.checkpoint_events + 2 * BATCH) as i64,
            filter_subject: cfg.events_subject(),
            ..Default::default()
        })
        .await
        .map_err(|e| js_err("create consumer", e))
}

async fn last_seq(out: &Stream) -> Result<u64, TransportError> {
    Ok(out
        .get_info()
        .await
        .map_err(|e| js_err("output stream info", e))?
        .state
        .last_sequence)
}

/// Ids of what was released after a checkpoint: published to the output stream, appended to
/// the audit trail.
#[derive(Default)]
struct Released {
    published: HashSet<String>,
    audited: HashSet<String>,
}

async fn read_back(
    out: &Stream,
    out_seq: u64,
    audit: &AuditLog,
    audit_seq: i64,
) -> Result<Released, TransportError> {
    let mut released = Released::default();
    for seq in out_seq + 1..=last_seq(out).await? {
        // A message aged out or deleted since cannot be replayed into a duplicate either.
        if let Ok(m) = out.get_raw_message(seq).await
            && let Some(id) = m.headers.get(async_nats::header::NATS_MESSAGE_ID)
        {
            released.published.insert(id.to_string());
        }
    }
    let mut after = audit_seq;
    loop {
        let records = audit.records(after, 1000).await?;
        let Some(last) = records.last() else { break };
        after = last.seq;
        released.audited.extend(
            records
                .into_iter()
                .filter(|r| r.entry.action.starts_with("vitals."))
                .filter_map(|r| r.entry.request_id),
        );
    }
    Ok(released)
}

/// What is released.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Alert,
    DeadLetter,
}

/// One alert or dead letter on its way out.
struct Release {
    id: String,
    kind: Kind,
    payload: Vec<u8>,
    entry: Entry,
}

/// Where alerts and dead letters go: the output stream and the audit trail, both at once.
///
/// An alert is published as soon as it is raised; its audit entry is queued at the same moment
/// and committed by the trail's writer while the consumer goes on. Neither waits for the other
/// or for the disk — a clinician's alert should not queue behind an fsync — and the events
/// behind them are acked only after a checkpoint has seen both stored ([`Outstanding`]). A
/// crash in between leaves an alert published without its entry (or the reverse): the
/// restart's read-back finds which half is missing, and the replay supplies only that half.
struct Sink {
    js: Context,
    site: String,
    subjects: [String; 2],
    audit: AuditLog,
    released: Released,
    outstanding: Outstanding,
    stats: RunStats,
}

/// Releases not yet known to be stored, and how far the stored ones had got.
struct Outstanding {
    published: AckWindow,
    audited: Vec<Pending>,
    out_seq: u64,
    audit_seq: i64,
}

/// How far a checkpoint's outputs got: the output stream's and the trail's last sequence.
struct Settled {
    out_seq: u64,
    audit_seq: i64,
    broker_duplicates: u64,
}

impl Outstanding {
    fn new(out_seq: u64, audit_seq: i64) -> Self {
        Self {
            published: AckWindow::new(IN_FLIGHT, "publish ack"),
            audited: Vec::with_capacity(IN_FLIGHT),
            out_seq,
            audit_seq,
        }
    }

    /// Takes publishes the broker has acked.
    fn stored(&mut self, acks: Vec<PublishAck>) -> u64 {
        let mut duplicates = 0;
        for ack in acks {
            self.out_seq = self.out_seq.max(ack.sequence);
            duplicates += u64::from(ack.duplicate);
        }
        duplicates
    }

    /// Waits for the trail to commit every entry queued.
    async fn committed(&mut self) -> Result<(), TransportError> {
        for pending in self.audited.drain(..) {
            self.audit_seq = self.audit_seq.max(pending.committed().await?.seq);
        }
        Ok(())
    }

    /// Waits until the broker has stored every publish and the trail has committed every entry.
    async fn settle(mut self) -> Result<Settled, TransportError> {
        let acks = self.published.drain().await?;
        let broker_duplicates = self.stored(acks);
        self.committed().await?;
        Ok(Settled {
            out_seq: self.out_seq,
            audit_seq: self.audit_seq,
            broker_duplicates,
        })
    }
}

impl Sink {
    fn new(
        js: Context,
        cfg: &JetStreamConfig,
        audit: AuditLog,
        released: Released,
        from: &Checkpoint,
    ) -> Self {
        Self {
            js,
            site: cfg.site.clone(),
            subjects: [cfg.alerts_subject(), cfg.dead_subject()],
            audit,
            released,
            outstanding: Outstanding::new(from.out_seq, from.audit_seq),
            stats: RunStats::default(),
        }
    }

    /// Releases every alert and dead letter of `out` (the event at `seq` raised them), in order.
    async fn emit(&mut self, out: Output, seq: u64, stream: &str) -> Result<(), TransportError> {
        for alert in out.alerts {
            let reason = format!(
                "{} alert {} (episode from {})",
                alert.severity.as_str(),
                alert.rule,
                alert.episode_start.to_rfc3339()
            );
            self.release(Release {
                id: alert.id(),
                kind: Kind::Alert,
                payload: serde_json::to_vec(&alert).expect("alerts serialise"),
                entry: Entry::new("vitals", "site", "vitals.alert", Decision::Allow, reason),
            })
            .await?;
        }
        for letter in out.dead {
            self.release(Release {
                id: format!("dead-{stream}-{seq}"),
                kind: Kind::DeadLetter,
                payload: serde_json::to_vec(&letter).expect("dead letters serialise"),
                entry: Entry::new(
                    "vitals",
                    "site",
                    "vitals.dead_letter",
                    Decision::Deny,
                    letter.reason,
                ),
            })
            .await?;
        }
        Ok(())
    }

    /// Queues the audit entry and publishes, each unless a previous run already did.
    async fn release(&mut self, r: Release) -> Result<(), TransportError> {
        if !self.released.audited.contains(&r.id) {
            let entry = r
                .entry
                .sites([self.site.as_str()])
                .result_digest(hex::encode(Sha256::digest(&r.payload)))
                .request_id(r.id.clone());
            let pending = self.audit.enqueue(entry).await?;
            self.outstanding.audited.push(pending);
        }
        if self.released.published.contains(&r.id) {
            self.stats.recovered += 1;
        } else {
            let subject = self.subjects[r.kind as usize].clone();
            let message = PublishMessage::build()
                .payload(r.payload.into())
                .message_id(&r.id);
            let ack = self
                .js
                .send_publish(subject, message)
                .await
                .map_err(|e| js_err("publish", e))?;
            match r.kind {
                Kind::Alert => self.stats.alerts += 1,
                Kind::DeadLetter => self.stats.dead += 1,
            }
            let acks = self.outstanding.published.push(ack).await?;
            self.stats.broker_duplicates += self.outstanding.stored(acks);
        }
        if self.outstanding.audited.len() >= IN_FLIGHT {
            self.outstanding.committed().await?;
        }
        Ok(())
    }

    /// What a checkpoint must wait for: the releases so far (the sink goes on with new ones).
    fn take_outstanding(&mut self) -> Outstanding {
        let next = Outstanding::new(self.outstanding.out_seq, self.outstanding.audit_seq);
        std::mem::replace(&mut self.outstanding, next)
    }

    /// Folds in how far a checkpoint's outputs got.
    fn settled(&mut self, s: Settled) {
        let o = &mut self.outstanding;
        o.out_seq = o.out_seq.max(s.out_seq);
        o.audit_seq = o.audit_seq.max(s.audit_seq);
        self.stats.broker_duplicates += s.broker_duplicates;
    }
}

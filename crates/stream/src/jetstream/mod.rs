//! The engine on NATS JetStream: vitals in from a stream through a durable pull consumer with
//! explicit acks; alerts and dead letters out to a stream of their own, each also appended to
//! the site's audit trail.
//!
//! ```text
//!  {prefix}.events ─► stream VITALS ─► durable consumer ─► Engine ─┬─► audit trail (alert / dead letter)
//!                                      (explicit acks,             └─► {prefix}.alerts, {prefix}.dead
//!                                       after each checkpoint)         ─► stream VITALS_OUT (Nats-Msg-Id)
//! ```
//!
//! # Exactly once across a restart
//! Delivery is at least once; what makes alerts exactly once is the checkpoint
//! ([`checkpoint`]): every second or so the consumer writes the engine's whole state with the
//! stream position it covers and how far the audit trail and the output stream had got, and only
//! then acks the events it covers. A restarted consumer loads the checkpoint, moves the durable
//! consumer back to the event after it, and reads back what the previous run released after its
//! checkpoint (output stream and audit trail): replaying those events raises the same alerts —
//! an alert's id is a digest of patient, rule and episode start — and the ones already out are
//! neither published nor audited again. The broker's `Nats-Msg-Id` de-duplication is a second
//! guard.
//!
//! # Trust boundary
//! Events come from bedside devices through the broker: anything that is not a well-formed,
//! physiologically possible event is dead-lettered with the reason, never dropped and never let
//! crash the consumer. Alerts name a patient pseudonym; the audit trail records only the rule,
//! the severity, the episode start and a digest of the published alert.

mod ack_window;
mod checkpoint;
mod consumer;

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, Context, stream};

use ack_window::AckWindow;
pub use checkpoint::{Checkpoint, CheckpointStore};
pub use consumer::{RunStats, run, run_with_progress};

/// How long the event stream keeps events: long enough to replay after a long outage.
const EVENTS_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long the output stream keeps alerts and dead letters for clinicians' systems to read.
const OUT_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// The broker's de-duplication window for published alerts (second guard; the first is the
/// read-back on restart, which has no window).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(3600);

/// Where the consumer reads and writes, and how often it checkpoints.
#[derive(Debug, Clone)]
pub struct JetStreamConfig {
    /// The server, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// Subjects are `{prefix}.events`, `{prefix}.alerts` and `{prefix}.dead`.
    pub prefix: String,
    /// The stream holding events.
    pub stream: String,
    /// The stream holding alerts and dead letters.
    pub out_stream: String,
    /// The durable consumer's name.
    pub consumer: String,
    /// Where checkpoints are kept (part of the site's state: back it up with the audit trail).
    pub state_dir: PathBuf,
    /// The site, as audit entries name it.
    pub site: String,
    /// Checkpoint (and ack) after this many events…
    pub checkpoint_events: usize,
    /// …or this long, whichever comes first.
    pub checkpoint_interval: Duration,
    /// Evaluate held samples after this long without any event (default: the rules' lateness),
    /// so a quiet stream does not hold back its last alerts.
    pub idle_flush: Option<Duration>,
}

impl JetStreamConfig {
    /// The defaults: subjects `vitals.*`, streams `VITALS` and `VITALS_OUT`, consumer
    /// `medfed-vitals`, a checkpoint every 2 000 events or 500 ms.
    pub fn new(url: impl Into<String>, state_dir: impl Into<PathBuf>) -> Self {
        Self {
            url: url.into(),
            prefix: "vitals".into(),
            stream: "VITALS".into(),
            out_stream: "VITALS_OUT".into(),
            consumer: "medfed-vitals".into(),
            state_dir: state_dir.into(),
            site: "site".into(),
            checkpoint_events: 2000,
            checkpoint_interval: Duration::from_millis(500),
            idle_flush: None,
        }
    }

    /// Where monitors publish.
    pub fn events_subject(&self) -> String {
        format!("{}.events", self.prefix)
    }

    /// Where alerts go.
    pub fn alerts_subject(&self) -> String {
        format!("{}.alerts", self.prefix)
    }

    /// Where dead letters go.
    pub fn dead_subject(&self) -> String {
        format!("{}.dead", self.prefix)
    }
}

/// What can go wrong on the transport side (the engine itself does not fail).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The broker cannot be reached.
    #[error("NATS at {url}: {reason} — is nats-server running, with JetStream (-js)?")]
    Connect {
        /// Where.
        url: String,
        /// What the client said.
        reason: String,
    },
    /// A JetStream call failed.
    #[error("JetStream {what}: {reason}")]
    JetStream {
        /// Which call.
        what: &'static str,
        /// What the server or client said.
        reason: String,
    },
    /// The audit trail refused an entry: nothing is released without one.
    #[error(transparent)]
    Audit(#[from] medfed_audit::AuditError),
    /// The checkpoint cannot be read or written.
    #[error("vitals checkpoint {path}: {reason}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

pub(crate) fn js_err(what: &'static str, e: impl std::fmt::Display) -> TransportError {
    TransportError::JetStream {
        what,
        reason: e.to_string(),
    }
}

/// Connects and returns a JetStream context.
pub async fn connect(url: &str) -> Result<Context, TransportError> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .map_err(|e| TransportError::Connect {
            url: url.into(),
            reason: e.to_string(),
        })?;
    Ok(jetstream::new(client))
}

/// Creates the event and output streams if they do not exist yet; returns them.
pub async fn ensure_streams(
    js: &Context,
    cfg: &JetStreamConfig,
) -> Result<(stream::Stream, stream::Stream), TransportError> {
    let events = js
        .get_or_create_stream(stream::Config {
            name: cfg.stream.clone(),
            subjects: vec![cfg.events_subject()],
            max_age: EVENTS_MAX_AGE,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| js_err("event stream", e))?;
    let out = js
        .get_or_create_stream(stream::Config {
            name: cfg.out_stream.clone(),
            subjects: vec![cfg.alerts_subject(), cfg.dead_subject()],
            max_age: OUT_MAX_AGE,
            duplicate_window: DUPLICATE_WINDOW,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| js_err("output stream", e))?;
    Ok((events, out))
}

/// Publishes events to the event stream, waiting for the broker's acks in batches (at most
/// `IN_FLIGHT` unacknowledged), as monitors' gateways and `medfed vitals simulate` do.
pub struct EventPublisher {
    js: Context,
    subject: String,
    window: AckWindow,
}

/// Publishes in flight before the publisher waits for their acks.
const IN_FLIGHT: usize = 512;

impl EventPublisher {
    /// A publisher to `cfg`'s event subject (the streams must exist: [`ensure_streams`]).
    pub fn new(js: Context, cfg: &JetStreamConfig) -> Self {
        Self {
            js,
            subject: cfg.events_subject(),
            window: AckWindow::new(IN_FLIGHT, "event ack"),
        }
    }

    /// Publishes one event (JSON).
    pub async fn publish(&mut self, payload: bytes::Bytes) -> Result<(), TransportError> {
        let ack = self
            .js
            .publish(self.subject.clone(), payload)
            .await
            .map_err(|e| js_err("publish event", e))?;
        self.window.push(ack).await?;
        Ok(())
    }

    /// Waits until the broker has stored everything published so far.
    pub async fn flush(&mut self) -> Result<(), TransportError> {
        self.window.drain().await?;
        Ok(())
    }
}

//! Real-time vitals alerting at a site (seeds 003/004): bedside monitors' vitals stream in,
//! abnormal values raise alerts for clinicians within seconds, one alert per episode.
//!
//! ```text
//!  events (JSON lines / NATS) ─► parse ─┬─► dead letters (malformed, late), with the reason
//!                                       ▼
//!              reorder by event time until the watermark (max seen − allowed lateness)
//!                                       ▼
//!       per patient: latest vitals ─► NEWS2 ─► threshold rules (unit overrides, sustained
//!       windows, one alert per episode, re-armed when the value is normal again) ─► alerts
//! ```
//! The engine is pure and synchronous — events in, alerts and dead letters out — so it is
//! tested on scripted streams and benchmarked in process. Transport lives around it:
//! [`jetstream`] runs it on NATS JetStream with exactly-once alerts across restarts and every
//! alert in the site's audit trail; [`simulate`] makes realistic wards for demos and load tests.
//!
//! ```
//! use medfed_stream::{Engine, RuleSet};
//! let mut engine = Engine::new(RuleSet::default());
//! let mut out = engine.push_line(r#"{"patient": "p1", "ts": "2026-01-01T10:00:00Z", "spo2": 85}"#);
//! out.extend(engine.flush());
//! assert_eq!(out.alerts[0].rule, "spo2_low");
//! assert_eq!(out.alerts[0].severity.as_str(), "critical");
//! ```

mod engine;
mod event;
pub mod jetstream;
pub mod news2;
mod rules;
pub mod simulate;
#[cfg(test)]
mod tests;

pub use engine::{DeadLetter, Engine, Output, Snapshot};
pub use event::{EventError, Vital, VitalsEvent};
pub use rules::{Alert, Direction, Rule, RuleSet, RulesError, Severity, UnitOverride};

//! The rule engine: samples reordered by event time up to a watermark, then each patient's
//! rules evaluated in order, one alert per episode.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{Vital, VitalsEvent};
use crate::news2;
use crate::rules::{Alert, Direction, RuleSet};

/// An event the engine could not use, with why — kept, never silently dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Why.
    pub reason: String,
    /// The event as it arrived.
    pub raw: String,
}

/// What a step of the engine produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    /// Alerts raised, in event-time order.
    pub alerts: Vec<Alert>,
    /// Events set aside.
    pub dead: Vec<DeadLetter>,
}

impl Output {
    /// Appends another step's output.
    pub fn extend(&mut self, other: Output) {
        self.alerts.extend(other.alerts);
        self.dead.extend(other.dead);
    }
}

/// A rule broken since `start`.
struct Episode {
    start: DateTime<Utc>,
    alerted: bool,
}

/// What the engine remembers of one patient.
#[derive(Default)]
struct Patient {
    /// Latest value and its time of each NEWS2 parameter.
    latest: HashMap<Vital, (f64, DateTime<Utc>)>,
    /// Open episodes by rule index.
    episodes: HashMap<usize, Episode>,
}

/// The vitals rule engine of one site.
pub struct Engine {
    rules: RuleSet,
    /// Samples waiting for the watermark, by (event time, arrival).
    pending: BTreeMap<(DateTime<Utc>, u64), VitalsEvent>,
    arrivals: u64,
    newest: Option<DateTime<Utc>>,
    /// Every sample at or before this has been evaluated.
    watermark: Option<DateTime<Utc>>,
    patients: HashMap<String, Patient>,
}

const NEWS2_PARAMETERS: [Vital; 5] = [Vital::Rr, Vital::Spo2, Vital::Sbp, Vital::Hr, Vital::Temp];

fn seconds(s: f64) -> TimeDelta {
    TimeDelta::microseconds((s * 1e6) as i64)
}

impl Engine {
    /// An engine applying `rules`.
    pub fn new(rules: RuleSet) -> Self {
        Self {
            rules,
            pending: BTreeMap::new(),
            arrivals: 0,
            newest: None,
            watermark: None,
            patients: HashMap::new(),
        }
    }

    /// Takes one JSON line: malformed ones become dead letters with the reason.
    pub fn push_line(&mut self, line: &str) -> Output {
        match VitalsEvent::parse(line) {
            Ok(event) => self.push(event),
            Err(e) => Output {
                alerts: vec![],
                dead: vec![DeadLetter {
                    reason: e.to_string(),
                    raw: line.to_string(),
                }],
            },
        }
    }

    /// Takes one sample; evaluates every held sample the new watermark has passed.
    pub fn push(&mut self, event: VitalsEvent) -> Output {
        let mut out = Output::default();
        if let Some(w) = self.watermark
            && event.ts < w
        {
            let behind = (w - event.ts).num_milliseconds() as f64 / 1e3;
            out.dead.push(DeadLetter {
                reason: format!(
                    "late: {behind} s behind the watermark (more than {} s after newer samples)",
                    self.rules.lateness_s
                ),
                raw: serde_json::to_string(&event).expect("event serialises"),
            });
            return out;
        }
        let newest = self.newest.map_or(event.ts, |n| n.max(event.ts));
        self.newest = Some(newest);
        self.arrivals += 1;
        self.pending.insert((event.ts, self.arrivals), event);
        self.advance(newest - seconds(self.rules.lateness_s), &mut out);
        out
    }

    /// Evaluates everything held (end of input, or shutdown).
    pub fn flush(&mut self) -> Output {
        let mut out = Output::default();
        if let Some(newest) = self.newest {
            self.advance(newest, &mut out);
        }
        out
    }

    /// Samples held for reordering.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn advance(&mut self, to: DateTime<Utc>, out: &mut Output) {
        if self.watermark.is_some_and(|w| w >= to) {
            return;
        }
        while let Some(entry) = self.pending.first_entry() {
            if entry.key().0 > to {
                break;
            }
            let event = entry.remove();
            self.evaluate(&event, &mut out.alerts);
        }
        self.watermark = Some(to);
    }

    fn evaluate(&mut self, e: &VitalsEvent, alerts: &mut Vec<Alert>) {
        let patient = self.patients.entry(e.patient.clone()).or_default();
        for vital in NEWS2_PARAMETERS {
            if let Some(v) = e.value(vital) {
                patient.latest.insert(vital, (v, e.ts));
            }
        }
        let fresh = |vital: Vital| {
            let &(v, at) = patient.latest.get(&vital)?;
            (e.ts - at <= seconds(self.rules.freshness_s)).then_some(v)
        };
        let latest = news2::Latest {
            rr: fresh(Vital::Rr),
            spo2: fresh(Vital::Spo2),
            sbp: fresh(Vital::Sbp),
            hr: fresh(Vital::Hr),
            temp: fresh(Vital::Temp),
        };
        // A score only when this sample moved one of its inputs.
        let score = NEWS2_PARAMETERS
            .iter()
            .any(|v| e.value(*v).is_some())
            .then(|| news2::score(&latest))
            .flatten()
            .map(f64::from);
        for (i, rule) in self.rules.rules.iter().enumerate() {
            let value = match rule.vital {
                Vital::News2 => score,
                vital => e.value(vital),
            };
            let Some(value) = value else { continue };
            let Some((direction, threshold, sustain)) = self.rules.effective(i, e.unit.as_deref())
            else {
                patient.episodes.remove(&i);
                continue;
            };
            let abnormal = match direction {
                Direction::Above => value > threshold,
                Direction::Below => value < threshold,
            };
            if !abnormal {
                patient.episodes.remove(&i); // re-armed: the next abnormal value opens a new episode
                continue;
            }
            let episode = patient.episodes.entry(i).or_insert(Episode {
                start: e.ts,
                alerted: false,
            });
            if !episode.alerted && e.ts - episode.start >= seconds(sustain) {
                episode.alerted = true;
                alerts.push(Alert {
                    patient: e.patient.clone(),
                    rule: rule.name.clone(),
                    severity: rule.severity,
                    value,
                    episode_start: episode.start,
                    ts: e.ts,
                    unit: e.unit.clone(),
                });
            }
        }
    }
}

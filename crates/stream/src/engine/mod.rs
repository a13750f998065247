//! The rule engine: samples reordered by event time up to a watermark, then each patient's
//! rules evaluated in order, one alert per episode.
//!
//! The hot path works on plain numbers: event time as µs since the epoch, patients and units
//! as indices into tables (a known pseudonym is looked up, never copied), vitals as an array,
//! each rule's thresholds per unit worked out once. The public types (`VitalsEvent`, `Alert`)
//! are made only at the edges.

mod reorder;
mod snapshot;

use serde::{Deserialize, Serialize};

use crate::event::{Parsed, Values, Vital, VitalsEvent, time};
use crate::news2;
use crate::rules::{Alert, Direction, RuleSet};
use reorder::{Reorder, Sample};
pub use snapshot::Snapshot;

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

    fn dead(reason: String, raw: String) -> Self {
        Self {
            alerts: vec![],
            dead: vec![DeadLetter { reason, raw }],
        }
    }
}

/// A rule broken since `start` (times in µs).
#[derive(Debug, Clone, Copy)]
struct Episode {
    start: i64,
    alerted: bool,
    /// Since when the value has been normal again, while the rule's `rearm_s` runs.
    normal_since: Option<i64>,
}

/// What the engine remembers of one patient. Arrays indexed by parameter and by rule, not maps:
/// this is touched for every sample, and hashing an enum per vital cost a third of the time.
struct Patient {
    name: Box<str>,
    /// Latest value and its time of each NEWS2 parameter, in [`NEWS2_PARAMETERS`] order.
    latest: [Option<(f64, i64)>; 5],
    /// Open episodes by rule index.
    episodes: Vec<Option<Episode>>,
}

/// How rule `i` applies in one unit: worked out once per unit, not per sample.
#[derive(Debug, Clone, Copy)]
struct Applied {
    direction: Direction,
    threshold: f64,
    sustain: i64,
    rearm: i64,
}

/// A unit as samples name it, with how each rule applies there (`None`: switched off).
struct Unit {
    name: Option<Box<str>>,
    rules: Vec<Option<Applied>>,
}

/// The vitals rule engine of one site.
pub struct Engine {
    rules: RuleSet,
    lateness: i64,
    freshness: i64,
    /// Samples waiting for the watermark, in event-time order.
    pending: Reorder,
    newest: Option<i64>,
    /// Every sample at or before this has been evaluated.
    watermark: Option<i64>,
    patients: Vec<Patient>,
    patient_index: foldhash::HashMap<Box<str>, u32>,
    /// Index 0 is "no unit named".
    units: Vec<Unit>,
    unit_index: foldhash::HashMap<Box<str>, u32>,
}

const NEWS2_PARAMETERS: [Vital; 5] = [Vital::Rr, Vital::Spo2, Vital::Sbp, Vital::Hr, Vital::Temp];

/// Seconds as µs.
fn micros(s: f64) -> i64 {
    (s * 1e6) as i64
}

impl Engine {
    /// An engine applying `rules`.
    pub fn new(rules: RuleSet) -> Self {
        let mut engine = Self {
            lateness: micros(rules.lateness_s),
            freshness: micros(rules.freshness_s),
            rules,
            pending: Reorder::default(),
            newest: None,
            watermark: None,
            patients: Vec::new(),
            patient_index: Default::default(),
            units: Vec::new(),
            unit_index: Default::default(),
        };
        engine.units.push(engine.unit_rules(None));
        engine
    }

    /// Takes one JSON line: malformed ones become dead letters with the reason.
    pub fn push_line(&mut self, line: &str) -> Output {
        match Parsed::from_line(line) {
            Ok(p) => {
                if let Some(late) = self.late(p.ts) {
                    return Output::dead(late, line.to_string());
                }
                let sample = self.sample(&p.patient, p.unit.as_deref(), p.ts, p.values);
                self.admit(sample)
            }
            Err(e) => Output::dead(e.to_string(), line.to_string()),
        }
    }

    /// Takes one sample; evaluates every held sample the new watermark has passed.
    pub fn push(&mut self, event: VitalsEvent) -> Output {
        let ts = event.ts.timestamp_micros();
        if let Some(late) = self.late(ts) {
            let raw = serde_json::to_string(&event).expect("event serialises");
            return Output::dead(late, raw);
        }
        let sample = self.sample(&event.patient, event.unit.as_deref(), ts, event.values());
        self.admit(sample)
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

    /// Why a sample at `ts` is too late to be ordered in, if it is.
    fn late(&self, ts: i64) -> Option<String> {
        let w = self.watermark.filter(|&w| ts < w)?;
        Some(format!(
            "late: {} s behind the watermark (more than {} s after newer samples)",
            ((w - ts) / 1000) as f64 / 1e3,
            self.rules.lateness_s
        ))
    }

    fn admit(&mut self, sample: Sample) -> Output {
        let newest = self.newest.map_or(sample.ts, |n| n.max(sample.ts));
        self.newest = Some(newest);
        self.pending.insert(sample);
        let mut out = Output::default();
        self.advance(newest - self.lateness, &mut out);
        out
    }

    /// The engine's form of a sample: its patient and unit looked up (and added if new).
    fn sample(&mut self, patient: &str, unit: Option<&str>, ts: i64, values: Values) -> Sample {
        let patient = match self.patient_index.get(patient) {
            Some(&i) => i,
            None => self.add_patient(patient),
        };
        let unit = match unit {
            None => 0,
            Some(u) => match self.unit_index.get(u) {
                Some(&i) => i,
                None => {
                    let i = self.units.len() as u32;
                    self.units.push(self.unit_rules(Some(u)));
                    self.unit_index.insert(u.into(), i);
                    i
                }
            },
        };
        Sample {
            ts,
            patient,
            unit,
            values,
        }
    }

    fn add_patient(&mut self, name: &str) -> u32 {
        let i = self.patients.len() as u32;
        self.patients.push(Patient {
            name: name.into(),
            latest: [None; 5],
            episodes: vec![None; self.rules.rules.len()],
        });
        self.patient_index.insert(name.into(), i);
        i
    }

    /// How every rule applies in `unit`.
    fn unit_rules(&self, unit: Option<&str>) -> Unit {
        let rules = (0..self.rules.rules.len())
            .map(|i| {
                let (direction, threshold, sustain) = self.rules.effective(i, unit)?;
                Some(Applied {
                    direction,
                    threshold,
                    sustain: micros(sustain),
                    rearm: micros(self.rules.rules[i].rearm_s),
                })
            })
            .collect();
        Unit {
            name: unit.map(Into::into),
            rules,
        }
    }

    fn advance(&mut self, to: i64, out: &mut Output) {
        if self.watermark.is_some_and(|w| w >= to) {
            return;
        }
        while let Some(sample) = self.pending.pop_through(to) {
            self.evaluate(&sample, &mut out.alerts);
        }
        self.watermark = Some(to);
    }

    fn evaluate(&mut self, s: &Sample, alerts: &mut Vec<Alert>) {
        let patient = &mut self.patients[s.patient as usize];
        let mut moved = false;
        for (slot, vital) in patient.latest.iter_mut().zip(NEWS2_PARAMETERS) {
            if let Some(v) = s.values.get(vital) {
                *slot = Some((v, s.ts));
                moved = true;
            }
        }
        // A score only when this sample moved one of its inputs.
        let score = moved
            .then(|| {
                let fresh = |i: usize| {
                    let (v, at) = patient.latest[i]?;
                    (s.ts - at <= self.freshness).then_some(v)
                };
                let latest = news2::Latest {
                    rr: fresh(0),
                    spo2: fresh(1),
                    sbp: fresh(2),
                    hr: fresh(3),
                    temp: fresh(4),
                };
                news2::score(&latest).map(f64::from)
            })
            .flatten();
        let unit = &self.units[s.unit as usize];
        for (i, rule) in self.rules.rules.iter().enumerate() {
            let value = match rule.vital {
                Vital::News2 => score,
                vital => s.values.get(vital),
            };
            let Some(value) = value else { continue };
            let slot = &mut patient.episodes[i];
            let Some(applied) = unit.rules[i] else {
                *slot = None;
                continue;
            };
            let abnormal = match applied.direction {
                Direction::Above => value > applied.threshold,
                Direction::Below => value < applied.threshold,
            };
            if !abnormal {
                // Re-armed (the next abnormal value opens a new episode) at once, or — for an
                // episode that alerted — once the value has stayed normal for `rearm_s`, so a
                // value hovering at the threshold does not alert again and again.
                match slot {
                    Some(ep) if ep.alerted && applied.rearm > 0 => {
                        let since = *ep.normal_since.get_or_insert(s.ts);
                        if s.ts - since >= applied.rearm {
                            *slot = None;
                        }
                    }
                    _ => *slot = None,
                }
                continue;
            }
            let episode = slot.get_or_insert(Episode {
                start: s.ts,
                alerted: false,
                normal_since: None,
            });
            episode.normal_since = None;
            if !episode.alerted && s.ts - episode.start >= applied.sustain {
                episode.alerted = true;
                alerts.push(Alert {
                    patient: patient.name.to_string(),
                    rule: rule.name.clone(),
                    severity: rule.severity,
                    value,
                    episode_start: time(episode.start),
                    ts: time(s.ts),
                    unit: unit.name.as_deref().map(str::to_string),
                });
            }
        }
    }
}

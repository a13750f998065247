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
#[derive(Debug, Clone, Copy)]
struct Episode {
    start: DateTime<Utc>,
    alerted: bool,
    /// Since when the value has been normal again, while the rule's `rearm_s` runs.
    normal_since: Option<DateTime<Utc>>,
}

/// What the engine remembers of one patient. Arrays indexed by parameter and by rule, not maps:
/// this is touched for every sample, and hashing an enum per vital cost a third of the time.
#[derive(Default)]
struct Patient {
    /// Latest value and its time of each NEWS2 parameter, in [`NEWS2_PARAMETERS`] order.
    latest: [Option<(f64, DateTime<Utc>)>; 5],
    /// Open episodes by rule index.
    episodes: Vec<Option<Episode>>,
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
        if !self.patients.contains_key(&e.patient) {
            self.patients.insert(e.patient.clone(), Patient::default());
        }
        let patient = self.patients.get_mut(&e.patient).expect("inserted above");
        patient.episodes.resize(self.rules.rules.len(), None);
        let mut moved = false;
        for (slot, vital) in patient.latest.iter_mut().zip(NEWS2_PARAMETERS) {
            if let Some(v) = e.value(vital) {
                *slot = Some((v, e.ts));
                moved = true;
            }
        }
        // A score only when this sample moved one of its inputs.
        let score = if moved {
            let freshness = seconds(self.rules.freshness_s);
            let fresh = |i: usize| {
                let (v, at) = patient.latest[i]?;
                (e.ts - at <= freshness).then_some(v)
            };
            let latest = news2::Latest {
                rr: fresh(0),
                spo2: fresh(1),
                sbp: fresh(2),
                hr: fresh(3),
                temp: fresh(4),
            };
            news2::score(&latest).map(f64::from)
        } else {
            None
        };
        for (i, rule) in self.rules.rules.iter().enumerate() {
            let value = match rule.vital {
                Vital::News2 => score,
                vital => e.value(vital),
            };
            let Some(value) = value else { continue };
            let slot = &mut patient.episodes[i];
            let Some((direction, threshold, sustain)) = self.rules.effective(i, e.unit.as_deref())
            else {
                *slot = None;
                continue;
            };
            let abnormal = match direction {
                Direction::Above => value > threshold,
                Direction::Below => value < threshold,
            };
            if !abnormal {
                // Re-armed (the next abnormal value opens a new episode) at once, or — for an
                // episode that alerted — once the value has stayed normal for `rearm_s`, so a
                // value hovering at the threshold does not alert again and again.
                match slot {
                    Some(ep) if ep.alerted && rule.rearm_s > 0.0 => {
                        let since = *ep.normal_since.get_or_insert(e.ts);
                        if e.ts - since >= seconds(rule.rearm_s) {
                            *slot = None;
                        }
                    }
                    _ => *slot = None,
                }
                continue;
            }
            let episode = slot.get_or_insert(Episode {
                start: e.ts,
                alerted: false,
                normal_since: None,
            });
            episode.normal_since = None;
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

    /// The engine's whole state, to checkpoint: what a restarted engine needs to go on exactly
    /// where this one was (samples held for reordering, the watermark, each patient's latest
    /// vitals and open episodes). Episodes are keyed by rule name, so a changed rule file
    /// keeps the episodes of the rules it still has.
    pub fn snapshot(&self) -> Snapshot {
        let mut patients: Vec<PatientState> = self
            .patients
            .iter()
            .map(|(id, p)| PatientState {
                patient: id.clone(),
                latest: NEWS2_PARAMETERS
                    .iter()
                    .zip(&p.latest)
                    .filter_map(|(v, slot)| slot.map(|(x, at)| (*v, x, at)))
                    .collect(),
                episodes: p
                    .episodes
                    .iter()
                    .enumerate()
                    .filter_map(|(i, ep)| {
                        ep.map(|ep| EpisodeState {
                            rule: self.rules.rules[i].name.clone(),
                            start: ep.start,
                            alerted: ep.alerted,
                            normal_since: ep.normal_since,
                        })
                    })
                    .collect(),
            })
            .collect();
        patients.sort_by(|a, b| a.patient.cmp(&b.patient));
        Snapshot {
            pending: self.pending.values().cloned().collect(),
            newest: self.newest,
            watermark: self.watermark,
            patients,
        }
    }

    /// An engine applying `rules` that goes on from `snapshot`.
    pub fn restore(rules: RuleSet, snapshot: Snapshot) -> Self {
        let mut engine = Engine::new(rules);
        for event in snapshot.pending {
            engine.arrivals += 1;
            engine.pending.insert((event.ts, engine.arrivals), event);
        }
        engine.newest = snapshot.newest;
        engine.watermark = snapshot.watermark;
        let index: HashMap<&str, usize> = engine
            .rules
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.as_str(), i))
            .collect();
        for state in snapshot.patients {
            let mut p = Patient {
                episodes: vec![None; engine.rules.rules.len()],
                ..Patient::default()
            };
            for (vital, v, at) in state.latest {
                if let Some(i) = NEWS2_PARAMETERS.iter().position(|x| *x == vital) {
                    p.latest[i] = Some((v, at));
                }
            }
            for ep in state.episodes {
                if let Some(&i) = index.get(ep.rule.as_str()) {
                    p.episodes[i] = Some(Episode {
                        start: ep.start,
                        alerted: ep.alerted,
                        normal_since: ep.normal_since,
                    });
                }
            }
            engine.patients.insert(state.patient, p);
        }
        engine
    }
}

/// An [`Engine`]'s state as data (see [`Engine::snapshot`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pending: Vec<VitalsEvent>,
    newest: Option<DateTime<Utc>>,
    watermark: Option<DateTime<Utc>>,
    patients: Vec<PatientState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PatientState {
    patient: String,
    /// (parameter, value, measured at).
    latest: Vec<(Vital, f64, DateTime<Utc>)>,
    episodes: Vec<EpisodeState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct EpisodeState {
    rule: String,
    start: DateTime<Utc>,
    alerted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    normal_since: Option<DateTime<Utc>>,
}

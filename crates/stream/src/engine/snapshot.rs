//! The engine's whole state as data, for checkpoints: what a restarted engine needs to go on
//! exactly where this one was.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Engine, Episode, NEWS2_PARAMETERS};
use crate::event::{Vital, VitalsEvent, time};
use crate::rules::RuleSet;

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

impl Engine {
    /// The engine's whole state, to checkpoint: samples held for reordering, the watermark,
    /// each patient's latest vitals and open episodes. Episodes are keyed by rule name, so a
    /// changed rule file keeps the episodes of the rules it still has.
    ///
    /// ```
    /// use medfed_stream::{Engine, RuleSet};
    /// let mut engine = Engine::new(RuleSet::default());
    /// engine.push_line(r#"{"patient": "p1", "ts": "2026-01-01T10:00:00Z", "spo2": 85}"#);
    /// let mut restarted = Engine::restore(RuleSet::default(), engine.snapshot());
    /// assert_eq!(restarted.flush().alerts[0].rule, "spo2_low");
    /// ```
    pub fn snapshot(&self) -> Snapshot {
        let mut patients: Vec<PatientState> = self
            .patients
            .iter()
            .map(|p| PatientState {
                patient: p.name.to_string(),
                latest: NEWS2_PARAMETERS
                    .iter()
                    .zip(&p.latest)
                    .filter_map(|(v, slot)| slot.map(|(x, at)| (*v, x, time(at))))
                    .collect(),
                episodes: p
                    .episodes
                    .iter()
                    .zip(&self.rules.rules)
                    .filter_map(|(ep, rule)| {
                        ep.map(|ep| EpisodeState {
                            rule: rule.name.clone(),
                            start: time(ep.start),
                            alerted: ep.alerted,
                            normal_since: ep.normal_since.map(time),
                        })
                    })
                    .collect(),
            })
            .collect();
        patients.sort_by(|a, b| a.patient.cmp(&b.patient));
        let pending = self
            .pending
            .iter()
            .map(|s| {
                let patient = &self.patients[s.patient as usize].name;
                let unit = self.units[s.unit as usize].name.as_deref();
                VitalsEvent::from_parts(patient, unit, s.ts, &s.values)
            })
            .collect();
        Snapshot {
            pending,
            newest: self.newest.map(time),
            watermark: self.watermark.map(time),
            patients,
        }
    }

    /// An engine applying `rules` that goes on from `snapshot`.
    pub fn restore(rules: RuleSet, snapshot: Snapshot) -> Self {
        let mut engine = Engine::new(rules);
        let index: HashMap<String, usize> = engine
            .rules
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.clone(), i))
            .collect();
        for state in snapshot.patients {
            let i = engine.add_patient(&state.patient) as usize;
            let p = &mut engine.patients[i];
            for (vital, v, at) in state.latest {
                if let Some(k) = NEWS2_PARAMETERS.iter().position(|x| *x == vital) {
                    p.latest[k] = Some((v, at.timestamp_micros()));
                }
            }
            for ep in state.episodes {
                if let Some(&k) = index.get(&ep.rule) {
                    p.episodes[k] = Some(Episode {
                        start: ep.start.timestamp_micros(),
                        alerted: ep.alerted,
                        normal_since: ep.normal_since.map(|t| t.timestamp_micros()),
                    });
                }
            }
        }
        for event in snapshot.pending {
            let ts = event.ts.timestamp_micros();
            let sample = engine.sample(&event.patient, event.unit.as_deref(), ts, event.values());
            engine.pending.insert(sample);
        }
        engine.newest = snapshot.newest.map(|t| t.timestamp_micros());
        engine.watermark = snapshot.watermark.map(|t| t.timestamp_micros());
        engine
    }
}

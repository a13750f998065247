//! Realistic vitals for demos and load tests. Each patient has a baseline of their own and
//! drifts around it; now and then one deteriorates — a sepsis-like course over minutes: heart
//! and breathing rates climb, blood pressure and saturation fall, a fever rises — and recovers.
//! Deterministic for a seed, so a load test is repeatable.
//!
//! ```
//! use medfed_stream::simulate::{SimConfig, Simulator};
//! let mut sim = Simulator::new(&SimConfig { patients: 3, ..SimConfig::default() });
//! let t = chrono::Utc::now();
//! let e = sim.sample(t);
//! assert_eq!((e.patient.as_str(), e.ts), ("sim-0000", t));
//! assert!(e.hr.is_some() && e.spo2.is_some());
//! ```

use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use crate::event::VitalsEvent;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Patients on monitors.
    pub patients: usize,
    /// Deteriorations started per patient per hour of event time.
    pub deteriorations_per_hour: f64,
    /// Seed of the random stream.
    pub seed: u64,
}

impl Default for SimConfig {
    /// 100 patients, one deterioration per patient every ten hours.
    fn default() -> Self {
        Self {
            patients: 100,
            deteriorations_per_hour: 0.1,
            seed: 1,
        }
    }
}

/// Wards the simulated patients lie on (one ICU among them, for unit overrides).
const UNITS: [&str; 4] = ["ward-3", "ward-5", "icu", "cardiology"];

/// How long a deterioration worsens, holds and resolves, in seconds.
const RAMP_S: f64 = 300.0;
const HOLD_S: f64 = 300.0;

/// hr, sbp, dbp, spo2, rr, temp: change at full severity, and the drift's step SD.
const WORSENING: [f64; 6] = [55.0, -50.0, -25.0, -10.0, 13.0, 1.9];
const DRIFT_SD: [f64; 6] = [1.0, 1.5, 1.0, 0.3, 0.4, 0.02];

struct Patient {
    id: String,
    unit: &'static str,
    baseline: [f64; 6],
    drift: [f64; 6],
    samples: u64,
    last: Option<DateTime<Utc>>,
    /// (start, severity) of a deterioration under way.
    course: Option<(DateTime<Utc>, f64)>,
}

/// The generator: [`Simulator::sample`] gives the next patient's sample, round robin.
pub struct Simulator {
    rng: ChaCha8Rng,
    patients: Vec<Patient>,
    next: usize,
    rate_per_s: f64,
}

impl Simulator {
    /// Patients with baselines drawn from adult ward norms.
    pub fn new(cfg: &SimConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let patients = (0..cfg.patients.max(1))
            .map(|i| {
                let mut draw = |mean: f64, sd: f64| {
                    mean + sd * rng.sample::<f64, _>(rand_distr::StandardNormal)
                };
                Patient {
                    id: format!("sim-{i:04}"),
                    unit: UNITS[i % UNITS.len()],
                    // Stable patients: baselines clear of every threshold, so alerts come
                    // from deteriorations, not from a healthy value hovering at a limit.
                    baseline: [
                        draw(76.0, 9.0).clamp(60.0, 100.0),
                        draw(126.0, 12.0).clamp(105.0, 160.0),
                        draw(76.0, 7.0).clamp(60.0, 90.0),
                        draw(97.0, 1.0).clamp(95.0, 99.5),
                        draw(15.0, 1.5).clamp(12.0, 19.0),
                        draw(36.8, 0.25).clamp(36.2, 37.5),
                    ],
                    drift: [0.0; 6],
                    samples: 0,
                    last: None,
                    course: None,
                }
            })
            .collect();
        Self {
            rng,
            patients,
            next: 0,
            rate_per_s: cfg.deteriorations_per_hour / 3600.0,
        }
    }

    /// The next patient's vitals as measured at `ts`: heart rate, saturation and breathing
    /// every sample, blood pressure every third (a cuff), temperature every tenth.
    pub fn sample(&mut self, ts: DateTime<Utc>) -> VitalsEvent {
        let i = self.next;
        self.next = (self.next + 1) % self.patients.len();
        let p = &mut self.patients[i];
        let dt = p
            .last
            .map_or(1.0, |l| (ts - l).num_milliseconds().max(0) as f64 / 1e3);
        p.last = Some(ts);
        p.samples += 1;
        if p.course.is_none() && self.rng.random_bool((self.rate_per_s * dt).min(1.0)) {
            p.course = Some((ts, self.rng.random_range(0.6..1.2)));
        }
        let level = match p.course {
            Some((start, severity)) => {
                let t = (ts - start).num_milliseconds() as f64 / 1e3;
                let shape = if t < RAMP_S {
                    t / RAMP_S
                } else if t < RAMP_S + HOLD_S {
                    1.0
                } else {
                    1.0 - (t - RAMP_S - HOLD_S) / RAMP_S
                };
                if t > RAMP_S + HOLD_S && shape <= 0.0 {
                    p.course = None; // recovered
                }
                severity * shape.max(0.0)
            }
            None => 0.0,
        };
        let step = Normal::new(0.0, 1.0).expect("a valid normal");
        let mut v = [0.0; 6];
        for k in 0..6 {
            p.drift[k] = 0.98 * p.drift[k] + DRIFT_SD[k] * step.sample(&mut self.rng);
            v[k] = p.baseline[k] + p.drift[k] + level * WORSENING[k];
        }
        let n = p.samples;
        VitalsEvent {
            patient: p.id.clone(),
            ts,
            device: Some(format!("mon-{i:04}")),
            unit: Some(p.unit.to_string()),
            hr: Some(v[0].clamp(30.0, 220.0).round() as i64),
            sbp: (n % 3 == 1).then(|| v[1].clamp(50.0, 240.0).round() as i64),
            dbp: (n % 3 == 1).then(|| v[2].clamp(30.0, 140.0).round() as i64),
            spo2: Some(v[3].clamp(70.0, 100.0).round() as i64),
            rr: Some(v[4].clamp(4.0, 50.0).round() as i64),
            temp: (n % 10 == 1).then(|| (v[5].clamp(34.0, 42.0) * 10.0).round() / 10.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Engine, RuleSet};

    #[test]
    fn a_simulated_ward_is_mostly_calm_with_some_deteriorations_that_alert() {
        let cfg = SimConfig {
            patients: 50,
            deteriorations_per_hour: 0.5,
            seed: 7,
        };
        let mut sim = Simulator::new(&cfg);
        let mut engine = Engine::new(RuleSet::default());
        let start = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let mut alerts = Vec::new();
        let n = 50 * 3600; // one sample per patient per second for an hour
        for k in 0..n {
            let ts = start + chrono::TimeDelta::milliseconds(k as i64 * 20);
            let e = sim.sample(ts);
            let line = serde_json::to_string(&e).unwrap();
            let out = engine.push_line(&line);
            assert!(out.dead.is_empty(), "{:?}", out.dead);
            alerts.extend(out.alerts);
        }
        alerts.extend(engine.flush().alerts);
        let patients: std::collections::BTreeSet<_> = alerts.iter().map(|a| &a.patient).collect();
        // About 25 deteriorations are expected; each alerts a few rules once.
        assert!(
            (5..=50).contains(&patients.len()),
            "{} patients alerted",
            patients.len()
        );
        assert!(
            alerts.len() < n / 100,
            "{} alerts: a calm ward must not alarm all the time",
            alerts.len()
        );
        assert!(alerts.iter().any(|a| a.rule.starts_with("news2")));
        // The same seed gives the same stream.
        let mut again = Simulator::new(&cfg);
        assert_eq!(Simulator::new(&cfg).sample(start), again.sample(start));
    }
}

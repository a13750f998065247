//! A vitals event as monitors send it, and its parse: borrowed from the line, so a sample of a
//! patient the engine already knows costs no allocation.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One sample of a patient's vitals; an absent field was not measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitalsEvent {
    /// The patient's pseudonym.
    pub patient: String,
    /// When the monitor measured (event time, RFC 3339).
    pub ts: DateTime<Utc>,
    /// The monitor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The ward or unit (selects per-unit rule overrides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Heart rate, beats/min.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hr: Option<i64>,
    /// Systolic blood pressure, mmHg.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbp: Option<i64>,
    /// Diastolic blood pressure, mmHg.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dbp: Option<i64>,
    /// Oxygen saturation, %.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spo2: Option<i64>,
    /// Respiratory rate, breaths/min.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rr: Option<i64>,
    /// Temperature, °C.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temp: Option<f64>,
}

/// A measured quantity a rule can watch (`news2` is derived by the engine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Vital {
    /// Heart rate.
    Hr,
    /// Systolic BP.
    Sbp,
    /// Diastolic BP.
    Dbp,
    /// SpO2.
    Spo2,
    /// Respiratory rate.
    Rr,
    /// Temperature.
    Temp,
    /// The NEWS2 aggregate score of the patient's latest vitals.
    News2,
}

/// The measured vitals in order, as the engine keeps them: [`Vital`] as index, NaN where not
/// measured (a parsed value is always finite). Half the size of six `Option<f64>`s, and copied
/// with every held sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Values([f64; 6]);

/// The physiologically possible range of each measured vital, in [`Values`] order: a negative
/// heart rate is a broken feed, not a bradycardia.
const POSSIBLE: [(Vital, f64, f64); 6] = [
    (Vital::Hr, 0.0, 350.0),
    (Vital::Sbp, 0.0, 350.0),
    (Vital::Dbp, 0.0, 300.0),
    (Vital::Spo2, 0.0, 100.0),
    (Vital::Rr, 0.0, 120.0),
    (Vital::Temp, 20.0, 45.0),
];

impl Values {
    fn new(ints: [Option<i64>; 5], temp: Option<f64>) -> Self {
        let mut v = [f64::NAN; 6];
        for (slot, x) in v.iter_mut().zip(ints) {
            if let Some(x) = x {
                *slot = x as f64;
            }
        }
        v[5] = temp.unwrap_or(f64::NAN);
        Self(v)
    }

    /// The value of `vital`, if measured (NEWS2 is never measured).
    #[inline]
    pub(crate) fn get(&self, vital: Vital) -> Option<f64> {
        let v = *self.0.get(vital as usize)?;
        (!v.is_nan()).then_some(v)
    }

    fn int(&self, vital: Vital) -> Option<i64> {
        self.get(vital).map(|v| v as i64)
    }

    /// Refuses values outside what a living patient can show.
    fn check(&self) -> Result<(), EventError> {
        for (&v, (vital, lo, hi)) in self.0.iter().zip(POSSIBLE) {
            if !v.is_nan() && !(lo..=hi).contains(&v) {
                return Err(EventError(format!(
                    "{vital:?} = {v} is outside the possible range [{lo}, {hi}]"
                )));
            }
        }
        Ok(())
    }
}

/// An event read from JSON, borrowing its strings from the line where it can.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire<'a> {
    #[serde(borrow)]
    patient: Cow<'a, str>,
    #[serde(borrow)]
    ts: Cow<'a, str>,
    #[serde(default, borrow)]
    device: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    unit: Option<Cow<'a, str>>,
    hr: Option<i64>,
    sbp: Option<i64>,
    dbp: Option<i64>,
    spo2: Option<i64>,
    rr: Option<i64>,
    temp: Option<f64>,
}

/// A checked event, still borrowing from its line: what the engine takes in.
pub(crate) struct Parsed<'a> {
    pub patient: Cow<'a, str>,
    pub device: Option<Cow<'a, str>>,
    pub unit: Option<Cow<'a, str>>,
    /// Event time, µs since the Unix epoch.
    pub ts: i64,
    pub values: Values,
}

impl<'a> Parsed<'a> {
    /// Parses and checks one JSON event.
    pub(crate) fn from_line(line: &'a str) -> Result<Self, EventError> {
        let w: Wire<'a> = serde_json::from_str(line).map_err(|e| EventError(e.to_string()))?;
        if w.patient.trim().is_empty() {
            return Err(EventError("empty patient pseudonym".into()));
        }
        let ts = DateTime::parse_from_rfc3339(&w.ts)
            .map_err(|e| EventError(format!("ts {:?} is not an RFC 3339 time: {e}", w.ts)))?
            .timestamp_micros();
        let values = Values::new([w.hr, w.sbp, w.dbp, w.spo2, w.rr], w.temp);
        values.check()?;
        Ok(Self {
            patient: w.patient,
            device: w.device,
            unit: w.unit,
            ts,
            values,
        })
    }
}

/// Event time as the engine keeps it (µs since the Unix epoch) back as a time.
pub(crate) fn time(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).expect("µs from a valid time are a valid time")
}

impl VitalsEvent {
    /// The value of `vital` in this sample, if measured (NEWS2 is never in a sample).
    pub fn value(&self, vital: Vital) -> Option<f64> {
        self.values().get(vital)
    }

    pub(crate) fn values(&self) -> Values {
        Values::new([self.hr, self.sbp, self.dbp, self.spo2, self.rr], self.temp)
    }

    /// An event from what the engine held of it.
    pub(crate) fn from_parts(patient: &str, unit: Option<&str>, ts: i64, v: &Values) -> Self {
        Self {
            patient: patient.to_string(),
            ts: time(ts),
            device: None,
            unit: unit.map(str::to_string),
            hr: v.int(Vital::Hr),
            sbp: v.int(Vital::Sbp),
            dbp: v.int(Vital::Dbp),
            spo2: v.int(Vital::Spo2),
            rr: v.int(Vital::Rr),
            temp: v.get(Vital::Temp),
        }
    }

    /// Parses one JSON event and checks it is physiologically possible (a negative heart rate
    /// is a broken feed, not a bradycardia).
    ///
    /// ```
    /// use medfed_stream::VitalsEvent;
    /// let e = VitalsEvent::parse(r#"{"patient": "p1", "ts": "2026-01-01T10:00:00Z", "hr": 72}"#)?;
    /// assert_eq!(e.hr, Some(72));
    /// assert!(VitalsEvent::parse(r#"{"patient": "p1", "ts": "2026-01-01T10:00:00Z", "hr": -3}"#).is_err());
    /// # Ok::<(), medfed_stream::EventError>(())
    /// ```
    pub fn parse(line: &str) -> Result<Self, EventError> {
        let p = Parsed::from_line(line)?;
        let mut e = Self::from_parts(&p.patient, p.unit.as_deref(), p.ts, &p.values);
        e.device = p.device.map(Cow::into_owned);
        Ok(e)
    }
}

/// Why an event could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("malformed vitals event: {0}")]
pub struct EventError(pub String);

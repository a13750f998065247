//! A vitals event as monitors send it.

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

impl VitalsEvent {
    /// The value of `vital` in this sample, if measured (NEWS2 is never in a sample).
    pub fn value(&self, vital: Vital) -> Option<f64> {
        match vital {
            Vital::Hr => self.hr.map(|v| v as f64),
            Vital::Sbp => self.sbp.map(|v| v as f64),
            Vital::Dbp => self.dbp.map(|v| v as f64),
            Vital::Spo2 => self.spo2.map(|v| v as f64),
            Vital::Rr => self.rr.map(|v| v as f64),
            Vital::Temp => self.temp,
            Vital::News2 => None,
        }
    }

    /// Parses one JSON event and checks it is physiologically possible (a negative heart rate
    /// is a broken feed, not a bradycardia).
    pub fn parse(line: &str) -> Result<Self, EventError> {
        let e: Self = serde_json::from_str(line).map_err(|e| EventError(e.to_string()))?;
        if e.patient.trim().is_empty() {
            return Err(EventError("empty patient pseudonym".into()));
        }
        let ranges = [
            (Vital::Hr, 0.0, 350.0),
            (Vital::Sbp, 0.0, 350.0),
            (Vital::Dbp, 0.0, 300.0),
            (Vital::Spo2, 0.0, 100.0),
            (Vital::Rr, 0.0, 120.0),
            (Vital::Temp, 20.0, 45.0),
        ];
        for (vital, lo, hi) in ranges {
            if let Some(v) = e.value(vital)
                && !(v.is_finite() && (lo..=hi).contains(&v))
            {
                return Err(EventError(format!(
                    "{vital:?} = {v} is outside the possible range [{lo}, {hi}]"
                )));
            }
        }
        Ok(e)
    }
}

/// Why an event could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("malformed vitals event: {0}")]
pub struct EventError(pub String);

//! Alert rules: thresholds on one vital, optionally sustained for a window of event time, with
//! per-unit overrides. The defaults are the seeds' thresholds plus NEWS2's trigger levels.
//!
//! ```toml
//! lateness_s = 5           # how late (event time) a sample may arrive and still be ordered in
//! freshness_s = 900        # how old a vital may be and still count in a NEWS2 score
//!
//! [[rule]]
//! name = "hr_high"
//! vital = "hr"
//! above = 120
//! severity = "warning"
//! sustain_s = 60           # alert once it has been above 120 for a minute
//! rearm_s = 60             # and again only after a minute of normal values
//!
//! [units.icu.hr_high]      # in the ICU: a higher threshold, or `enabled = false`
//! threshold = 140
//! ```

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::event::Vital;

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Review soon.
    Warning,
    /// Review now.
    High,
    /// Emergency response.
    Critical,
}

impl Severity {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

/// Which side of the threshold is abnormal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Values strictly above.
    Above,
    /// Values strictly below.
    Below,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Its name, as alerts carry it.
    pub name: String,
    /// What it watches.
    pub vital: Vital,
    /// Abnormal above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    /// Abnormal below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    /// The alert's severity.
    pub severity: Severity,
    /// Seconds of event time the value must stay abnormal before the alert (0: at once).
    #[serde(default)]
    pub sustain_s: f64,
    /// Seconds of event time an alerted value must stay normal before the rule re-arms
    /// (0: at once; default 60). Hysteresis against a value hovering at the threshold.
    #[serde(default = "d_rearm")]
    pub rearm_s: f64,
}

impl Rule {
    fn new(name: &str, vital: Vital, direction: Direction, t: f64, severity: Severity) -> Self {
        let (above, below) = match direction {
            Direction::Above => (Some(t), None),
            Direction::Below => (None, Some(t)),
        };
        Self {
            name: name.into(),
            vital,
            above,
            below,
            severity,
            sustain_s: 0.0,
            rearm_s: REARM_S,
        }
    }

    /// The rule's direction and threshold.
    pub fn threshold(&self) -> (Direction, f64) {
        match (self.above, self.below) {
            (Some(t), _) => (Direction::Above, t),
            (None, Some(t)) => (Direction::Below, t),
            (None, None) => (Direction::Above, f64::INFINITY),
        }
    }
}

/// A unit's changes to one rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitOverride {
    /// Another threshold (same direction).
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Another window.
    #[serde(default)]
    pub sustain_s: Option<f64>,
    /// `false` switches the rule off in the unit.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// The default rules' re-arm hysteresis: an alerted episode ends after a minute of normal
/// values, not at the first one (a heart rate hovering at 120 alerts once, not every few
/// seconds — alarm fatigue is a patient-safety problem of its own).
const REARM_S: f64 = 60.0;
fn d_rearm() -> f64 {
    REARM_S
}

/// Every alert waits this long in event time for samples that arrive out of order, so it is
/// the floor of event-to-alert latency: 5 s leaves half of the seeds' 10 s SLO for the rest.
fn d_lateness() -> f64 {
    5.0
}
fn d_freshness() -> f64 {
    900.0
}

/// Every rule, the units' overrides and the event-time settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    /// Seconds of event time a sample may lag the newest one seen and still be ordered in;
    /// later samples are dead-lettered as late.
    #[serde(default = "d_lateness")]
    pub lateness_s: f64,
    /// Seconds a vital stays current for the NEWS2 score.
    #[serde(default = "d_freshness")]
    pub freshness_s: f64,
    /// The rules.
    #[serde(rename = "rule", default)]
    pub rules: Vec<Rule>,
    /// Unit → rule name → override.
    #[serde(default)]
    pub units: BTreeMap<String, BTreeMap<String, UnitOverride>>,
}

impl Default for RuleSet {
    /// The seeds' thresholds: HR > 120 or < 50 (high beyond 130 / 45), systolic > 180 or < 90
    /// (high beyond 200 / 80), SpO2 < 90 critical; and NEWS2 ≥ 5 high, ≥ 7 critical (RCP's
    /// urgent and emergency response levels).
    fn default() -> Self {
        use Direction::{Above, Below};
        use Severity::{Critical, High, Warning};
        let rules = vec![
            Rule::new("hr_high", Vital::Hr, Above, 120.0, Warning),
            Rule::new("hr_very_high", Vital::Hr, Above, 130.0, High),
            Rule::new("hr_low", Vital::Hr, Below, 50.0, Warning),
            Rule::new("hr_very_low", Vital::Hr, Below, 45.0, High),
            Rule::new("sbp_high", Vital::Sbp, Above, 180.0, Warning),
            Rule::new("sbp_very_high", Vital::Sbp, Above, 200.0, High),
            Rule::new("sbp_low", Vital::Sbp, Below, 90.0, Warning),
            Rule::new("sbp_very_low", Vital::Sbp, Below, 80.0, High),
            Rule::new("spo2_low", Vital::Spo2, Below, 90.0, Critical),
            Rule::new("news2_urgent", Vital::News2, Above, 4.5, High),
            Rule::new("news2_emergency", Vital::News2, Above, 6.5, Critical),
        ];
        Self {
            lateness_s: d_lateness(),
            freshness_s: d_freshness(),
            rules,
            units: BTreeMap::new(),
        }
    }
}

/// Why a rule file was refused.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// Not TOML of this shape.
    #[error("vitals rules: {0}")]
    Parse(#[from] toml::de::Error),
    /// TOML of this shape that cannot work.
    #[error("vitals rules: {0}")]
    Invalid(String),
}

impl RuleSet {
    /// Reads rules from TOML (an empty file means the defaults).
    pub fn from_toml(text: &str) -> Result<Self, RulesError> {
        let mut set: RuleSet = toml::from_str(text)?;
        if set.rules.is_empty() {
            set.rules = RuleSet::default().rules;
        }
        set.validate()?;
        Ok(set)
    }

    fn validate(&self) -> Result<(), RulesError> {
        let bad = |m: String| Err(RulesError::Invalid(m));
        let mut names = std::collections::BTreeSet::new();
        for r in &self.rules {
            if !names.insert(&r.name) {
                return bad(format!("two rules are called {}", r.name));
            }
            if r.above.is_some() == r.below.is_some() {
                return bad(format!(
                    "rule {} needs exactly one of above / below",
                    r.name
                ));
            }
            if !(r.sustain_s.is_finite() && r.sustain_s >= 0.0) {
                return bad(format!("rule {}: sustain_s must be ≥ 0", r.name));
            }
            if !(r.rearm_s.is_finite() && r.rearm_s >= 0.0) {
                return bad(format!("rule {}: rearm_s must be ≥ 0", r.name));
            }
        }
        for (unit, overrides) in &self.units {
            if let Some(name) = overrides.keys().find(|n| !names.contains(n)) {
                return bad(format!("unit {unit} overrides an unknown rule {name}"));
            }
        }
        if !(self.lateness_s >= 0.0 && self.freshness_s > 0.0) {
            return bad("lateness_s must be ≥ 0 and freshness_s > 0".into());
        }
        Ok(())
    }

    /// Rule `i` as it applies in `unit`: (direction, threshold, sustain), or `None` if the unit
    /// switched it off.
    pub(crate) fn effective(&self, i: usize, unit: Option<&str>) -> Option<(Direction, f64, f64)> {
        let rule = &self.rules[i];
        let (direction, mut threshold) = rule.threshold();
        let mut sustain = rule.sustain_s;
        if let Some(o) = unit.and_then(|u| self.units.get(u)?.get(&rule.name)) {
            if o.enabled == Some(false) {
                return None;
            }
            threshold = o.threshold.unwrap_or(threshold);
            sustain = o.sustain_s.unwrap_or(sustain);
        }
        Some((direction, threshold, sustain))
    }
}

/// An alert for clinicians: once per episode of a rule being broken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The patient's pseudonym.
    pub patient: String,
    /// The rule.
    pub rule: String,
    /// Its severity.
    pub severity: Severity,
    /// The value that raised it.
    pub value: f64,
    /// When the value first became abnormal in this episode (event time).
    pub episode_start: DateTime<Utc>,
    /// The sample that raised it (event time).
    pub ts: DateTime<Utc>,
    /// The unit, when the sample named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

impl Alert {
    /// A stable name for this alert: one patient, rule and episode always give the same id.
    /// A consumer restarted mid-stream that raises the alert again is recognised by it (by the
    /// broker's de-duplication and by the checks a restart makes) instead of alerting twice.
    /// It is a digest, so the id itself does not spell out the patient.
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            self.patient.as_bytes(),
            self.rule.as_bytes(),
            self.episode_start.to_rfc3339().as_bytes(),
        ] {
            h.update(part);
            h.update([0]);
        }
        format!("alert-{}", &hex::encode(h.finalize())[..32])
    }
}

//! Data-quality rules (`rules/default.toml`, overridden by `<site>/rules.toml`).
//!
//! [`Rules::check`] runs on a fact before de-identification (a date shift could push a real
//! date over "today") and also normalises lab units to UCUM, converting values, so the range
//! check and the researchers' queries see one unit per lab. A broken rule returns the
//! [`Reject`] the quarantine records; nothing is silently fixed except unit spelling.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{Datelike, NaiveDate};
use regex::Regex;
use serde::Deserialize;

use crate::model::{DrugFact, EventFact, Fact, MeasurementFact, PersonFact, Reject, VisitFact};

const DEFAULT: &str = include_str!("../rules/default.toml");

#[derive(Debug, Clone, Deserialize)]
struct Spec {
    identifier: IdentifierSpec,
    birth: BirthSpec,
    visit: VisitSpec,
    drug: DrugSpec,
    #[serde(default)]
    dose: BTreeMap<String, f64>,
    #[serde(default)]
    units: BTreeMap<String, String>,
    #[serde(default)]
    labs: BTreeMap<String, Lab>,
}

#[derive(Debug, Clone, Deserialize)]
struct IdentifierSpec {
    pattern: String,
}

#[derive(Debug, Clone, Deserialize)]
struct BirthSpec {
    earliest: NaiveDate,
    max_age_years: i32,
}

#[derive(Debug, Clone, Deserialize)]
struct VisitSpec {
    max_days: i64,
}

#[derive(Debug, Clone, Deserialize)]
struct DrugSpec {
    max_quantity: f64,
    max_days_supply: i32,
}

/// Canonical unit, conversions and plausible range of one lab (by LOINC code).
#[derive(Debug, Clone, Deserialize)]
pub struct Lab {
    /// Canonical UCUM unit.
    pub unit: String,
    /// Lowest plausible value in `unit`.
    pub min: f64,
    /// Highest plausible value in `unit`.
    pub max: f64,
    /// Other units and how to convert from them.
    #[serde(default)]
    pub convert: BTreeMap<String, Conversion>,
}

/// `canonical = value * factor + offset`.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Conversion {
    /// Multiplier.
    pub factor: f64,
    /// Added after multiplying (temperatures).
    #[serde(default)]
    pub offset: f64,
}

/// The compiled rule set.
#[derive(Debug, Clone)]
pub struct Rules {
    spec: Spec,
    identifier: Regex,
    today: NaiveDate,
}

impl Rules {
    /// The shipped rules, judged against `today`.
    pub fn shipped(today: NaiveDate) -> Self {
        Self::from_toml(None, today).expect("shipped rules parse")
    }

    /// The shipped rules overridden by `<site>/rules.toml` when it exists.
    pub fn for_site(site: &Path, today: NaiveDate) -> Result<Self, String> {
        let path = site.join("rules.toml");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        Self::from_toml(text.as_deref(), today).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn from_toml(site: Option<&str>, today: NaiveDate) -> Result<Self, String> {
        let mut base: toml::Table = DEFAULT.parse().map_err(|e| format!("{e}"))?;
        if let Some(text) = site {
            let over: toml::Table = text.parse().map_err(|e| format!("{e}"))?;
            merge(&mut base, over);
        }
        let spec: Spec = toml::Value::Table(base)
            .try_into()
            .map_err(|e| format!("{e}"))?;
        let identifier =
            Regex::new(&spec.identifier.pattern).map_err(|e| format!("identifier.pattern: {e}"))?;
        Ok(Self {
            spec,
            identifier,
            today,
        })
    }

    /// The lab spec of a LOINC code.
    pub fn lab(&self, loinc: &str) -> Option<&Lab> {
        self.spec.labs.get(loinc)
    }

    /// Checks (and unit-normalises) one fact.
    pub fn check(&self, fact: &mut Fact) -> Result<(), Reject> {
        let patient = fact.patient();
        if !self.identifier.is_match(patient) {
            return Err(Reject::new(
                "identifier_format",
                format!(
                    "patient id of {} characters does not match identifier.pattern",
                    patient.chars().count()
                ),
            ));
        }
        match fact {
            Fact::Person(p) => self.person(p),
            Fact::Visit(v) => self.visit(v),
            Fact::Condition(e) | Fact::Procedure(e) => self.event(e),
            Fact::Drug(d) => self.drug(d),
            Fact::Measurement(m) => self.measurement(m),
            Fact::Note(n) => match n.date {
                Some(d) if d.date() > self.today => Err(future("note date", d.date())),
                _ => Ok(()),
            },
        }
    }

    fn person(&self, p: &PersonFact) -> Result<(), Reject> {
        if let Some(b) = p.birth {
            let b_spec = &self.spec.birth;
            if b > self.today {
                return Err(Reject::new(
                    "birth_date_range",
                    format!("birth date {b} is in the future"),
                ));
            }
            if b < b_spec.earliest {
                return Err(Reject::new(
                    "birth_date_range",
                    format!("birth date {b} is before {}", b_spec.earliest),
                ));
            }
            if self.today.year() - b.year() > b_spec.max_age_years {
                return Err(Reject::new(
                    "birth_date_range",
                    format!(
                        "birth date {b} makes the patient older than {}",
                        b_spec.max_age_years
                    ),
                ));
            }
            if let Some(d) = p.death.filter(|d| *d < b) {
                return Err(Reject::new(
                    "death_before_birth",
                    format!("death {d} before birth {b}"),
                ));
            }
        }
        match p.death {
            Some(d) if d > self.today => Err(future("death date", d)),
            _ => Ok(()),
        }
    }

    fn visit(&self, v: &VisitFact) -> Result<(), Reject> {
        let start = v
            .start
            .ok_or_else(|| Reject::new("missing_date", "visit has no start"))?;
        if start.date() > self.today {
            return Err(future("visit start", start.date()));
        }
        if let Some(end) = v.end {
            if end < start {
                return Err(Reject::new(
                    "visit_end_before_start",
                    format!("visit ends {end} before it starts {start}"),
                ));
            }
            let days = (end - start).num_days();
            if days > self.spec.visit.max_days {
                return Err(Reject::new(
                    "visit_length",
                    format!("visit of {days} days is longer than visit.max_days"),
                ));
            }
        }
        Ok(())
    }

    fn event(&self, e: &EventFact) -> Result<(), Reject> {
        let start = e.start.ok_or_else(|| {
            Reject::new(
                "missing_date",
                format!("{} has no date", e.code.source_value()),
            )
        })?;
        if start.date() > self.today {
            return Err(future("event date", start.date()));
        }
        match e.end {
            Some(end) if end < start => Err(Reject::new(
                "end_before_start",
                format!("ends {end} before it starts {start}"),
            )),
            _ => Ok(()),
        }
    }

    fn drug(&self, d: &DrugFact) -> Result<(), Reject> {
        self.event(&d.event)?;
        let spec = &self.spec.drug;
        if let Some(q) = d
            .quantity
            .filter(|q| !(0.0..=spec.max_quantity).contains(q))
        {
            return Err(Reject::new(
                "drug_quantity",
                format!("quantity {q} outside 0–{}", spec.max_quantity),
            ));
        }
        if let Some(s) = d
            .days_supply
            .filter(|s| !(0..=spec.max_days_supply).contains(s))
        {
            return Err(Reject::new(
                "drug_days_supply",
                format!("days supply {s} outside 0–{}", spec.max_days_supply),
            ));
        }
        if let (Some((dose, unit)), Some(max)) = (&d.dose, self.spec.dose.get(&d.event.code.code)) {
            let mg = match unit.as_str() {
                "mg" => Some(*dose),
                "g" => Some(dose * 1000.0),
                "ug" | "mcg" | "µg" => Some(dose / 1000.0),
                _ => None,
            };
            match mg {
                Some(mg) if mg <= 0.0 || mg > *max => {
                    return Err(Reject::new(
                        "drug_dose",
                        format!("single dose {dose} {unit} outside 0–{max} mg"),
                    ));
                }
                None => {
                    return Err(Reject::new(
                        "drug_dose",
                        format!("dose unit `{unit}` is not a mass unit"),
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn measurement(&self, m: &mut MeasurementFact) -> Result<(), Reject> {
        self.event(&m.event)?;
        if let Some(u) = &m.unit {
            let trimmed = u.trim();
            let normal = self
                .spec
                .units
                .get(trimmed)
                .map(String::as_str)
                .unwrap_or(trimmed);
            m.unit = Some(normal.to_string());
        }
        if m.event.code.vocabulary != "LOINC" {
            return Ok(());
        }
        let (Some(lab), Some(value)) = (self.lab(&m.event.code.code), m.value) else {
            return Ok(());
        };
        let unit = m.unit.clone().unwrap_or_default();
        if unit != lab.unit {
            let Some(c) = lab.convert.get(&unit) else {
                return Err(Reject::new(
                    "lab_unit",
                    format!(
                        "LOINC {} in `{unit}`: expected `{}`{}",
                        m.event.code.code,
                        lab.unit,
                        if lab.convert.is_empty() {
                            String::new()
                        } else {
                            format!(" or one of {:?}", lab.convert.keys().collect::<Vec<_>>())
                        }
                    ),
                ));
            };
            let convert = |v: f64| v * c.factor + c.offset;
            m.value = Some(convert(value));
            m.range = (m.range.0.map(convert), m.range.1.map(convert));
            m.unit = Some(lab.unit.clone());
        }
        let v = m.value.expect("value checked above");
        if !(lab.min..=lab.max).contains(&v) || !v.is_finite() {
            return Err(Reject::new(
                "lab_range",
                format!(
                    "LOINC {} value {v} {} outside plausible {}–{}",
                    m.event.code.code, lab.unit, lab.min, lab.max
                ),
            ));
        }
        Ok(())
    }
}

fn future(what: &str, d: NaiveDate) -> Reject {
    Reject::new("date_in_future", format!("{what} {d} is in the future"))
}

/// Overlays `over` on `base`, table by table.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests;

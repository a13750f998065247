//! CSV with a small TOML mapping: which column is which fact field, date formats, units.
//!
//! ```toml
//! table = "measurement"            # person, visit_occurrence, condition_occurrence,
//!                                  # procedure_occurrence, drug_exposure, measurement,
//!                                  # observation, note
//! date_formats = ["%Y-%m-%d", "%m/%d/%Y"]
//! delimiter = ","
//! [columns]                        # fact field = CSV column
//! patient = "patient_id"
//! start = "collected"
//! code = "loinc"
//! value = "result"
//! unit = "units"
//! [constants]                      # fact field = fixed value
//! vocabulary = "LOINC"
//! ```
//!
//! Fields: `patient`, `visit`, `start`, `end`, `code`, `vocabulary`, `display`, `value`, `unit`,
//! `range_low`, `range_high`, `quantity`, `days_supply`, `dose`, `dose_unit`, `text`, `title`;
//! for persons `gender`, `birth_date`, `race`, `ethnicity`, `zip`, `state`, `death_date`, `class`
//! for visits; and `phi` — a list of columns (names, phone numbers…) that are read only to scrub
//! notes and never stored.

use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveDateTime};
use serde::Deserialize;

use crate::model::{
    Code, DrugFact, EventFact, Fact, MeasurementFact, NoteFact, Origin, PersonFact, Phi, Record,
    Reject, VisitFact,
};

/// A CSV mapping spec.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// Target OMOP table.
    pub table: String,
    /// `chrono` formats tried in order for dates (date-times accept `%Y-%m-%dT%H:%M:%S` too).
    #[serde(default = "default_formats")]
    pub date_formats: Vec<String>,
    /// Field delimiter (default `,`).
    #[serde(default)]
    pub delimiter: Option<char>,
    /// Fact field → column.
    pub columns: BTreeMap<String, String>,
    /// Fact field → constant.
    #[serde(default)]
    pub constants: BTreeMap<String, String>,
    /// Columns holding identifiers to scrub from notes (never stored).
    #[serde(default)]
    pub phi: Vec<String>,
}

fn default_formats() -> Vec<String> {
    vec![
        "%Y-%m-%d".into(),
        "%Y%m%d".into(),
        "%m/%d/%Y".into(),
        "%d.%m.%Y".into(),
    ]
}

const TABLES: [&str; 8] = [
    "person",
    "visit_occurrence",
    "condition_occurrence",
    "procedure_occurrence",
    "drug_exposure",
    "measurement",
    "observation",
    "note",
];

impl Mapping {
    /// Parses and checks a spec.
    pub fn parse(text: &str) -> Result<Self, String> {
        let m: Mapping = toml::from_str(text).map_err(|e| format!("mapping: {e}"))?;
        if !TABLES.contains(&m.table.as_str()) {
            return Err(format!(
                "mapping: table `{}` is not one of {}",
                m.table,
                TABLES.join(", ")
            ));
        }
        if !m.columns.contains_key("patient") {
            return Err("mapping: [columns] needs `patient`".into());
        }
        Ok(m)
    }
}

/// Reads every row; a row that does not fit becomes a quarantined record.
pub fn parse(file: &str, bytes: &[u8], mapping: &Mapping) -> Vec<Record> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(mapping.delimiter.map(|c| c as u8).unwrap_or(b','))
        .flexible(true)
        .from_reader(bytes);
    let origin = |locator: String| Origin {
        file: file.into(),
        locator,
    };
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            return vec![Record::new(
                origin("header".into()),
                "csv",
                String::new(),
                Err(Reject::new("parse", e.to_string())),
            )];
        }
    };
    let index: BTreeMap<&str, usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| (h.trim(), i))
        .collect();
    for col in mapping.columns.values().chain(&mapping.phi) {
        if !index.contains_key(col.as_str()) {
            let reason = format!("mapped column `{col}` is not in the header");
            return vec![Record::new(
                origin("header".into()),
                "csv",
                headers.iter().collect::<Vec<_>>().join(","),
                Err(Reject::new("mapping", reason)),
            )];
        }
    }
    let mut out = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let locator = format!("row {}", i + 2);
        let record = match row {
            Err(e) => Record::new(
                origin(locator),
                "csv",
                String::new(),
                Err(Reject::new("parse", e.to_string())),
            ),
            Ok(row) => {
                let raw = row.iter().collect::<Vec<_>>().join(",");
                let get = |field: &str| -> Option<String> {
                    mapping
                        .columns
                        .get(field)
                        .and_then(|c| row.get(index[c.as_str()]))
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(str::to_string)
                        .or_else(|| mapping.constants.get(field).cloned())
                };
                let phi = Phi {
                    names: mapping
                        .phi
                        .iter()
                        .filter_map(|c| row.get(index[c.as_str()]))
                        .map(str::to_string)
                        .collect(),
                    ..Default::default()
                };
                let mut r = Record::new(
                    origin(locator),
                    format!("csv:{}", mapping.table),
                    raw,
                    fact(mapping, &get).map(|f| vec![f]),
                );
                if let Some(p) = get("patient") {
                    r.phi = Some((p, phi));
                }
                r
            }
        };
        out.push(record);
    }
    out
}

fn fact(m: &Mapping, get: &dyn Fn(&str) -> Option<String>) -> Result<Fact, Reject> {
    let patient =
        get("patient").ok_or_else(|| Reject::new("identifier_format", "patient id is empty"))?;
    let dt = |field: &str| -> Result<Option<NaiveDateTime>, Reject> {
        get(field)
            .map(|v| {
                datetime(&v, &m.date_formats).ok_or_else(|| {
                    Reject::new(
                        "date_format",
                        format!("{field} `{v}` matches none of {:?}", m.date_formats),
                    )
                })
            })
            .transpose()
    };
    let num = |field: &str| -> Result<Option<f64>, Reject> {
        get(field)
            .map(|v| {
                v.parse::<f64>().map_err(|_| {
                    Reject::new("value_format", format!("{field} `{v}` is not a number"))
                })
            })
            .transpose()
    };
    let code = || -> Result<Code, Reject> {
        Ok(Code {
            vocabulary: get("vocabulary").unwrap_or_else(|| "local".into()),
            code: get("code").ok_or_else(|| Reject::new("missing_code", "code is empty"))?,
            display: get("display"),
        })
    };
    let event = || -> Result<EventFact, Reject> {
        Ok(EventFact {
            patient: patient.clone(),
            visit: get("visit"),
            code: code()?,
            start: dt("start")?,
            end: dt("end")?,
        })
    };
    Ok(match m.table.as_str() {
        "person" => Fact::Person(PersonFact {
            patient: patient.clone(),
            gender: get("gender"),
            birth: dt("birth_date")?.map(|d| d.date()),
            race: get("race"),
            ethnicity: get("ethnicity"),
            zip: get("zip"),
            state: get("state"),
            death: dt("death_date")?.map(|d| d.date()),
            age_capped: false,
        }),
        "visit_occurrence" => Fact::Visit(VisitFact {
            patient: patient.clone(),
            visit: get("visit")
                .ok_or_else(|| Reject::new("identifier_format", "visit id is empty"))?,
            class: get("class"),
            start: dt("start")?,
            end: dt("end")?,
        }),
        "condition_occurrence" => Fact::Condition(event()?),
        "procedure_occurrence" => Fact::Procedure(event()?),
        "drug_exposure" => Fact::Drug(DrugFact {
            event: event()?,
            quantity: num("quantity")?,
            dose: num("dose")?.map(|d| (d, get("dose_unit").unwrap_or_default())),
            days_supply: num("days_supply")?.map(|d| d.round() as i32),
        }),
        "note" => Fact::Note(NoteFact {
            patient: patient.clone(),
            visit: get("visit"),
            date: dt("start")?,
            title: get("title"),
            text: get("text").unwrap_or_default(),
        }),
        table => Fact::Measurement(MeasurementFact {
            event: event()?,
            value: num("value")?,
            unit: get("unit"),
            value_code: None,
            range: (num("range_low")?, num("range_high")?),
            is_observation: table == "observation",
        }),
    })
}

fn datetime(v: &str, formats: &[String]) -> Option<NaiveDateTime> {
    for f in formats {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, f) {
            return Some(t);
        }
        if let Ok(d) = NaiveDate::parse_from_str(v, f) {
            return d.and_hms_opt(0, 0, 0);
        }
    }
    NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "table = \"measurement\"\n[columns]\npatient = \"id\"\nstart = \"when\"\ncode = \"loinc\"\nvalue = \"result\"\nunit = \"unit\"\n[constants]\nvocabulary = \"LOINC\"\n";

    #[test]
    fn rows_become_facts_and_bad_rows_are_records_with_reasons() {
        let m = Mapping::parse(SPEC).unwrap();
        let csv = "id,when,loinc,result,unit\np1,2020-01-02,2345-7,5.5,mmol/L\np2,02/30/2020,2345-7,1,mg/dL\np3,2020-01-02,2345-7,lots,mg/dL\n";
        let r = parse("f.csv", csv.as_bytes(), &m);
        assert_eq!(r.len(), 3);
        let Fact::Measurement(f) = &r[0].parsed.as_ref().unwrap()[0] else {
            panic!()
        };
        assert_eq!(
            (f.value, f.event.code.source_value().as_str()),
            (Some(5.5), "LOINC:2345-7")
        );
        assert_eq!(r[1].parsed.as_ref().unwrap_err().rule, "date_format");
        assert_eq!(r[2].parsed.as_ref().unwrap_err().rule, "value_format");
        assert_eq!(r[2].origin.locator, "row 4");
    }

    #[test]
    fn mapping_errors_are_clear() {
        assert!(
            Mapping::parse("table = \"nope\"\n[columns]\npatient = \"x\"")
                .unwrap_err()
                .contains("not one of")
        );
        let m = Mapping::parse(SPEC).unwrap();
        let r = parse("f.csv", b"id,when\n", &m);
        assert!(
            r[0].parsed
                .as_ref()
                .unwrap_err()
                .reason
                .contains("not in the header")
        );
    }
}

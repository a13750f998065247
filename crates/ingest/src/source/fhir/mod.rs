//! FHIR R4 JSON: Bundles (as Synthea writes them) and Bulk Data NDJSON (one resource per line).
//!
//! Serde models of just the elements the OMOP mapping reads — every other element is ignored,
//! so a profile's extra extensions never fail a record, while a wrong type in an element we do
//! read (a string birth date that is a number, a reference that is an array) quarantines that one
//! resource with serde's message. No maintained FHIR model crate covers R4 without pulling
//! thousands of generated types into the build; these few structs are what the mapping needs.

use chrono::{NaiveDate, NaiveDateTime};
use serde::Deserialize;
use serde_json::Value;

mod clinical;

use clinical::{
    Condition, Encounter, Immunization, MedicationRequest, Observation, Procedure, condition,
    encounter, immunization, medication_request, observation, procedure,
};

use crate::model::{
    Code, DrugFact, EventFact, Fact, MeasurementFact, Origin, PersonFact, Phi, Record, Reject,
    VisitFact,
};

/// Parses a Bundle (or a single resource) from one JSON document.
pub fn parse_bundle(file: &str, bytes: &[u8]) -> Vec<Record> {
    let whole = |rule: &str, reason: String| {
        vec![Record::new(
            Origin {
                file: file.into(),
                locator: "file".into(),
            },
            "Bundle",
            String::from_utf8_lossy(&bytes[..bytes.len().min(64 * 1024)]).into_owned(),
            Err(Reject::new(rule, reason)),
        )]
    };
    let Ok(text) = std::str::from_utf8(bytes) else {
        return whole("encoding", "not UTF-8 (FHIR JSON must be UTF-8)".into());
    };
    let doc: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return whole("parse", format!("malformed JSON: {e}")),
    };
    match doc.get("resourceType").and_then(Value::as_str) {
        Some("Bundle") => {
            let entries = doc.get("entry").and_then(Value::as_array);
            entries
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(i, e)| {
                    let origin = Origin {
                        file: file.into(),
                        locator: format!("entry {i}"),
                    };
                    match e.get("resource") {
                        Some(r) => parse_resource(origin, r),
                        None => unreadable(origin, e, "entry has no resource"),
                    }
                })
                .collect()
        }
        Some(_) => {
            let origin = Origin {
                file: file.into(),
                locator: "resource".into(),
            };
            vec![parse_resource(origin, &doc)]
        }
        None => whole("parse", "no resourceType: not a FHIR resource".into()),
    }
}

/// Parses Bulk Data NDJSON: every non-blank line is one resource.
pub fn parse_ndjson(file: &str, bytes: &[u8]) -> Vec<Record> {
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
        .map(|(i, line)| {
            let origin = Origin {
                file: file.into(),
                locator: format!("line {}", i + 1),
            };
            let raw = String::from_utf8_lossy(line).into_owned();
            let fail = |rule: &str, reason: String| {
                Record::new(
                    origin.clone(),
                    "unknown",
                    raw.clone(),
                    Err(Reject::new(rule, reason)),
                )
            };
            match std::str::from_utf8(line) {
                Err(_) => fail("encoding", "not UTF-8".into()),
                Ok(text) => match serde_json::from_str::<Value>(text) {
                    Ok(v) => parse_resource(origin, &v),
                    Err(e) => fail("parse", format!("malformed JSON: {e}")),
                },
            }
        })
        .collect()
}

fn unreadable(origin: Origin, v: &Value, reason: &str) -> Record {
    Record::new(
        origin,
        "unknown",
        v.to_string(),
        Err(Reject::new("parse", reason)),
    )
}

/// One resource → the facts it holds.
pub fn parse_resource(origin: Origin, v: &Value) -> Record {
    let kind = v
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string();
    let id = v.get("id").and_then(Value::as_str).map(str::to_string);
    let mut phi = None;
    let parsed = match kind.as_str() {
        "Patient" => read::<Patient>(v).and_then(patient).map(|(facts, p)| {
            phi = p;
            facts
        }),
        "Encounter" => read::<Encounter>(v).and_then(encounter),
        "Condition" => read::<Condition>(v).and_then(condition),
        "Observation" => read::<Observation>(v).and_then(observation),
        "MedicationRequest" => read::<MedicationRequest>(v).and_then(medication_request),
        "Procedure" => read::<Procedure>(v).and_then(procedure),
        "Immunization" => read::<Immunization>(v).and_then(immunization),
        "unknown" => Err(Reject::new("parse", "no resourceType")),
        other => Err(Reject::new(
            "unsupported_type",
            format!("{other} is not mapped to OMOP (kept in bronze)"),
        )),
    };
    let mut record = Record::new(origin, kind.clone(), v.to_string(), parsed);
    record.source_id = id.map(|id| format!("{kind}/{id}"));
    record.phi = phi;
    record
}

fn read<T: for<'de> Deserialize<'de>>(v: &Value) -> Result<T, Reject> {
    T::deserialize(v).map_err(|e| Reject::new("parse", format!("invalid resource: {e}")))
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Reference {
    reference: Option<String>,
}

impl Reference {
    /// `urn:uuid:X`, `Patient/X` or `X` → `X`.
    fn id(&self) -> Option<String> {
        let r = self.reference.as_deref()?;
        let id = r
            .strip_prefix("urn:uuid:")
            .or_else(|| r.rsplit_once('/').map(|(_, id)| id))
            .unwrap_or(r);
        (!id.is_empty()).then(|| id.to_string())
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Coding {
    system: Option<String>,
    code: Option<String>,
    display: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CodeableConcept {
    coding: Vec<Coding>,
    text: Option<String>,
}

impl CodeableConcept {
    /// The first coding in a vocabulary OMOP knows, else the first coding.
    fn code(&self) -> Option<Code> {
        let known = self
            .coding
            .iter()
            .find(|c| vocabulary(c.system.as_deref()).is_some());
        let c = known.or(self.coding.first())?;
        let code = c.code.clone()?;
        Some(Code {
            vocabulary: vocabulary(c.system.as_deref())
                .map(str::to_string)
                .unwrap_or_else(|| c.system.clone().unwrap_or_default()),
            code,
            display: c.display.clone().or_else(|| self.text.clone()),
        })
    }
}

/// FHIR code system URL → OMOP vocabulary id.
fn vocabulary(system: Option<&str>) -> Option<&'static str> {
    Some(match system? {
        "http://snomed.info/sct" => "SNOMED",
        "http://loinc.org" => "LOINC",
        "http://www.nlm.nih.gov/research/umls/rxnorm" => "RxNorm",
        "http://hl7.org/fhir/sid/icd-10-cm" => "ICD10CM",
        "http://hl7.org/fhir/sid/icd-10" => "ICD10",
        "http://hl7.org/fhir/sid/cvx" => "CVX",
        "http://unitsofmeasure.org" => "UCUM",
        _ => return None,
    })
}

fn required_code(c: &CodeableConcept, element: &str) -> Result<Code, Reject> {
    c.code()
        .ok_or_else(|| Reject::new("missing_code", format!("{element} has no coding")))
}

fn subject(r: &Reference) -> Result<String, Reject> {
    r.id()
        .ok_or_else(|| Reject::new("missing_patient", "no subject/patient reference"))
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct HumanName {
    family: Option<String>,
    given: Vec<String>,
    prefix: Vec<String>,
    text: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Address {
    line: Vec<String>,
    city: Option<String>,
    state: Option<String>,
    postal_code: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ContactPoint {
    value: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Identifier {
    value: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Extension {
    url: String,
    extension: Vec<Extension>,
    value_string: Option<String>,
    value_coding: Option<Coding>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Patient {
    id: Option<String>,
    gender: Option<String>,
    birth_date: Option<String>,
    deceased_date_time: Option<String>,
    name: Vec<HumanName>,
    telecom: Vec<ContactPoint>,
    identifier: Vec<Identifier>,
    address: Vec<Address>,
    extension: Vec<Extension>,
}

/// The US Core race/ethnicity extension's category (or text).
fn us_core(extensions: &[Extension], kind: &str) -> Option<String> {
    let url = format!("http://hl7.org/fhir/us/core/StructureDefinition/us-core-{kind}");
    let e = extensions.iter().find(|e| e.url == url)?;
    let sub = |u: &str| e.extension.iter().find(|x| x.url == u);
    sub("ombCategory")
        .and_then(|x| x.value_coding.as_ref())
        .and_then(|c| c.display.clone().or_else(|| c.code.clone()))
        .or_else(|| sub("text").and_then(|x| x.value_string.clone()))
}

/// The facts of a patient, and their identifiers (kept apart from the facts).
type WithPhi = (Vec<Fact>, Option<(String, Phi)>);

fn patient(p: Patient) -> Result<WithPhi, Reject> {
    let id =
        p.id.ok_or_else(|| Reject::new("identifier_format", "Patient has no id"))?;
    let mut phi = Phi::default();
    for n in &p.name {
        phi.names.extend(n.given.iter().cloned());
        phi.names.extend(n.family.iter().cloned());
        phi.names.extend(n.prefix.iter().cloned());
        phi.names.extend(n.text.iter().cloned());
    }
    phi.telecom = p.telecom.iter().filter_map(|t| t.value.clone()).collect();
    phi.identifiers = p
        .identifier
        .iter()
        .filter_map(|i| i.value.clone())
        .collect();
    for a in &p.address {
        phi.address.extend(a.line.iter().cloned());
        phi.address.extend(a.city.iter().cloned());
    }
    // Mother's maiden name and birthplace are identifying too.
    for e in &p.extension {
        phi.names.extend(e.value_string.iter().cloned());
    }
    let home = p.address.first();
    let person = PersonFact {
        patient: id.clone(),
        gender: p.gender,
        birth: p.birth_date.as_deref().map(date).transpose()?,
        race: us_core(&p.extension, "race"),
        ethnicity: us_core(&p.extension, "ethnicity"),
        zip: home.and_then(|a| a.postal_code.clone()),
        state: home.and_then(|a| a.state.clone()),
        death: p
            .deceased_date_time
            .as_deref()
            .map(datetime)
            .transpose()?
            .map(|d| d.date()),
        age_capped: false,
    };
    Ok((vec![Fact::Person(person)], Some((id, phi))))
}

/// FHIR `date` (`2009`, `2009-04`, `2009-04-29`); partial dates take the first day.
fn date(s: &str) -> Result<NaiveDate, Reject> {
    let bad = || Reject::new("date_format", format!("`{s}` is not a FHIR date"));
    let mut parts = s.splitn(3, '-');
    let year: i32 = parts.next().and_then(|y| y.parse().ok()).ok_or_else(bad)?;
    let month: u32 = parts
        .next()
        .map(str::parse)
        .transpose()
        .map_err(|_| bad())?
        .unwrap_or(1);
    let day: u32 = parts
        .next()
        .map(|d| d.get(..2).unwrap_or(d).parse())
        .transpose()
        .map_err(|_| bad())?
        .unwrap_or(1);
    NaiveDate::from_ymd_opt(year, month, day).ok_or_else(bad)
}

/// FHIR `dateTime`: the local date and time as written (the offset is dropped: OMOP dates are
/// the date where the care happened).
fn datetime(s: &str) -> Result<NaiveDateTime, Reject> {
    match s.split_once('T') {
        None => Ok(date(s)?.and_hms_opt(0, 0, 0).expect("midnight")),
        Some((d, t)) => {
            let time = t.get(..8).unwrap_or(t);
            let time = chrono::NaiveTime::parse_from_str(time, "%H:%M:%S")
                .map_err(|_| Reject::new("date_format", format!("`{s}` is not a FHIR dateTime")))?;
            Ok(date(d)?.and_time(time))
        }
    }
}

fn opt_datetime(s: &Option<String>) -> Result<Option<NaiveDateTime>, Reject> {
    s.as_deref().map(datetime).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_partial_and_with_offsets() {
        assert_eq!(
            date("2009-04").unwrap(),
            NaiveDate::from_ymd_opt(2009, 4, 1).unwrap()
        );
        let t = datetime("2011-04-06T21:20:23-07:00").unwrap();
        assert_eq!(t.to_string(), "2011-04-06 21:20:23");
        assert!(date("2009-13-01").is_err());
        assert!(datetime("yesterday").is_err());
    }

    #[test]
    fn bad_input_becomes_quarantined_records_not_errors() {
        let r = parse_bundle("f", b"{\"resourceType\": \"Bundle\", \"entry\": [");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].parsed.as_ref().unwrap_err().rule, "parse");
        let r = parse_bundle("f", b"\xff\xfe{}");
        assert_eq!(r[0].parsed.as_ref().unwrap_err().rule, "encoding");
        let r = parse_ndjson(
            "f",
            b"{\"resourceType\":\"Patient\",\"id\":\"a\",\"birthDate\":19620320}\n\n{oops\n",
        );
        assert_eq!(r.len(), 2);
        assert!(r[0].parsed.as_ref().unwrap_err().reason.contains("invalid"));
        assert_eq!(r[1].origin.locator, "line 3");
    }

    #[test]
    fn blood_pressure_panel_becomes_two_measurements() {
        let v: Value = serde_json::from_str(r#"{"resourceType":"Observation","id":"o",
          "code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},
          "subject":{"reference":"Patient/p"},"effectiveDateTime":"2020-01-01",
          "component":[
            {"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},"valueQuantity":{"value":80,"code":"mm[Hg]"}},
            {"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":120,"code":"mm[Hg]"}}]}"#).unwrap();
        let r = parse_resource(
            Origin {
                file: "f".into(),
                locator: "x".into(),
            },
            &v,
        );
        let facts = r.parsed.unwrap();
        assert_eq!(facts.len(), 2);
        let Fact::Measurement(m) = &facts[1] else {
            panic!()
        };
        assert_eq!(m.event.code.source_value(), "LOINC:8480-6");
        assert_eq!((m.value, m.unit.as_deref()), (Some(120.0), Some("mm[Hg]")));
        assert_eq!(m.event.patient, "p");
    }
}

//! HL7 v2.x messages → facts: ADT (A01 admit, A03 discharge, A04 register, A08 update) and
//! ORU^R01 results. Also the MLLP listener ([`mllp`]) that receives them live.
//!
//! ADT messages about the same patient or visit are *mentions* merged in order (an A03 brings the
//! discharge time of the visit an A01 opened; an A08 corrects demographics), so their facts carry
//! the source ids as merge keys. Z-segments and segments not read here are skipped.

pub mod mllp;
pub mod parse;

use chrono::{NaiveDate, NaiveDateTime};

use crate::model::{
    Code, EventFact, Fact, MeasurementFact, NoteFact, Origin, PersonFact, Phi, Record, Reject,
    VisitFact,
};
pub use parse::{Message, ParseError};
use parse::{Segment, component_of};

/// Parses a file (or stream buffer) of HL7 v2 messages.
pub fn parse_file(file: &str, bytes: &[u8]) -> Vec<Record> {
    let text = decode(bytes);
    parse::split_messages(&text)
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            parse_message(
                Origin {
                    file: file.into(),
                    locator: format!("message {}", i + 1),
                },
                m,
            )
        })
        .collect()
}

/// HL7 v2's default character set is ASCII/ISO-8859-1; files that are not UTF-8 are read as
/// Latin-1 rather than refused (every byte is a valid Latin-1 character).
pub fn decode(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.iter().map(|&b| b as char).collect(),
    }
}

/// One message → a record of facts.
pub fn parse_message(origin: Origin, text: &str) -> Record {
    let raw = text.to_string();
    let message = match Message::parse(text) {
        Ok(m) => m,
        Err(e) => return Record::new(origin, "HL7", raw, Err(Reject::new("parse", e.to_string()))),
    };
    let (kind, trigger) = message.kind();
    let label = format!("{kind}^{trigger}");
    let mut record = Record::new(origin, label.clone(), raw, Ok(Vec::new()));
    // A retransmission repeats sender, control id and content; samples and test feeds reuse
    // control ids for different messages, which are not duplicates.
    record.source_id = Some(message.control_id())
        .filter(|c| !c.is_empty())
        .map(|control| {
            let msh = message.segment("MSH");
            let sender = msh
                .map(|m| format!("{}|{}", m.raw(3), m.raw(4)))
                .unwrap_or_default();
            let digest = hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes())[..8]);
            format!("HL7/{sender}/{control}/{digest}")
        });
    record.parsed = match (kind.as_str(), trigger.as_str()) {
        ("ADT", "A01" | "A03" | "A04" | "A08") => adt(&message, &mut record.phi),
        ("ORU", "R01") => oru(&message, &mut record.phi, &mut record.failed),
        _ => Err(Reject::new(
            "unsupported_type",
            format!("{label} is not mapped (ADT A01/A03/A04/A08 and ORU^R01 are)"),
        )),
    };
    record
}

type PhiSlot = Option<(String, Phi)>;

fn adt(m: &Message, phi: &mut PhiSlot) -> Result<Vec<Fact>, Reject> {
    let person = person(m, phi)?;
    let mut facts = vec![];
    if let Some(pv1) = m.segment("PV1") {
        let patient = person.patient.clone();
        facts.push(Fact::Visit(visit(m, pv1, patient)?));
    }
    facts.insert(0, Fact::Person(person));
    Ok(facts)
}

fn person(m: &Message, slot: &mut PhiSlot) -> Result<PersonFact, Reject> {
    let pid = m
        .segment("PID")
        .ok_or_else(|| Reject::new("parse", "no PID segment"))?;
    let d = pid.delimiters();
    // PID-3: the repetition typed MR (medical record number), else the first; PID-2 in old feeds.
    let patient = pid
        .repetitions(3)
        .find(|r| component_of(r, 5, d) == "MR")
        .or_else(|| pid.repetitions(3).next())
        .map(|r| component_of(r, 1, d))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| pid.value(2));
    if patient.is_empty() {
        return Err(Reject::new(
            "identifier_format",
            "PID-3 (patient id) is empty",
        ));
    }
    let mut phi = Phi::default();
    for n in [5, 6, 9] {
        for r in pid.repetitions(n) {
            for c in 1..=6 {
                let part = component_of(r, c, d);
                if !part.is_empty() {
                    phi.names.push(part);
                }
            }
        }
    }
    for n in [13, 14] {
        phi.telecom
            .extend(pid.repetitions(n).map(|r| component_of(r, 1, d)));
    }
    phi.identifiers
        .extend(pid.repetitions(3).map(|r| component_of(r, 1, d)));
    phi.identifiers
        .extend([pid.value(18), pid.value(19), pid.value(20)]);
    for r in pid.repetitions(11) {
        phi.address.extend([1, 2, 3].map(|c| component_of(r, c, d)));
    }
    // Next of kin and guarantors name other people: their names go to the scrubber too.
    for s in m
        .segments()
        .iter()
        .filter(|s| matches!(s.id(), "NK1" | "GT1" | "IN1"))
    {
        for f in 2..=5 {
            for r in s.repetitions(f) {
                phi.names.extend((1..=3).map(|c| component_of(r, c, d)));
            }
        }
    }
    phi.names.retain(|s| !s.is_empty());
    phi.telecom.retain(|s| !s.is_empty());
    phi.identifiers.retain(|s| !s.is_empty());
    phi.address.retain(|s| !s.is_empty());
    let died = pid.value(30) == "Y" || !pid.value(29).is_empty();
    let nonempty = |s: String| (!s.is_empty()).then_some(s);
    *slot = Some((patient.clone(), phi));
    Ok(PersonFact {
        patient,
        gender: nonempty(pid.value(8)),
        birth: opt(&pid.value(7), "PID-7")?.map(|t| t.date()),
        race: nonempty(pid.component(10, 2)).or_else(|| nonempty(pid.value(10))),
        ethnicity: nonempty(pid.component(22, 2)).or_else(|| nonempty(pid.value(22))),
        zip: nonempty(pid.component(11, 5)),
        state: nonempty(pid.component(11, 4)),
        death: if died {
            opt(&pid.value(29), "PID-29")?
                .map(|t| t.date())
                .or_else(|| message_time(m).map(|t| t.date()))
        } else {
            None
        },
        age_capped: false,
    })
}

fn visit(m: &Message, pv1: &Segment, patient: String) -> Result<VisitFact, Reject> {
    let start = opt(&pv1.value(44), "PV1-44")?
        .or_else(|| m.segment("EVN").and_then(|e| datetime(&e.value(2))))
        .or_else(|| message_time(m));
    // No visit number: the admission (patient + start) identifies the visit.
    let number = pv1.value(19);
    let visit = if number.is_empty() {
        format!(
            "{patient}@{}",
            start.map(|t| t.to_string()).unwrap_or_default()
        )
    } else {
        number
    };
    Ok(VisitFact {
        patient,
        visit,
        class: Some(pv1.value(2)).filter(|c| !c.is_empty()),
        start,
        end: opt(&pv1.value(45), "PV1-45")?,
    })
}

fn oru(
    m: &Message,
    phi: &mut PhiSlot,
    failed: &mut Vec<(&'static str, Reject)>,
) -> Result<Vec<Fact>, Reject> {
    let person = person(m, phi)?;
    let patient = person.patient.clone();
    let mut facts = vec![Fact::Person(person)];
    let mut visit = None;
    if let Some(pv1) = m.segment("PV1") {
        let v = self::visit(m, pv1, patient.clone())?;
        visit = Some(v.visit.clone());
        facts.push(Fact::Visit(v));
    }
    let mut observed = message_time(m);
    for s in m.segments() {
        match s.id() {
            "OBR" => {
                if let Ok(Some(t)) = opt(&s.value(7), "OBR-7") {
                    observed = Some(t);
                }
            }
            "OBX" => match obx(s, &patient, &visit, observed) {
                Ok(f) => facts.push(f),
                Err(r) => failed.push(("measurement", r)),
            },
            "NTE" => {
                let text = s.repetitions(3).map(|r| component_of(r, 1, s.delimiters()));
                let text = text.collect::<Vec<_>>().join("\n");
                if !text.trim().is_empty() {
                    facts.push(Fact::Note(NoteFact {
                        patient: patient.clone(),
                        visit: visit.clone(),
                        date: observed,
                        title: Some("NTE".into()),
                        text,
                    }));
                }
            }
            _ => {}
        }
    }
    Ok(facts)
}

fn obx(
    s: &Segment,
    patient: &str,
    visit: &Option<String>,
    observed: Option<NaiveDateTime>,
) -> Result<Fact, Reject> {
    let code_value = s.value(3);
    let code = Code {
        vocabulary: coding_system(&s.component(3, 3), &code_value),
        code: code_value,
        display: Some(s.component(3, 2)).filter(|d| !d.is_empty()),
    };
    if code.code.is_empty() {
        return Err(Reject::new("missing_code", "OBX-3 has no code"));
    }
    let when = opt(&s.value(14), "OBX-14")?.or(observed);
    let event = EventFact {
        patient: patient.to_string(),
        visit: visit.clone(),
        code,
        start: when,
        end: None,
    };
    let value_type = s.value(2);
    let first = s.repetitions(5).next().unwrap_or("");
    let d = s.delimiters();
    let (value, value_code) = match value_type.as_str() {
        "NM" => {
            let v = component_of(first, 1, d);
            let n = v.trim().parse::<f64>().map_err(|_| {
                Reject::new(
                    "value_format",
                    format!("OBX-5 `{v}` is not a number (type NM)"),
                )
            })?;
            (Some(n), None)
        }
        // Structured numeric: comparator^num1^separator^num2; `^182` is plain 182.
        "SN" => {
            let v = component_of(first, 2, d);
            let n = v.trim().parse::<f64>().map_err(|_| {
                Reject::new(
                    "value_format",
                    format!("OBX-5 `{first}` is not a structured numeric"),
                )
            })?;
            (Some(n), None)
        }
        "CE" | "CWE" | "CNE" => (
            None,
            Some(Code {
                vocabulary: component_of(first, 3, d),
                code: component_of(first, 1, d),
                display: Some(component_of(first, 2, d)),
            }),
        ),
        "TX" | "FT" | "ST" => {
            let text: Vec<String> = s.repetitions(5).map(|r| component_of(r, 1, d)).collect();
            return Ok(Fact::Note(NoteFact {
                patient: patient.to_string(),
                visit: visit.clone(),
                date: when,
                title: event.code.display.clone(),
                text: text.join("\n"),
            }));
        }
        other => {
            return Err(Reject::new(
                "unsupported_type",
                format!("OBX value type `{other}` is not mapped"),
            ));
        }
    };
    Ok(Fact::Measurement(MeasurementFact {
        event,
        value,
        unit: Some(s.value(6)).filter(|u| !u.is_empty()),
        value_code,
        range: range(&s.value(7)),
        is_observation: false,
    }))
}

/// HL7 table 0396 coding system → OMOP vocabulary id. Senders often leave CE.3 empty or put
/// text there; a code that passes LOINC's mod-10 check digit is then taken as LOINC.
fn coding_system(system: &str, code: &str) -> String {
    match system.to_ascii_uppercase().as_str() {
        "LN" | "LOINC" => "LOINC".into(),
        "SCT" | "SNM" | "SNM3" | "SNOMED" | "SNOMEDCT" => "SNOMED".into(),
        "I10" | "I10C" | "ICD10CM" => "ICD10CM".into(),
        "RXNORM" | "RXN" => "RxNorm".into(),
        "CVX" => "CVX".into(),
        "UCUM" => "UCUM".into(),
        _ if is_loinc(code) => "LOINC".into(),
        s if s.is_empty() || s.contains(char::is_whitespace) || s.len() > 20 => "local".into(),
        _ => system.to_string(),
    }
}

/// LOINC codes are `digits-check` with a mod-10 (Luhn) check digit.
fn is_loinc(code: &str) -> bool {
    let Some((body, check)) = code.split_once('-') else {
        return false;
    };
    if body.is_empty() || body.len() > 7 || !body.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let Ok(check) = check.parse::<u32>() else {
        return false;
    };
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = (b - b'0') as u32;
            if i % 2 == 0 {
                let x = d * 2;
                x / 10 + x % 10
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10 == check
}

/// `70-105`, `70_105` (as some labs write it), `<200`, `>60`.
fn range(s: &str) -> (Option<f64>, Option<f64>) {
    let s = s.trim();
    if let Some(hi) = s.strip_prefix('<') {
        return (None, hi.trim_start_matches('=').trim().parse().ok());
    }
    if let Some(lo) = s.strip_prefix('>') {
        return (lo.trim_start_matches('=').trim().parse().ok(), None);
    }
    match s.split_once(['-', '_']) {
        Some((a, b)) => (a.trim().parse().ok(), b.trim().parse().ok()),
        None => (None, None),
    }
}

fn message_time(m: &Message) -> Option<NaiveDateTime> {
    m.segment("MSH").and_then(|s| datetime(&s.value(7)))
}

fn opt(s: &str, field: &str) -> Result<Option<NaiveDateTime>, Reject> {
    if s.trim().is_empty() {
        return Ok(None);
    }
    datetime(s).map(Some).ok_or_else(|| {
        Reject::new(
            "date_format",
            format!("{field} `{s}` is not an HL7 date/time"),
        )
    })
}

/// HL7 DTM: `YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]`; the offset is dropped (local time kept).
/// `None` when it is not one.
pub fn datetime(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    let s = s.split(['+', '-']).next().unwrap_or(s);
    let s = s.split('.').next().unwrap_or(s);
    if s.len() < 4 || !s.bytes().all(|b| b.is_ascii_digit()) || !s.len().is_multiple_of(2) {
        return None;
    }
    let num = |a: usize, b: usize, default: u32| -> u32 {
        s.get(a..b).and_then(|x| x.parse().ok()).unwrap_or(default)
    };
    let year: i32 = s[..4].parse().ok()?;
    NaiveDate::from_ymd_opt(year, num(4, 6, 1), num(6, 8, 1))
        .and_then(|d| d.and_hms_opt(num(8, 10, 0), num(10, 12, 0), num(12, 14, 0)))
}

#[cfg(test)]
mod tests;

//! What the parsers produce: clinical *facts* in the source's terms.
//!
//! Facts have no field a name, street address, phone number, e-mail or SSN could go into: parsers
//! hand those to [`Record::phi`], which de-identification reads only to scrub free-text notes of
//! the patient's own names and numbers, and which is dropped with the record. So Safe Harbor
//! fields cannot reach silver or gold by construction, not by a filter someone might forget.
//! What facts do hold that is identifying — source ids, full dates, full ZIP codes — is replaced
//! by [`crate::deid`] (keyed pseudonyms, per-patient date shifts, 3-digit ZIPs) before silver.

use chrono::{NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};

/// Where an input record came from: the bronze file and the record's place in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Name of the bronze object (content address plus original file name).
    pub file: String,
    /// `entry 12`, `line 4`, `message 3`, `row 7`.
    pub locator: String,
}

/// A code in a source vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Code {
    /// Vocabulary id as OMOP names it: `SNOMED`, `LOINC`, `RxNorm`, `ICD10CM`, `CVX`, or the raw
    /// system for anything else.
    pub vocabulary: String,
    /// The code itself.
    pub code: String,
    /// Display text, if the source gave one.
    pub display: Option<String>,
}

impl Code {
    /// `LOINC:8480-6`, the form `*_source_value` columns carry.
    pub fn source_value(&self) -> String {
        format!("{}:{}", self.vocabulary, self.code)
    }
}

/// Identifying fields of a patient, kept beside (never inside) the facts. Read only to scrub notes
/// (the patient's own names join the detector's dictionary); dropped before silver.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Phi {
    /// Every name part (given, family, prefixes), as written.
    pub names: Vec<String>,
    /// Phone and fax numbers, e-mail addresses.
    pub telecom: Vec<String>,
    /// SSN, MRN, driver's licence and other identifiers.
    pub identifiers: Vec<String>,
    /// Street lines and city.
    pub address: Vec<String>,
}

/// A patient as a source describes them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PersonFact {
    /// The source's patient id (FHIR id, MRN from PID-3, CSV id column).
    pub patient: String,
    /// Administrative gender as written (`female`, `F`, …).
    pub gender: Option<String>,
    /// Date of birth.
    pub birth: Option<NaiveDate>,
    /// Race as written (text or code).
    pub race: Option<String>,
    /// Ethnicity as written.
    pub ethnicity: Option<String>,
    /// Postal code, full.
    pub zip: Option<String>,
    /// State or province.
    pub state: Option<String>,
    /// Date of death, when the source says the patient died.
    pub death: Option<NaiveDate>,
    /// Set by de-identification when the patient is over 89: only the year of birth (the one
    /// that makes them 90) is kept.
    pub age_capped: bool,
}

/// A visit / encounter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VisitFact {
    /// Patient id.
    pub patient: String,
    /// The source's visit id (FHIR Encounter id, PV1-19).
    pub visit: String,
    /// Class as written (`AMB`, `IMP`, `EMER`, HL7 `I`/`O`/`E`).
    pub class: Option<String>,
    /// Start.
    pub start: Option<NaiveDateTime>,
    /// End, when known.
    pub end: Option<NaiveDateTime>,
}

/// A dated, coded event: a condition, a procedure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventFact {
    /// Patient id.
    pub patient: String,
    /// Visit the event belongs to, if the source says.
    pub visit: Option<String>,
    /// What happened.
    pub code: Code,
    /// When it started.
    pub start: Option<NaiveDateTime>,
    /// When it ended.
    pub end: Option<NaiveDateTime>,
}

/// A drug given, prescribed or a vaccine administered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrugFact {
    /// The event part.
    pub event: EventFact,
    /// Quantity dispensed.
    pub quantity: Option<f64>,
    /// Dose per administration, with its unit.
    pub dose: Option<(f64, String)>,
    /// Days of supply.
    pub days_supply: Option<i32>,
}

/// A lab result, vital sign or other observation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeasurementFact {
    /// The event part (`start` is when it was measured).
    pub event: EventFact,
    /// Numeric value.
    pub value: Option<f64>,
    /// Unit as written.
    pub unit: Option<String>,
    /// Coded value (e.g. `Detected`).
    pub value_code: Option<Code>,
    /// Reference range.
    pub range: (Option<f64>, Option<f64>),
    /// True for survey / social-history observations, which go to OMOP `observation`.
    pub is_observation: bool,
}

/// A free-text note (an HL7 OBX of type TX/FT, an NTE, a CSV text column).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NoteFact {
    /// Patient id.
    pub patient: String,
    /// Visit, if any.
    pub visit: Option<String>,
    /// When it was written.
    pub date: Option<NaiveDateTime>,
    /// Title (e.g. the OBX code's text).
    pub title: Option<String>,
    /// The text, still with identifiers.
    pub text: String,
}

/// One fact from a source record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Fact {
    Person(PersonFact),
    Visit(VisitFact),
    Condition(EventFact),
    Procedure(EventFact),
    Drug(DrugFact),
    Measurement(MeasurementFact),
    Note(NoteFact),
}

impl Fact {
    /// The OMOP table the fact is headed for.
    pub fn table(&self) -> &'static str {
        match self {
            Fact::Person(_) => "person",
            Fact::Visit(_) => "visit_occurrence",
            Fact::Condition(_) => "condition_occurrence",
            Fact::Procedure(_) => "procedure_occurrence",
            Fact::Drug(_) => "drug_exposure",
            Fact::Measurement(m) if m.is_observation => "observation",
            Fact::Measurement(_) => "measurement",
            Fact::Note(_) => "note",
        }
    }

    /// The source patient id.
    pub fn patient(&self) -> &str {
        match self {
            Fact::Person(p) => &p.patient,
            Fact::Visit(v) => &v.patient,
            Fact::Condition(e) | Fact::Procedure(e) => &e.patient,
            Fact::Drug(d) => &d.event.patient,
            Fact::Measurement(m) => &m.event.patient,
            Fact::Note(n) => &n.patient,
        }
    }
}

/// One input record (a FHIR resource, an HL7 message, a CSV row) and what it became.
#[derive(Debug)]
pub struct Record {
    /// Where it came from.
    pub origin: Origin,
    /// Resource or message type (`Patient`, `ADT^A01`, `csv`).
    pub kind: String,
    /// The source's own id of the record, when it has one (duplicate detection).
    pub source_id: Option<String>,
    /// The record as received, kept for the quarantine (never leaves the site).
    pub raw: String,
    /// The facts, or why the record could not be read.
    pub parsed: Result<Vec<Fact>, Reject>,
    /// Facts of an otherwise readable record that failed on their own (one bad OBX of an ORU),
    /// with the table each was headed for.
    pub failed: Vec<(&'static str, Reject)>,
    /// Identifying fields of the record's patient (source patient id, what to scrub).
    pub phi: Option<(String, Phi)>,
}

impl Record {
    /// A record that was read; `failed` starts empty.
    pub fn new(
        origin: Origin,
        kind: impl Into<String>,
        raw: String,
        parsed: Result<Vec<Fact>, Reject>,
    ) -> Self {
        Self {
            origin,
            kind: kind.into(),
            source_id: None,
            raw,
            parsed,
            failed: Vec::new(),
            phi: None,
        }
    }
}

/// Why a record or fact was quarantined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    /// Rule id (`parse`, `unsupported_type`, `birth_date_range`, `duplicate`, …).
    pub rule: String,
    /// What exactly was wrong, for the custodian.
    pub reason: String,
}

impl Reject {
    /// A rejection under `rule`.
    pub fn new(rule: &str, reason: impl Into<String>) -> Self {
        Self {
            rule: rule.into(),
            reason: reason.into(),
        }
    }
}

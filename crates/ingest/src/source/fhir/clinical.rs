//! The clinical resources: encounters, conditions, observations, medication requests,
//! procedures and immunizations, each to its OMOP facts.

use super::*;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Period {
    start: Option<String>,
    end: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Encounter {
    id: Option<String>,
    class: Option<Coding>,
    subject: Reference,
    period: Period,
}

pub(super) fn encounter(e: Encounter) -> Result<Vec<Fact>, Reject> {
    Ok(vec![Fact::Visit(VisitFact {
        patient: subject(&e.subject)?,
        visit: e
            .id
            .ok_or_else(|| Reject::new("identifier_format", "Encounter has no id"))?,
        class: e.class.and_then(|c| c.code),
        start: opt_datetime(&e.period.start)?,
        end: opt_datetime(&e.period.end)?,
    })])
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Condition {
    code: CodeableConcept,
    subject: Reference,
    encounter: Reference,
    onset_date_time: Option<String>,
    recorded_date: Option<String>,
    abatement_date_time: Option<String>,
}

pub(super) fn condition(c: Condition) -> Result<Vec<Fact>, Reject> {
    Ok(vec![Fact::Condition(EventFact {
        patient: subject(&c.subject)?,
        visit: c.encounter.id(),
        code: required_code(&c.code, "Condition.code")?,
        start: opt_datetime(&c.onset_date_time.or(c.recorded_date))?,
        end: opt_datetime(&c.abatement_date_time)?,
    })])
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Quantity {
    value: Option<f64>,
    unit: Option<String>,
    code: Option<String>,
}

impl Quantity {
    /// UCUM code when given, else the human unit.
    fn unit(&self) -> Option<String> {
        self.code.clone().or_else(|| self.unit.clone())
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Range {
    low: Option<Quantity>,
    high: Option<Quantity>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Component {
    code: CodeableConcept,
    value_quantity: Option<Quantity>,
    value_codeable_concept: Option<CodeableConcept>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Observation {
    category: Vec<CodeableConcept>,
    code: CodeableConcept,
    subject: Reference,
    encounter: Reference,
    effective_date_time: Option<String>,
    effective_period: Option<Period>,
    issued: Option<String>,
    value_quantity: Option<Quantity>,
    value_codeable_concept: Option<CodeableConcept>,
    reference_range: Vec<Range>,
    component: Vec<Component>,
}

pub(super) fn observation(o: Observation) -> Result<Vec<Fact>, Reject> {
    let patient = subject(&o.subject)?;
    let when = o
        .effective_date_time
        .or_else(|| o.effective_period.and_then(|p| p.start))
        .or(o.issued);
    let start = opt_datetime(&when)?;
    let is_observation = o.category.iter().flat_map(|c| &c.coding).any(|c| {
        matches!(
            c.code.as_deref(),
            Some("survey" | "social-history" | "exam")
        )
    });
    let range = o
        .reference_range
        .first()
        .map(|r| {
            (
                r.low.as_ref().and_then(|q| q.value),
                r.high.as_ref().and_then(|q| q.value),
            )
        })
        .unwrap_or_default();
    let fact = |code: Code, q: Option<&Quantity>, v: Option<&CodeableConcept>| {
        Fact::Measurement(MeasurementFact {
            event: EventFact {
                patient: patient.clone(),
                visit: o.encounter.id(),
                code,
                start,
                end: None,
            },
            value: q.and_then(|q| q.value),
            unit: q.and_then(Quantity::unit),
            value_code: v.and_then(CodeableConcept::code),
            range,
            is_observation,
        })
    };
    if !o.component.is_empty() && o.value_quantity.is_none() {
        // A panel such as blood pressure: one fact per component, the panel code itself is not a
        // measurement.
        return o
            .component
            .iter()
            .map(|c| {
                Ok(fact(
                    required_code(&c.code, "Observation.component.code")?,
                    c.value_quantity.as_ref(),
                    c.value_codeable_concept.as_ref(),
                ))
            })
            .collect();
    }
    Ok(vec![fact(
        required_code(&o.code, "Observation.code")?,
        o.value_quantity.as_ref(),
        o.value_codeable_concept.as_ref(),
    )])
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct DoseAndRate {
    dose_quantity: Option<Quantity>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Dosage {
    dose_and_rate: Vec<DoseAndRate>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct DispenseRequest {
    quantity: Option<Quantity>,
    expected_supply_duration: Option<Quantity>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct MedicationRequest {
    medication_codeable_concept: CodeableConcept,
    subject: Reference,
    encounter: Reference,
    authored_on: Option<String>,
    dosage_instruction: Vec<Dosage>,
    dispense_request: Option<DispenseRequest>,
}

pub(super) fn medication_request(m: MedicationRequest) -> Result<Vec<Fact>, Reject> {
    let dose = m
        .dosage_instruction
        .first()
        .and_then(|d| d.dose_and_rate.first())
        .and_then(|d| d.dose_quantity.as_ref())
        .and_then(|q| Some((q.value?, q.unit().unwrap_or_default())));
    let dispense = m.dispense_request.unwrap_or_default();
    Ok(vec![Fact::Drug(DrugFact {
        event: EventFact {
            patient: subject(&m.subject)?,
            visit: m.encounter.id(),
            code: required_code(
                &m.medication_codeable_concept,
                "MedicationRequest.medicationCodeableConcept",
            )?,
            start: opt_datetime(&m.authored_on)?,
            end: None,
        },
        quantity: dispense.quantity.and_then(|q| q.value),
        dose,
        days_supply: dispense
            .expected_supply_duration
            .and_then(|q| q.value)
            .map(|d| d.round() as i32),
    })])
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Procedure {
    code: CodeableConcept,
    subject: Reference,
    encounter: Reference,
    performed_date_time: Option<String>,
    performed_period: Option<Period>,
}

pub(super) fn procedure(p: Procedure) -> Result<Vec<Fact>, Reject> {
    let (start, end) = match (p.performed_date_time, p.performed_period) {
        (Some(t), _) => (Some(t), None),
        (None, Some(period)) => (period.start, period.end),
        (None, None) => (None, None),
    };
    Ok(vec![Fact::Procedure(EventFact {
        patient: subject(&p.subject)?,
        visit: p.encounter.id(),
        code: required_code(&p.code, "Procedure.code")?,
        start: opt_datetime(&start)?,
        end: opt_datetime(&end)?,
    })])
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Immunization {
    vaccine_code: CodeableConcept,
    patient: Reference,
    encounter: Reference,
    occurrence_date_time: Option<String>,
}

pub(super) fn immunization(i: Immunization) -> Result<Vec<Fact>, Reject> {
    Ok(vec![Fact::Drug(DrugFact {
        event: EventFact {
            patient: subject(&i.patient)?,
            visit: i.encounter.id(),
            code: required_code(&i.vaccine_code, "Immunization.vaccineCode")?,
            start: opt_datetime(&i.occurrence_date_time)?,
            end: None,
        },
        quantity: Some(1.0),
        dose: None,
        days_supply: Some(1),
    })])
}

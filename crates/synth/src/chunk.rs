//! Column buffers for one chunk of patients, and their conversion to Arrow record batches.
//!
//! Event ids inside a chunk start at 1; [`Chunk::shift_ids`] moves them into the site's id space
//! once chunks are put back in order, so ids are dense and deterministic although chunks are
//! generated in parallel.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Float64Array, Int32Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::error::ArrowError;
use medfed_core::omop;

/// Running id counters of a site, one per event table.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdCounters {
    pub visit: i32,
    pub condition: i32,
    pub drug: i32,
    pub measurement: i32,
    pub period: i32,
}

#[derive(Default)]
pub struct Persons {
    pub person_id: Vec<i32>,
    pub gender: Vec<i32>,
    pub year: Vec<i32>,
    pub month: Vec<i32>,
    pub day: Vec<i32>,
    pub birth_us: Vec<i64>,
    pub race: Vec<i32>,
    pub ethnicity: Vec<i32>,
    pub source: Vec<String>,
    pub gender_source: Vec<&'static str>,
    pub race_source: Vec<&'static str>,
}

#[derive(Default)]
pub struct Periods {
    pub id: Vec<i32>,
    pub person_id: Vec<i32>,
    pub start: Vec<i32>,
    pub end: Vec<i32>,
}

#[derive(Default)]
pub struct Visits {
    pub id: Vec<i32>,
    pub person_id: Vec<i32>,
    pub concept: Vec<i32>,
    pub start: Vec<i32>,
    pub end: Vec<i32>,
    pub source: Vec<&'static str>,
    pub discharged_to: Vec<Option<i32>>,
    pub preceding: Vec<Option<i32>>,
}

#[derive(Default)]
pub struct Conditions {
    pub id: Vec<i32>,
    pub person_id: Vec<i32>,
    pub concept: Vec<i32>,
    pub start: Vec<i32>,
    pub visit: Vec<Option<i32>>,
    pub source: Vec<&'static str>,
}

#[derive(Default)]
pub struct Drugs {
    pub id: Vec<i32>,
    pub person_id: Vec<i32>,
    pub concept: Vec<i32>,
    pub start: Vec<i32>,
    pub end: Vec<i32>,
    pub quantity: Vec<f64>,
    pub days_supply: Vec<i32>,
    pub refills: Vec<i32>,
    pub source: Vec<&'static str>,
}

#[derive(Default)]
pub struct Measurements {
    pub id: Vec<i32>,
    pub person_id: Vec<i32>,
    pub concept: Vec<i32>,
    pub date: Vec<i32>,
    pub value: Vec<f64>,
    pub unit: Vec<i32>,
    pub low: Vec<f64>,
    pub high: Vec<f64>,
    pub visit: Vec<i32>,
    pub source: Vec<&'static str>,
    pub unit_source: Vec<&'static str>,
}

#[derive(Default)]
pub struct Deaths {
    pub person_id: Vec<i32>,
    pub date: Vec<i32>,
}

/// Everything generated for one chunk of patients.
#[derive(Default)]
pub struct Chunk {
    pub persons: Persons,
    pub periods: Periods,
    pub visits: Visits,
    pub conditions: Conditions,
    pub drugs: Drugs,
    pub measurements: Measurements,
    pub deaths: Deaths,
}

fn shift(ids: &mut [i32], by: i32) {
    ids.iter_mut().for_each(|v| *v += by);
}

fn shift_opt(ids: &mut [Option<i32>], by: i32) {
    ids.iter_mut().flatten().for_each(|v| *v += by);
}

impl Chunk {
    /// Moves chunk-local event ids (from 1) past `counters`, then advances the counters.
    pub fn shift_ids(&mut self, counters: &mut IdCounters) {
        shift(&mut self.visits.id, counters.visit);
        shift_opt(&mut self.visits.preceding, counters.visit);
        shift_opt(&mut self.conditions.visit, counters.visit);
        shift(&mut self.measurements.visit, counters.visit);
        shift(&mut self.conditions.id, counters.condition);
        shift(&mut self.drugs.id, counters.drug);
        shift(&mut self.measurements.id, counters.measurement);
        shift(&mut self.periods.id, counters.period);
        counters.visit += self.visits.id.len() as i32;
        counters.condition += self.conditions.id.len() as i32;
        counters.drug += self.drugs.id.len() as i32;
        counters.measurement += self.measurements.id.len() as i32;
        counters.period += self.periods.id.len() as i32;
    }

    /// The chunk as one record batch per OMOP table, in [`crate::TABLES`] order.
    pub fn into_batches(self) -> Result<Vec<RecordBatch>, ArrowError> {
        let p = self.persons;
        let person = assemble(
            "person",
            p.person_id.len(),
            vec![
                ("person_id", i32s(p.person_id)),
                ("gender_concept_id", i32s(p.gender)),
                ("year_of_birth", i32s(p.year)),
                ("month_of_birth", i32s(p.month)),
                ("day_of_birth", i32s(p.day)),
                (
                    "birth_datetime",
                    Arc::new(TimestampMicrosecondArray::from(p.birth_us)),
                ),
                ("race_concept_id", i32s(p.race)),
                ("ethnicity_concept_id", i32s(p.ethnicity)),
                ("person_source_value", Arc::new(StringArray::from(p.source))),
                ("gender_source_value", strs(p.gender_source)),
                ("race_source_value", strs(p.race_source)),
            ],
        )?;
        let o = self.periods;
        let n = o.id.len();
        let period = assemble(
            "observation_period",
            n,
            vec![
                ("observation_period_id", i32s(o.id)),
                ("person_id", i32s(o.person_id)),
                ("observation_period_start_date", dates(o.start)),
                ("observation_period_end_date", dates(o.end)),
                (
                    "period_type_concept_id",
                    constant(crate::concepts::TYPE_EHR, n),
                ),
            ],
        )?;
        let v = self.visits;
        let n = v.id.len();
        let visit = assemble(
            "visit_occurrence",
            n,
            vec![
                ("visit_occurrence_id", i32s(v.id)),
                ("person_id", i32s(v.person_id)),
                ("visit_concept_id", i32s(v.concept)),
                ("visit_start_date", dates(v.start)),
                ("visit_end_date", dates(v.end)),
                (
                    "visit_type_concept_id",
                    constant(crate::concepts::TYPE_EHR, n),
                ),
                ("visit_source_value", strs(v.source)),
                (
                    "discharged_to_concept_id",
                    Arc::new(Int32Array::from(v.discharged_to)),
                ),
                (
                    "preceding_visit_occurrence_id",
                    Arc::new(Int32Array::from(v.preceding)),
                ),
            ],
        )?;
        let c = self.conditions;
        let n = c.id.len();
        let condition = assemble(
            "condition_occurrence",
            n,
            vec![
                ("condition_occurrence_id", i32s(c.id)),
                ("person_id", i32s(c.person_id)),
                ("condition_concept_id", i32s(c.concept)),
                ("condition_start_date", dates(c.start)),
                (
                    "condition_type_concept_id",
                    constant(crate::concepts::TYPE_EHR, n),
                ),
                ("visit_occurrence_id", Arc::new(Int32Array::from(c.visit))),
                ("condition_source_value", strs(c.source)),
            ],
        )?;
        let d = self.drugs;
        let n = d.id.len();
        let drug = assemble(
            "drug_exposure",
            n,
            vec![
                ("drug_exposure_id", i32s(d.id)),
                ("person_id", i32s(d.person_id)),
                ("drug_concept_id", i32s(d.concept)),
                ("drug_exposure_start_date", dates(d.start)),
                ("drug_exposure_end_date", dates(d.end)),
                (
                    "drug_type_concept_id",
                    constant(crate::concepts::TYPE_EHR, n),
                ),
                ("refills", i32s(d.refills)),
                ("quantity", Arc::new(Float64Array::from(d.quantity))),
                ("days_supply", i32s(d.days_supply)),
                ("drug_source_value", strs(d.source)),
            ],
        )?;
        let m = self.measurements;
        let n = m.id.len();
        let measurement = assemble(
            "measurement",
            n,
            vec![
                ("measurement_id", i32s(m.id)),
                ("person_id", i32s(m.person_id)),
                ("measurement_concept_id", i32s(m.concept)),
                ("measurement_date", dates(m.date)),
                (
                    "measurement_type_concept_id",
                    constant(crate::concepts::TYPE_EHR, n),
                ),
                ("value_as_number", Arc::new(Float64Array::from(m.value))),
                ("unit_concept_id", i32s(m.unit)),
                ("range_low", Arc::new(Float64Array::from(m.low))),
                ("range_high", Arc::new(Float64Array::from(m.high))),
                ("visit_occurrence_id", i32s(m.visit)),
                ("measurement_source_value", strs(m.source)),
                ("unit_source_value", strs(m.unit_source)),
            ],
        )?;
        let x = self.deaths;
        let n = x.person_id.len();
        let death = assemble(
            "death",
            n,
            vec![
                ("person_id", i32s(x.person_id)),
                ("death_date", dates(x.date)),
                (
                    "death_type_concept_id",
                    constant(crate::concepts::TYPE_EHR, n),
                ),
            ],
        )?;
        Ok(vec![
            person,
            period,
            visit,
            condition,
            drug,
            measurement,
            death,
        ])
    }
}

fn i32s(v: Vec<i32>) -> ArrayRef {
    Arc::new(Int32Array::from(v))
}

fn dates(v: Vec<i32>) -> ArrayRef {
    Arc::new(Date32Array::from(v))
}

fn strs(v: Vec<&'static str>) -> ArrayRef {
    Arc::new(StringArray::from(v))
}

fn constant(value: i32, n: usize) -> ArrayRef {
    Arc::new(Int32Array::from(vec![value; n]))
}

/// Builds a batch with the table's full CDM schema: the given columns, nulls elsewhere.
fn assemble(
    table: &str,
    rows: usize,
    columns: Vec<(&str, ArrayRef)>,
) -> Result<RecordBatch, ArrowError> {
    omop::table(table)
        .expect("generator only writes CDM tables")
        .batch(rows, columns)
}

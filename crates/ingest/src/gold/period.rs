//! The observation_period table: one period per person, from the earliest to the latest dated
//! fact the hospital's records hold of them.

use std::collections::HashMap;

use arrow::array::RecordBatch;
use arrow::error::ArrowError;

use super::columns::{constant, dates, i32s, table};
use super::{TYPE_EHR, date};
use crate::model::Fact;

/// The observation periods of the people in `person_id` (source id → OMOP person id).
pub(super) fn observation_period(
    facts: &[Fact],
    person_id: &HashMap<&str, i32>,
) -> Result<RecordBatch, ArrowError> {
    let mut span: HashMap<i32, (i32, i32)> = HashMap::new();
    for f in facts {
        let (patient, dates) = match f {
            Fact::Person(_) => continue,
            Fact::Visit(v) => (&v.patient, [v.start, v.end]),
            Fact::Condition(e) | Fact::Procedure(e) => (&e.patient, [e.start, e.end]),
            Fact::Drug(d) => (&d.event.patient, [d.event.start, d.event.end]),
            Fact::Measurement(m) => (&m.event.patient, [m.event.start, None]),
            Fact::Note(n) => (&n.patient, [n.date, None]),
        };
        for d in dates.into_iter().filter_map(date) {
            let e = span.entry(person_id[patient.as_str()]).or_insert((d, d));
            e.0 = e.0.min(d);
            e.1 = e.1.max(d);
        }
    }
    let mut periods: Vec<(i32, (i32, i32))> = span.into_iter().collect();
    periods.sort();
    let n = periods.len();
    table("observation_period").batch(
        n,
        vec![
            ("observation_period_id", i32s((1..=n as i32).map(Some))),
            ("person_id", i32s(periods.iter().map(|p| Some(p.0)))),
            (
                "observation_period_start_date",
                dates(periods.iter().map(|p| Some(p.1.0))),
            ),
            (
                "observation_period_end_date",
                dates(periods.iter().map(|p| Some(p.1.1))),
            ),
            ("period_type_concept_id", constant(TYPE_EHR, n)),
        ],
    )
}

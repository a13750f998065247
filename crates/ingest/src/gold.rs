//! Silver facts → OMOP CDM v5.4 tables.
//!
//! Ids are dense and deterministic: persons numbered in pseudonym order, events in
//! (person, date, code) order, so the same bronze always gives byte-identical gold. Every
//! record carries type concept 32817 (EHR). Codes map through the [`Vocabulary`]; unmapped ones
//! get concept 0 and keep their `*_source_value`, and are counted for the coverage report. An
//! observation period per person spans their earliest to latest dated fact.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int32Array, RecordBatch};
use arrow::error::ArrowError;
use chrono::{Datelike, NaiveDate, NaiveDateTime};
use serde::Serialize;

use crate::model::{Code, EventFact, Fact};
use crate::vocab::Vocabulary;

mod columns;
mod period;

use columns::{constant, dates, i32s, strs, strs_owned, table};

/// The OMOP tables [`build`] writes (a study over an ingested site may read any of them).
pub const TABLES: [&str; 11] = [
    "person",
    "observation_period",
    "visit_occurrence",
    "condition_occurrence",
    "procedure_occurrence",
    "drug_exposure",
    "measurement",
    "observation",
    "death",
    "location",
    "note",
];

/// Type concept: EHR.
const TYPE_EHR: i32 = 32817;

/// Concept-mapping coverage of one table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Coverage {
    /// Rows with a code.
    pub coded: usize,
    /// Rows whose code mapped to a standard concept.
    pub mapped: usize,
    /// Unmapped source codes and how many rows carry each (most frequent first, at most 20).
    pub unmapped: Vec<(String, usize)>,
}

/// Gold tables and how well their codes mapped.
pub struct Gold {
    /// Table name → batch (CDM schema).
    pub tables: BTreeMap<&'static str, RecordBatch>,
    /// Table name → coverage.
    pub coverage: BTreeMap<&'static str, Coverage>,
}

fn days(d: NaiveDate) -> i32 {
    d.num_days_from_ce() - 719_163
}

fn date(t: Option<NaiveDateTime>) -> Option<i32> {
    t.map(|t| days(t.date()))
}

#[derive(Default)]
struct Mapper<'a> {
    vocab: Option<&'a Vocabulary>,
    counts: BTreeMap<&'static str, (usize, usize, HashMap<String, usize>)>,
}

impl Mapper<'_> {
    fn concept(&mut self, table: &'static str, code: &Code) -> i32 {
        let id = self
            .vocab
            .and_then(|v| v.concept(&code.vocabulary, &code.code))
            .unwrap_or(0);
        let c = self.counts.entry(table).or_default();
        c.0 += 1;
        if id != 0 {
            c.1 += 1;
        } else {
            *c.2.entry(code.source_value()).or_default() += 1;
        }
        id
    }

    fn coverage(self) -> BTreeMap<&'static str, Coverage> {
        self.counts
            .into_iter()
            .map(|(t, (coded, mapped, unmapped))| {
                let mut unmapped: Vec<(String, usize)> = unmapped.into_iter().collect();
                unmapped.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                unmapped.truncate(20);
                (
                    t,
                    Coverage {
                        coded,
                        mapped,
                        unmapped,
                    },
                )
            })
            .collect()
    }
}

/// Builds the gold tables from de-identified facts (persons first-class: every other fact's
/// person must be among them — the pipeline quarantines orphans before this).
pub fn build(facts: &[Fact], vocab: &Vocabulary) -> Result<Gold, ArrowError> {
    let mut map = Mapper {
        vocab: Some(vocab),
        ..Default::default()
    };
    let mut persons: Vec<_> = facts
        .iter()
        .filter_map(|f| match f {
            Fact::Person(p) => Some(p),
            _ => None,
        })
        .collect();
    persons.sort_by(|a, b| a.patient.cmp(&b.patient));
    let person_id: HashMap<&str, i32> = persons
        .iter()
        .enumerate()
        .map(|(i, p)| (p.patient.as_str(), i as i32 + 1))
        .collect();

    // Locations: one per distinct (state, 3-digit ZIP).
    let mut locations: BTreeMap<(Option<String>, Option<String>), i32> = BTreeMap::new();
    for p in &persons {
        if p.state.is_some() || p.zip.is_some() {
            let n = locations.len() as i32 + 1;
            locations
                .entry((p.state.clone(), p.zip.clone()))
                .or_insert(n);
        }
    }

    let mut visits: Vec<_> = facts
        .iter()
        .filter_map(|f| match f {
            Fact::Visit(v) => Some(v),
            _ => None,
        })
        .collect();
    visits.sort_by(|a, b| {
        (person_id[a.patient.as_str()], a.start, &a.visit).cmp(&(
            person_id[b.patient.as_str()],
            b.start,
            &b.visit,
        ))
    });
    let visit_id: HashMap<&str, i32> = visits
        .iter()
        .enumerate()
        .map(|(i, v)| (v.visit.as_str(), i as i32 + 1))
        .collect();
    let vid = |v: &Option<String>| v.as_deref().and_then(|v| visit_id.get(v).copied());

    let mut tables = BTreeMap::new();
    // person
    {
        let n = persons.len();
        let mut gender = Vec::with_capacity(n);
        let mut race = Vec::with_capacity(n);
        let mut ethnicity = Vec::with_capacity(n);
        for p in &persons {
            let code = |vocabulary: &str, v: &Option<String>| Code {
                vocabulary: vocabulary.into(),
                code: v.clone().unwrap_or_default(),
                display: None,
            };
            gender.push(map.concept("person", &code("Gender", &p.gender)));
            race.push(
                vocab
                    .concept("Race", p.race.as_deref().unwrap_or(""))
                    .unwrap_or(0),
            );
            ethnicity.push(
                vocab
                    .concept("Ethnicity", p.ethnicity.as_deref().unwrap_or(""))
                    .unwrap_or(0),
            );
        }
        let year: Vec<i32> = persons
            .iter()
            .map(|p| p.birth.map(|b| b.year()).unwrap_or(0))
            .collect();
        let exact = |f: fn(NaiveDate) -> u32| -> ArrayRef {
            i32s(
                persons
                    .iter()
                    .map(|p| p.birth.filter(|_| !p.age_capped).map(|b| f(b) as i32)),
            )
        };
        let batch = table("person").batch(
            n,
            vec![
                ("person_id", i32s((1..=n as i32).map(Some))),
                ("gender_concept_id", Arc::new(Int32Array::from(gender))),
                ("year_of_birth", Arc::new(Int32Array::from(year))),
                ("month_of_birth", exact(|b| b.month())),
                ("day_of_birth", exact(|b| b.day())),
                ("race_concept_id", Arc::new(Int32Array::from(race))),
                (
                    "ethnicity_concept_id",
                    Arc::new(Int32Array::from(ethnicity)),
                ),
                (
                    "location_id",
                    i32s(
                        persons
                            .iter()
                            .map(|p| locations.get(&(p.state.clone(), p.zip.clone())).copied()),
                    ),
                ),
                (
                    "person_source_value",
                    strs(persons.iter().map(|p| Some(p.patient.as_str()))),
                ),
                (
                    "gender_source_value",
                    strs(persons.iter().map(|p| p.gender.as_deref())),
                ),
                (
                    "race_source_value",
                    strs(persons.iter().map(|p| p.race.as_deref())),
                ),
                (
                    "ethnicity_source_value",
                    strs(persons.iter().map(|p| p.ethnicity.as_deref())),
                ),
            ],
        )?;
        tables.insert("person", batch);
        let deaths: Vec<_> = persons
            .iter()
            .filter_map(|p| Some((person_id[p.patient.as_str()], p.death?)))
            .collect();
        tables.insert(
            "death",
            table("death").batch(
                deaths.len(),
                vec![
                    ("person_id", i32s(deaths.iter().map(|d| Some(d.0)))),
                    ("death_date", dates(deaths.iter().map(|d| Some(days(d.1))))),
                    ("death_type_concept_id", constant(TYPE_EHR, deaths.len())),
                ],
            )?,
        );
        let locs: Vec<_> = locations.iter().collect();
        tables.insert(
            "location",
            table("location").batch(
                locs.len(),
                vec![
                    ("location_id", i32s(locs.iter().map(|l| Some(*l.1)))),
                    ("state", strs(locs.iter().map(|l| l.0.0.as_deref()))),
                    ("zip", strs(locs.iter().map(|l| l.0.1.as_deref()))),
                ],
            )?,
        );
    }
    // visit_occurrence
    {
        let n = visits.len();
        let mut concept = Vec::with_capacity(n);
        for v in &visits {
            let code = Code {
                vocabulary: "Visit".into(),
                code: v.class.clone().unwrap_or_default(),
                display: None,
            };
            concept.push(map.concept("visit_occurrence", &code));
        }
        tables.insert(
            "visit_occurrence",
            table("visit_occurrence").batch(
                n,
                vec![
                    ("visit_occurrence_id", i32s((1..=n as i32).map(Some))),
                    (
                        "person_id",
                        i32s(visits.iter().map(|v| Some(person_id[v.patient.as_str()]))),
                    ),
                    ("visit_concept_id", Arc::new(Int32Array::from(concept))),
                    (
                        "visit_start_date",
                        dates(visits.iter().map(|v| date(v.start))),
                    ),
                    (
                        "visit_end_date",
                        dates(visits.iter().map(|v| date(v.end.or(v.start)))),
                    ),
                    ("visit_type_concept_id", constant(TYPE_EHR, n)),
                    (
                        "visit_source_value",
                        strs(visits.iter().map(|v| v.class.as_deref())),
                    ),
                ],
            )?,
        );
    }

    let pid = |e: &EventFact| person_id[e.patient.as_str()];
    let order = |e: &EventFact| (pid(e), e.start, e.code.source_value());
    let events = |want: fn(&Fact) -> Option<&EventFact>| {
        let mut v: Vec<&EventFact> = facts.iter().filter_map(want).collect();
        v.sort_by_cached_key(|e| order(e));
        v
    };
    for (name, want) in [
        (
            "condition_occurrence",
            (|f: &Fact| {
                if let Fact::Condition(e) = f {
                    Some(e)
                } else {
                    None
                }
            }) as fn(&Fact) -> Option<&EventFact>,
        ),
        ("procedure_occurrence", |f: &Fact| {
            if let Fact::Procedure(e) = f {
                Some(e)
            } else {
                None
            }
        }),
    ] {
        let rows = events(want);
        let n = rows.len();
        let concept: Vec<i32> = rows.iter().map(|e| map.concept(name, &e.code)).collect();
        let (prefix, start_col, end_col) = if name == "condition_occurrence" {
            ("condition", "condition_start_date", "condition_end_date")
        } else {
            ("procedure", "procedure_date", "procedure_end_date")
        };
        let id_col = format!("{name}_id");
        let concept_col = format!("{prefix}_concept_id");
        let type_col = format!("{prefix}_type_concept_id");
        let source_col = format!("{prefix}_source_value");
        tables.insert(
            name,
            table(name).batch(
                n,
                vec![
                    (id_col.as_str(), i32s((1..=n as i32).map(Some))),
                    ("person_id", i32s(rows.iter().map(|e| Some(pid(e))))),
                    (concept_col.as_str(), Arc::new(Int32Array::from(concept))),
                    (start_col, dates(rows.iter().map(|e| date(e.start)))),
                    (end_col, dates(rows.iter().map(|e| date(e.end)))),
                    (type_col.as_str(), constant(TYPE_EHR, n)),
                    (
                        "visit_occurrence_id",
                        i32s(rows.iter().map(|e| vid(&e.visit))),
                    ),
                    (
                        source_col.as_str(),
                        strs_owned(rows.iter().map(|e| Some(e.code.source_value()))),
                    ),
                ],
            )?,
        );
    }
    // drug_exposure
    {
        let mut drugs: Vec<_> = facts
            .iter()
            .filter_map(|f| if let Fact::Drug(d) = f { Some(d) } else { None })
            .collect();
        drugs.sort_by_cached_key(|d| order(&d.event));
        let n = drugs.len();
        let concept: Vec<i32> = drugs
            .iter()
            .map(|d| map.concept("drug_exposure", &d.event.code))
            .collect();
        let end = |d: &&crate::model::DrugFact| {
            let start = date(d.event.start)?;
            Some(date(d.event.end).unwrap_or(start + d.days_supply.unwrap_or(1).max(1) - 1))
        };
        tables.insert(
            "drug_exposure",
            table("drug_exposure").batch(
                n,
                vec![
                    ("drug_exposure_id", i32s((1..=n as i32).map(Some))),
                    ("person_id", i32s(drugs.iter().map(|d| Some(pid(&d.event))))),
                    ("drug_concept_id", Arc::new(Int32Array::from(concept))),
                    (
                        "drug_exposure_start_date",
                        dates(drugs.iter().map(|d| date(d.event.start))),
                    ),
                    ("drug_exposure_end_date", dates(drugs.iter().map(end))),
                    ("drug_type_concept_id", constant(TYPE_EHR, n)),
                    (
                        "quantity",
                        Arc::new(Float64Array::from_iter(drugs.iter().map(|d| d.quantity))),
                    ),
                    ("days_supply", i32s(drugs.iter().map(|d| d.days_supply))),
                    (
                        "visit_occurrence_id",
                        i32s(drugs.iter().map(|d| vid(&d.event.visit))),
                    ),
                    (
                        "drug_source_value",
                        strs_owned(drugs.iter().map(|d| Some(d.event.code.source_value()))),
                    ),
                    (
                        "dose_unit_source_value",
                        strs(drugs.iter().map(|d| d.dose.as_ref().map(|x| x.1.as_str()))),
                    ),
                ],
            )?,
        );
    }
    // measurement and observation
    for (name, is_obs) in [("measurement", false), ("observation", true)] {
        let mut rows: Vec<_> = facts
            .iter()
            .filter_map(|f| {
                if let Fact::Measurement(m) = f {
                    Some(m)
                } else {
                    None
                }
            })
            .filter(|m| m.is_observation == is_obs)
            .collect();
        rows.sort_by_cached_key(|m| order(&m.event));
        let n = rows.len();
        let concept: Vec<i32> = rows
            .iter()
            .map(|m| map.concept(name, &m.event.code))
            .collect();
        let unit: Vec<Option<i32>> = rows
            .iter()
            .map(|m| {
                m.unit
                    .as_deref()
                    .map(|u| vocab.concept("UCUM", u).unwrap_or(0))
            })
            .collect();
        let value_concept: Vec<Option<i32>> = rows
            .iter()
            .map(|m| {
                m.value_code
                    .as_ref()
                    .map(|c| vocab.concept(&c.vocabulary, &c.code).unwrap_or(0))
            })
            .collect();
        let value_source = strs_owned(rows.iter().map(|m| {
            m.value_code.as_ref().map(|c| {
                c.display
                    .clone()
                    .filter(|d| !d.is_empty())
                    .unwrap_or_else(|| c.source_value())
            })
        }));
        let ids = i32s((1..=n as i32).map(Some));
        let persons = i32s(rows.iter().map(|m| Some(pid(&m.event))));
        let when = dates(rows.iter().map(|m| date(m.event.start)));
        let values: ArrayRef = Arc::new(Float64Array::from_iter(rows.iter().map(|m| m.value)));
        let visits = i32s(rows.iter().map(|m| vid(&m.event.visit)));
        let source = strs_owned(rows.iter().map(|m| Some(m.event.code.source_value())));
        let unit_source = strs(rows.iter().map(|m| m.unit.as_deref()));
        let batch = if is_obs {
            table(name).batch(
                n,
                vec![
                    ("observation_id", ids),
                    ("person_id", persons),
                    (
                        "observation_concept_id",
                        Arc::new(Int32Array::from(concept)),
                    ),
                    ("observation_date", when),
                    ("observation_type_concept_id", constant(TYPE_EHR, n)),
                    ("value_as_number", values),
                    ("value_as_string", value_source),
                    (
                        "value_as_concept_id",
                        Arc::new(Int32Array::from(value_concept)),
                    ),
                    ("unit_concept_id", Arc::new(Int32Array::from(unit))),
                    ("visit_occurrence_id", visits),
                    ("observation_source_value", source),
                    ("unit_source_value", unit_source),
                ],
            )?
        } else {
            table(name).batch(
                n,
                vec![
                    ("measurement_id", ids),
                    ("person_id", persons),
                    (
                        "measurement_concept_id",
                        Arc::new(Int32Array::from(concept)),
                    ),
                    ("measurement_date", when),
                    ("measurement_type_concept_id", constant(TYPE_EHR, n)),
                    ("value_as_number", values),
                    (
                        "value_as_concept_id",
                        Arc::new(Int32Array::from(value_concept)),
                    ),
                    ("unit_concept_id", Arc::new(Int32Array::from(unit))),
                    (
                        "range_low",
                        Arc::new(Float64Array::from_iter(rows.iter().map(|m| m.range.0))),
                    ),
                    (
                        "range_high",
                        Arc::new(Float64Array::from_iter(rows.iter().map(|m| m.range.1))),
                    ),
                    ("visit_occurrence_id", visits),
                    ("measurement_source_value", source),
                    ("unit_source_value", unit_source),
                    ("value_source_value", value_source),
                ],
            )?
        };
        tables.insert(name, batch);
    }
    // note
    {
        let mut notes: Vec<_> = facts
            .iter()
            .filter_map(|f| if let Fact::Note(n) = f { Some(n) } else { None })
            .collect();
        notes.sort_by(|a, b| {
            (person_id[a.patient.as_str()], a.date, &a.text).cmp(&(
                person_id[b.patient.as_str()],
                b.date,
                &b.text,
            ))
        });
        let n = notes.len();
        tables.insert(
            "note",
            table("note").batch(
                n,
                vec![
                    ("note_id", i32s((1..=n as i32).map(Some))),
                    (
                        "person_id",
                        i32s(notes.iter().map(|x| Some(person_id[x.patient.as_str()]))),
                    ),
                    ("note_date", dates(notes.iter().map(|x| date(x.date)))),
                    ("note_type_concept_id", constant(TYPE_EHR, n)),
                    ("note_class_concept_id", constant(0, n)),
                    ("note_title", strs(notes.iter().map(|x| x.title.as_deref()))),
                    (
                        "note_text",
                        strs(notes.iter().map(|x| Some(x.text.as_str()))),
                    ),
                    // UTF-8; language not detected (0).
                    ("encoding_concept_id", constant(32678, n)),
                    ("language_concept_id", constant(0, n)),
                    (
                        "visit_occurrence_id",
                        i32s(notes.iter().map(|x| vid(&x.visit))),
                    ),
                ],
            )?,
        );
    }
    tables.insert(
        "observation_period",
        period::observation_period(facts, &person_id)?,
    );
    debug_assert!(tables.len() == TABLES.len() && TABLES.iter().all(|t| tables.contains_key(t)));
    Ok(Gold {
        tables,
        coverage: map.coverage(),
    })
}

use chrono::NaiveDate;

use super::*;
use crate::model::{Code, MeasurementFact};

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 25).unwrap()
}

fn lab(code: &str, value: f64, unit: &str) -> Fact {
    Fact::Measurement(MeasurementFact {
        event: EventFact {
            patient: "p1".into(),
            visit: None,
            code: Code {
                vocabulary: "LOINC".into(),
                code: code.into(),
                display: None,
            },
            start: NaiveDate::from_ymd_opt(2020, 1, 1)
                .unwrap()
                .and_hms_opt(0, 0, 0),
            end: None,
        },
        value: Some(value),
        unit: Some(unit.into()),
        value_code: None,
        range: (Some(3.9), Some(5.5)),
        is_observation: false,
    })
}

#[test]
fn units_are_normalised_and_converted_before_the_range_check() {
    let rules = Rules::shipped(today());
    let mut f = lab("2345-7", 5.5, "mmol/l");
    rules.check(&mut f).unwrap();
    let Fact::Measurement(m) = f else { panic!() };
    assert_eq!(m.unit.as_deref(), Some("mg/dL"));
    assert!((m.value.unwrap() - 99.088).abs() < 1e-9);
    assert!((m.range.1.unwrap() - 99.088).abs() < 1e-9);
    let mut f = lab("8310-5", 98.6, "degF");
    rules.check(&mut f).unwrap();
    let Fact::Measurement(m) = f else { panic!() };
    assert!((m.value.unwrap() - 37.0).abs() < 1e-6);
}

#[test]
fn absurd_values_and_unknown_units_are_rejected_with_the_rule() {
    let rules = Rules::shipped(today());
    assert_eq!(
        rules
            .check(&mut lab("8480-6", 1200.0, "mm[Hg]"))
            .unwrap_err()
            .rule,
        "lab_range"
    );
    assert_eq!(
        rules
            .check(&mut lab("8480-6", 120.0, "furlongs"))
            .unwrap_err()
            .rule,
        "lab_unit"
    );
    assert_eq!(
        rules
            .check(&mut lab("8480-6", f64::NAN, "mm[Hg]"))
            .unwrap_err()
            .rule,
        "lab_range"
    );
}

#[test]
fn dates_identifiers_and_visits() {
    let rules = Rules::shipped(today());
    let person = |birth: (i32, u32, u32)| {
        Fact::Person(PersonFact {
            patient: "p1".into(),
            birth: NaiveDate::from_ymd_opt(birth.0, birth.1, birth.2),
            ..Default::default()
        })
    };
    assert!(rules.check(&mut person((1980, 1, 1))).is_ok());
    assert_eq!(
        rules.check(&mut person((2030, 1, 1))).unwrap_err().rule,
        "birth_date_range"
    );
    assert_eq!(
        rules.check(&mut person((1850, 1, 1))).unwrap_err().rule,
        "birth_date_range"
    );
    let mut bad_id = Fact::Person(PersonFact {
        patient: "has space; drop".into(),
        ..Default::default()
    });
    assert_eq!(
        rules.check(&mut bad_id).unwrap_err().rule,
        "identifier_format"
    );
    let t = |d| {
        NaiveDate::from_ymd_opt(2020, 1, d)
            .unwrap()
            .and_hms_opt(0, 0, 0)
    };
    let mut v = Fact::Visit(VisitFact {
        patient: "p1".into(),
        visit: "v".into(),
        class: None,
        start: t(5),
        end: t(2),
    });
    assert_eq!(
        rules.check(&mut v).unwrap_err().rule,
        "visit_end_before_start"
    );
}

#[test]
fn a_site_overrides_one_value_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.toml"),
        "[labs.\"8480-6\"]\nmax = 250.0\n",
    )
    .unwrap();
    let rules = Rules::for_site(dir.path(), today()).unwrap();
    assert_eq!(rules.lab("8480-6").unwrap().max, 250.0);
    assert_eq!(rules.lab("8480-6").unwrap().unit, "mm[Hg]");
    std::fs::write(
        dir.path().join("rules.toml"),
        "[birth]\nearliest = \"yesterday\"\n",
    )
    .unwrap();
    assert!(Rules::for_site(dir.path(), today()).is_err());
}

use super::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/hl7/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn facts(name: &str) -> Vec<Record> {
    parse_file(name, &fixture(name))
}

#[test]
fn adt_a01_samples_give_a_person_and_a_visit() {
    for name in [
        "ADT-A01-01.hl7",
        "ADT-A01-02.hl7",
        "ADT01-23.hl7",
        "001_ADT_A01.hl7",
    ] {
        let records = facts(name);
        assert_eq!(records.len(), 1, "{name}");
        let r = &records[0];
        assert_eq!(r.kind, "ADT^A01", "{name}");
        let f = r
            .parsed
            .as_ref()
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert!(matches!(f[0], Fact::Person(_)), "{name}");
        assert!(f.iter().any(|f| matches!(f, Fact::Visit(_))), "{name}");
        let (_, phi) = r.phi.as_ref().unwrap();
        assert!(
            !phi.names.is_empty(),
            "{name}: names go to the PHI side channel"
        );
    }
    let r = &facts("ADT01-23.hl7")[0];
    let Fact::Person(p) = &r.parsed.as_ref().unwrap()[0] else {
        panic!()
    };
    assert_eq!(p.patient, "10006579");
    assert_eq!(p.birth, NaiveDate::from_ymd_opt(1924, 10, 10));
    assert_eq!(p.gender.as_deref(), Some("M"));
    assert_eq!(p.zip.as_deref(), Some("999990000"));
    let Fact::Visit(v) = &r.parsed.as_ref().unwrap()[1] else {
        panic!()
    };
    assert_eq!(v.class.as_deref(), Some("I"));
    assert_eq!(v.visit, "40007716");
}

#[test]
fn oru_samples_give_measurements_with_units() {
    let r = &facts("ORU-R01-RMGEAD.hl7")[0];
    let f = r.parsed.as_ref().unwrap();
    let Some(Fact::Measurement(m)) = f.iter().find(|f| matches!(f, Fact::Measurement(_))) else {
        panic!("{f:?}")
    };
    assert_eq!(m.event.code.source_value(), "LOINC:1554-5");
    assert_eq!(m.value, Some(182.0));
    assert_eq!(m.unit.as_deref(), Some("mg/dl"));
    assert_eq!(m.range, (Some(70.0), Some(105.0)));
    let r = &facts("ORU-R01-01.hl7")[0];
    let f = r.parsed.as_ref().unwrap();
    let results = f
        .iter()
        .filter(|f| matches!(f, Fact::Measurement(_) | Fact::Note(_)))
        .count();
    assert!(results + r.failed.len() >= 1, "{f:?}");
    // The Epic sample is a template: its PID-7 says `DOB`. The message is rejected with that
    // reason rather than loaded with a made-up birth date.
    let r = &facts("002_Epic_ORU_R01.hl7")[0];
    let reject = r.parsed.as_ref().unwrap_err();
    assert_eq!(reject.rule, "date_format");
    assert!(reject.reason.contains("PID-7"), "{reject:?}");
}

#[test]
fn truncated_and_garbled_messages_are_rejected_not_fatal() {
    let good = String::from_utf8(fixture("ORU-R01-RMGEAD.hl7")).unwrap();
    for cut in [3, 10, 40, good.len() / 2] {
        let r = parse_message(
            Origin {
                file: "f".into(),
                locator: "m".into(),
            },
            &good[..cut],
        );
        // Either a clean reject or a partial record: never a panic.
        let _ = r.parsed;
    }
    let r = parse_message(
        Origin {
            file: "f".into(),
            locator: "m".into(),
        },
        "MSH|^~\\&|a|b|||x||ADT^A01|1|P|2.5\rEVN|A01\r",
    );
    assert_eq!(r.parsed.unwrap_err().reason, "no PID segment");
    let r = parse_message(
        Origin {
            file: "f".into(),
            locator: "m".into(),
        },
        "MSH|^~\\&|a|b|||x||SIU^S12|1|P|2.5\r",
    );
    assert_eq!(r.parsed.unwrap_err().rule, "unsupported_type");
    let latin1 = b"MSH|^~\\&|a|b|||20200101||ADT^A01|1|P|2.5\rPID|1||42^^^^MR||M\xfcller^J\xfcrgen||19800101|M\r";
    let r = &parse_file("f", latin1)[0];
    assert!(
        r.phi
            .as_ref()
            .unwrap()
            .1
            .names
            .iter()
            .any(|n| n == "Müller")
    );
}

#[test]
fn ack_and_nack() {
    let handler: mllp::Handler = std::sync::Arc::new(|m: &str| {
        if m.contains("FAIL") {
            Err("disk full".into())
        } else {
            Ok(())
        }
    });
    let ok = mllp::answer(
        b"MSH|^~\\&|LAB|H|MEDFED|S|20200101||ORU^R01|C42|P|2.5\rPID|1||1\r",
        &handler,
    );
    assert!(ok.contains("MSA|AA|C42"), "{ok}");
    assert!(ok.starts_with("MSH|^~\\&|MEDFED|S|LAB|H|"), "{ok}");
    let bad = mllp::answer(
        b"MSH|^~\\&|LAB|H|MEDFED|S|20200101||ORU^R01|C43|P|2.5\rNTE|FAIL\r",
        &handler,
    );
    assert!(
        bad.contains("MSA|AE|C43") && bad.contains("disk full"),
        "{bad}"
    );
    let garbage = mllp::answer(b"hello", &handler);
    assert!(garbage.contains("MSA|AR|"), "{garbage}");
}

#[test]
fn loinc_check_digits() {
    for good in ["1554-5", "2345-7", "8480-6", "718-7", "4548-4"] {
        assert!(is_loinc(good), "{good}");
    }
    for bad in ["1554-4", "12345", "abc-1", "-5", "1554-"] {
        assert!(!is_loinc(bad), "{bad}");
    }
}

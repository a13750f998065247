use super::*;

fn kinds(text: &str) -> Vec<(String, &'static str)> {
    let s = Scrubber::new();
    s.detect(text, &[], &[])
        .into_iter()
        .map(|sp| {
            (
                text.chars()
                    .skip(sp.start)
                    .take(sp.end - sp.start)
                    .collect(),
                sp.kind,
            )
        })
        .collect()
}

#[test]
fn each_recognizer_finds_its_kind() {
    let found = kinds(
        "Mr. John Smith (SSN 123-45-6789) lives at 12 Oak Street, Boston MA 02138; call +1 (617) 555-0199 or mail j.smith@example.org. Seen 03/14/2021, MRN: A1234567, IP 10.0.0.12, see https://example.org/x.",
    );
    let want = [
        ("John Smith", "PERSON"),
        ("123-45-6789", "US_SSN"),
        ("12 Oak Street", "ADDRESS"),
        ("02138", "ZIP_CODE"),
        ("+1 (617) 555-0199", "PHONE_NUMBER"),
        ("j.smith@example.org", "EMAIL_ADDRESS"),
        ("03/14/2021", "DATE_TIME"),
        ("A1234567", "MEDICAL_RECORD_NUMBER"),
        ("10.0.0.12", "IP_ADDRESS"),
        ("https://example.org/x", "URL"),
    ];
    for (text, kind) in want {
        assert!(
            found.iter().any(|(t, k)| t == text && *k == kind),
            "missing {kind} `{text}` in {found:?}"
        );
    }
}

#[test]
fn clinical_words_are_not_names() {
    let found = kinds(
        "Patient reports chest pain since March. Will follow up. Blood pressure 120/80, glucose 5.5 mmol/L, dose 500 mg twice daily.",
    );
    assert!(found.iter().all(|(_, k)| *k != "PERSON"), "{found:?}");
    assert!(found.iter().all(|(_, k)| *k != "PHONE_NUMBER"), "{found:?}");
}

#[test]
fn the_patients_own_names_are_always_found_and_offsets_are_characters() {
    let s = Scrubber::new();
    let text = "Zoë Quuxley said hi. quuxley again.";
    let spans = s.detect(text, &["Quuxley"], &[]);
    assert_eq!(spans.len(), 2, "{spans:?}");
    assert_eq!(
        (spans[0].start, spans[0].end),
        (4, 11),
        "character offsets after the ë"
    );
    assert_eq!(
        s.redact(text, &["Quuxley"], &[]),
        "Zoë <PERSON> said hi. <PERSON> again."
    );
}

#[test]
fn credit_cards_need_luhn() {
    assert!(
        kinds("card 4532276644577020")
            .iter()
            .any(|(_, k)| *k == "CREDIT_CARD")
    );
    assert!(
        !kinds("card 4532276644577021")
            .iter()
            .any(|(_, k)| *k == "CREDIT_CARD")
    );
}

/// Prints per-type recall and misses on the public labelled set (run with `--nocapture`), and
/// holds the detector to the floor measured when it was built.
#[test]
fn precision_and_recall_on_the_labelled_set() {
    let json = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/pii/generated_small.json"
    ))
    .unwrap();
    let samples = eval::load(&json).unwrap();
    let s = Scrubber::new();
    let e = eval::evaluate(&s, &samples);
    for (t, score) in &e.types {
        println!(
            "{t:<20} {:>3}/{:<3} {:.0}%",
            score.caught,
            score.labelled,
            100.0 * score.recall()
        );
    }
    println!("precision {:.3} recall {:.3}", e.precision(), e.recall());
    for sample in &samples {
        let found = s.detect(&sample.full_text, &[], &[]);
        for l in &sample.spans {
            if !found
                .iter()
                .any(|f| f.start < l.end_position && l.start_position < f.end)
            {
                let text: String = sample
                    .full_text
                    .chars()
                    .skip(l.start_position)
                    .take(l.end_position - l.start_position)
                    .collect();
                println!("missed {:<14} {text:?}", l.entity_type);
            }
        }
        for f in &found {
            if !sample
                .spans
                .iter()
                .any(|l| f.start < l.end_position && l.start_position < f.end)
            {
                let text: String = sample
                    .full_text
                    .chars()
                    .skip(f.start)
                    .take(f.end - f.start)
                    .collect();
                println!("false  {:<14} {text:?}", f.kind);
            }
        }
    }
    // Measured when written: precision 0.975, recall 0.635 (international, often lower-case
    // names and places that no US dictionary holds). A change that loses ground fails here.
    assert!(e.precision() >= 0.95, "precision {:.3}", e.precision());
    assert!(e.recall() >= 0.62, "recall {:.3}", e.recall());
    for t in [
        "CREDIT_CARD",
        "EMAIL_ADDRESS",
        "IP_ADDRESS",
        "US_SSN",
        "PHONE_NUMBER",
        "DATE_TIME",
    ] {
        assert_eq!(e.types[t].recall(), 1.0, "{t}");
    }
}

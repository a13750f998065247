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

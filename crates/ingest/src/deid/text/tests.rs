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
fn unknown_capitalised_words_are_people_or_places_by_context() {
    let found = kinds(
        "Morishita began writing at 14. She grew up in Palhais, and Duqyaha shouted at Janet. \
         They had 3: Piusz, Sharon and Wright. The Princess Royal arrived at Nugeri.",
    );
    for (text, kind) in [
        ("Morishita", "PERSON"),
        ("Palhais", "LOCATION"),
        ("Duqyaha", "PERSON"),
        ("Janet", "PERSON"),
        ("Piusz", "PERSON"),
        ("Wright", "PERSON"),
        ("Nugeri", "LOCATION"),
    ] {
        assert!(
            found.iter().any(|(t, k)| t == text && *k == kind),
            "missing {kind} `{text}` in {found:?}"
        );
    }
    assert!(
        !found.iter().any(|(t, _)| t.contains("Princess")),
        "{found:?}"
    );
}

#[test]
fn drugs_eponyms_acronyms_and_title_case_are_not_names() {
    let found = kinds(
        "Lipitor was started. Metformin 500 mg twice daily, take 2 tablets every 6 hours. \
         Parkinson disease, Klebsiella on culture; moved to ICU. The CEOs met at Border Force. \
         I'm sure it's fine, what's next? See the e-mail.",
    );
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn an_address_block_is_redacted_whole() {
    let s = Scrubber::new();
    let text = "Ship to:\nTracy Sukhorukova\n23 8 wressle road suite 771\n   polapit tamar\n    nan\n\n    77058\nThanks!";
    assert_eq!(
        s.redact(text, &[], &[]),
        "Ship to:\n<PERSON>\n<ADDRESS>\nThanks!"
    );
    let text = "Paul Waechter\n\nJestetten\nGermany";
    assert_eq!(
        s.redact(text, &[], &[]),
        "<PERSON>\n\n<LOCATION>\n<LOCATION>"
    );
    let text = "John had given him his address: 46 velký průhon 426, opocnice";
    assert!(s.redact(text, &[], &[]).ends_with("address: <ADDRESS>"));
}

#[test]
fn ibans_need_their_check_digits() {
    let with = |t: &str| kinds(t).iter().any(|(_, k)| *k == "IBAN_CODE");
    assert!(with("pay to GB82 WEST 1234 5698 7654 32 today"));
    assert!(with("pay to DE89370400440532013000 today"));
    assert!(!with("pay to GB82 WEST 1234 5698 7654 33 today"));
}

/// HIPAA Safe Harbor removes every element of a date but the year: years and weekdays stay, so
/// "diagnosed in 1991" keeps its meaning. (The labelled sets count them: that is most of the
/// DATE_TIME misses the bench reports.)
#[test]
fn years_alone_are_kept_and_full_dates_are_not() {
    let s = Scrubber::new();
    assert_eq!(
        s.redact("Diagnosed in 1991, seen on Friday 03/14/2021.", &[], &[]),
        "Diagnosed in 1991, seen on Friday <DATE_TIME>."
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
    for f in &e.missed {
        println!("missed #{:<3} {:<14} {:?}", f.sample, f.kind, f.text);
    }
    for f in &e.spurious {
        println!("false  #{:<3} {:<14} {:?}", f.sample, f.kind, f.text);
    }
    // Measured when written: precision 0.982, recall 0.975 (0.975 and 0.635 before the
    // proper-noun, address-block and list rules). A change that loses ground fails here.
    assert!(e.precision() >= 0.97, "precision {:.3}", e.precision());
    assert!(e.recall() >= 0.96, "recall {:.3}", e.recall());
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

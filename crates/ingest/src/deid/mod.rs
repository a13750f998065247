//! De-identification before silver: HIPAA Safe Harbor on structured fields, and a PII detector
//! for free text ([`text`]).
//!
//! Structured fields ([`Deidentifier::apply`]):
//! - names, street addresses, phone, e-mail, SSN, MRN: never in a fact (see [`crate::model`]);
//! - patient, visit and record ids → keyed pseudonyms, HMAC-SHA256 under the site's pseudonym
//!   key, so re-ingesting the same export gives the same pseudonyms and nobody without the key
//!   can link them back (or across sites: every site has its own key);
//! - every date of a patient shifted by the same offset (1–365 days, earlier or later), derived
//!   with HMAC from the patient id: intervals, ages and sequences are preserved exactly;
//! - ZIP → first 3 digits, `000` for the 3-digit areas with ≤ 20,000 people (HHS list);
//! - ages over 89 → 90 (year of birth only, set so the patient is 90 at the reference date).

pub mod text;

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::model::{EventFact, Fact, Phi};
use medfed_keys::keyring::SecretKey;

/// 3-digit ZIP areas with 20,000 or fewer people (2000 Census, as HHS lists them for Safe
/// Harbor); they become `000`.
pub const RESTRICTED_ZIP3: [&str; 17] = [
    "036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878",
    "879", "884", "890", "893",
];

/// Largest date shift in days, either way.
pub const MAX_SHIFT_DAYS: i64 = 365;

/// Applies the structured rules with one site's key.
pub struct Deidentifier {
    key: SecretKey,
    reference: NaiveDate,
    scrubber: text::Scrubber,
}

impl Deidentifier {
    /// `reference` is the date ages are judged at (the ingestion date).
    pub fn new(key: SecretKey, reference: NaiveDate) -> Self {
        Self {
            key,
            reference,
            scrubber: text::Scrubber::new(),
        }
    }

    fn mac(&self, parts: &[&str]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key[..]).expect("any key length");
        for p in parts {
            mac.update(p.as_bytes());
            mac.update(&[0]);
        }
        mac.finalize().into_bytes().into()
    }

    /// A keyed pseudonym for an id of some kind (`person`, `visit`): 32 hex characters.
    pub fn pseudonym(&self, kind: &str, id: &str) -> String {
        hex::encode(&self.mac(&["pseudonym", kind, id])[..16])
    }

    /// The patient's date shift in days (never 0).
    pub fn shift_days(&self, patient: &str) -> i64 {
        let h = self.mac(&["date-shift", patient]);
        let n = u64::from_le_bytes(h[..8].try_into().expect("8 bytes"));
        let magnitude = (n % MAX_SHIFT_DAYS as u64) as i64 + 1;
        if n >> 63 == 1 { -magnitude } else { magnitude }
    }

    /// De-identifies one fact; `phi` is the patient's identifying fields (for notes).
    pub fn apply(&self, fact: Fact, phi: Option<&Phi>) -> Fact {
        let shift = Duration::days(self.shift_days(fact.patient()));
        let person = self.pseudonym("person", fact.patient());
        let dt = |t: Option<NaiveDateTime>| t.map(|t| t + shift);
        let visit = |v: Option<String>| v.map(|v| self.pseudonym("visit", &v));
        let event = |e: EventFact| EventFact {
            patient: person.clone(),
            visit: visit(e.visit),
            code: e.code,
            start: dt(e.start),
            end: dt(e.end),
        };
        match fact {
            Fact::Person(mut p) => {
                p.patient = person.clone();
                p.death = p.death.map(|d| d + shift);
                p.birth = p.birth.map(|b| b + shift);
                let at = p.death.unwrap_or(self.reference + shift);
                if let Some(b) = p.birth
                    && age(b, at) > 89
                {
                    p.birth = NaiveDate::from_ymd_opt(at.year() - 90, 1, 1);
                    p.age_capped = true;
                }
                p.zip = p.zip.as_deref().and_then(zip3);
                Fact::Person(p)
            }
            Fact::Visit(mut v) => {
                v.visit = self.pseudonym("visit", &v.visit);
                v.patient = person;
                v.start = dt(v.start);
                v.end = dt(v.end);
                Fact::Visit(v)
            }
            Fact::Condition(e) => Fact::Condition(event(e)),
            Fact::Procedure(e) => Fact::Procedure(event(e)),
            Fact::Drug(mut d) => {
                d.event = event(d.event);
                Fact::Drug(d)
            }
            Fact::Measurement(mut m) => {
                m.event = event(m.event);
                Fact::Measurement(m)
            }
            Fact::Note(mut n) => {
                let names: Vec<&str> = phi
                    .map(|p| p.names.iter().map(String::as_str).collect())
                    .unwrap_or_default();
                let identifiers: Vec<&str> = phi
                    .map(|p| {
                        p.telecom
                            .iter()
                            .chain(&p.identifiers)
                            .chain(&p.address)
                            .map(String::as_str)
                            .collect()
                    })
                    .unwrap_or_default();
                n.text = self.scrubber.redact(&n.text, &names, &identifiers);
                n.title = n
                    .title
                    .map(|t| self.scrubber.redact(&t, &names, &identifiers));
                n.patient = person;
                n.visit = visit(n.visit);
                n.date = dt(n.date);
                Fact::Note(n)
            }
        }
    }
}

/// Whole years from `birth` to `at`.
fn age(birth: NaiveDate, at: NaiveDate) -> i32 {
    let mut years = at.year() - birth.year();
    if (at.month(), at.day()) < (birth.month(), birth.day()) {
        years -= 1;
    }
    years
}

/// US ZIP → Safe Harbor 3-digit ZIP; anything that is not a US ZIP is dropped.
pub fn zip3(zip: &str) -> Option<String> {
    let digits: String = zip.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.len() != 5 {
        return None;
    }
    let z = &digits[..3];
    Some(if RESTRICTED_ZIP3.contains(&z) {
        "000".into()
    } else {
        z.into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Code, PersonFact};
    use zeroize::Zeroizing;

    fn deid(key: u8) -> Deidentifier {
        Deidentifier::new(
            Zeroizing::new([key; 32]),
            NaiveDate::from_ymd_opt(2026, 11, 25).unwrap(),
        )
    }

    fn t(y: i32, m: u32, d: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(8, 0, 0)
            .unwrap()
    }

    #[test]
    fn pseudonyms_are_keyed_and_stable() {
        let (a, b) = (deid(1), deid(2));
        assert_eq!(a.pseudonym("person", "MRN1"), a.pseudonym("person", "MRN1"));
        assert_ne!(a.pseudonym("person", "MRN1"), b.pseudonym("person", "MRN1"));
        assert_ne!(a.pseudonym("person", "X"), a.pseudonym("visit", "X"));
        assert_eq!(a.pseudonym("person", "MRN1").len(), 32);
        let shifts: Vec<i64> = (0..500).map(|i| a.shift_days(&i.to_string())).collect();
        assert!(shifts.iter().all(|s| *s != 0 && s.abs() <= MAX_SHIFT_DAYS));
        assert!(shifts.iter().any(|s| *s < 0) && shifts.iter().any(|s| *s > 0));
    }

    #[test]
    fn dates_shift_together_so_intervals_survive() {
        let d = deid(3);
        let event = |start, end| {
            Fact::Condition(EventFact {
                patient: "p1".into(),
                visit: Some("v1".into()),
                code: Code {
                    vocabulary: "SNOMED".into(),
                    code: "1".into(),
                    display: None,
                },
                start: Some(start),
                end: Some(end),
            })
        };
        let Fact::Condition(e) = d.apply(event(t(2020, 3, 1), t(2020, 3, 15)), None) else {
            panic!()
        };
        assert_eq!((e.end.unwrap() - e.start.unwrap()).num_days(), 14);
        assert_ne!(e.start, Some(t(2020, 3, 1)));
        assert_eq!(e.patient, d.pseudonym("person", "p1"));
        assert_eq!(e.visit, Some(d.pseudonym("visit", "v1")));
    }

    #[test]
    fn old_patients_become_90_and_zips_lose_two_digits() {
        let d = deid(4);
        let p = PersonFact {
            patient: "old".into(),
            birth: NaiveDate::from_ymd_opt(1920, 6, 1),
            zip: Some("03601-1234".into()),
            ..Default::default()
        };
        let Fact::Person(p) = d.apply(Fact::Person(p), None) else {
            panic!()
        };
        assert!(p.age_capped);
        let reference =
            NaiveDate::from_ymd_opt(2026, 11, 25).unwrap() + Duration::days(d.shift_days("old"));
        assert_eq!(reference.year() - p.birth.unwrap().year(), 90);
        assert_eq!(p.zip.as_deref(), Some("000"), "036 is a restricted area");
        assert_eq!(zip3("02138").as_deref(), Some("021"));
        assert_eq!(zip3("SW1A 1AA"), None);
    }
}

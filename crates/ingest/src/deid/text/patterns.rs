//! Pattern recognizers: a regex finds a shape, a validator and the words before it set the score.

use regex::Regex;

use super::Candidate;
use super::lexicon;

/// Words that, shortly before a number, say what it is.
const PHONE_CUES: &[&str] = &[
    "phone", "call", "tel", "fax", "cell", "mobile", "contact", "reach", "number", "pager", "ph",
];

struct Rule {
    kind: &'static str,
    re: Regex,
    score: f32,
    check: fn(&str, &str, usize) -> Option<f32>,
}

pub(super) struct Patterns {
    rules: Vec<Rule>,
    street_words: Regex,
}

fn any(_: &str, _: &str, _: usize) -> Option<f32> {
    Some(0.0)
}

impl Patterns {
    pub fn new() -> Self {
        let r = |s: &str| Regex::new(s).expect("recognizer regex compiles");
        let month = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)";
        let street = r"(?:street|st|road|rd|avenue|ave|lane|ln|drive|dr|boulevard|blvd|way|court|ct|place|pl|terrace|ter|circle|cir|parkway|pkwy|highway|hwy|square|sq|trail|trl|bypass|crossing|route|rte|alley|path|plaza|ridge|row|run|spur|vale|viaduct|ramp|mission|divide|pike|loop|mews|crescent|close|grove|gardens|park|heights|walk|expressway|freeway|turnpike|station|junction|center|centre|port|point|pass|mall|manor|meadows|village|ville|ranch|estates|hollow|isle|landing|summit|tunnel|wells)";
        let rules = vec![
            Rule {
                kind: "EMAIL_ADDRESS",
                re: r(r"(?i)\b[a-z0-9][a-z0-9._%+-]*@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b"),
                score: 1.0,
                check: any,
            },
            Rule {
                kind: "URL",
                re: r(r#"(?i)\b(?:https?://|www\.)[^\s<>()\[\]{}]+[^\s<>()\[\]{}.,;:!?'"]"#),
                score: 0.95,
                check: any,
            },
            Rule {
                kind: "URL",
                re: r(
                    r"(?i)\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|org|net|edu|gov|io|info|biz|co\.uk|de|fr|nl|se|pl|cz|dk|es|it)\b(?:/[^\s]*)?",
                ),
                score: 0.6,
                check: not_email_tail,
            },
            Rule {
                kind: "IP_ADDRESS",
                re: r(
                    r"\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b",
                ),
                score: 0.95,
                check: any,
            },
            Rule {
                kind: "IP_ADDRESS",
                re: r(r"(?i)\b(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}\b"),
                score: 0.9,
                check: any,
            },
            Rule {
                kind: "US_SSN",
                re: r(r"\b\d{3}-\d{2}-\d{4}\b|\b\d{3} \d{2} \d{4}\b"),
                score: 0.85,
                check: ssn,
            },
            Rule {
                kind: "US_SSN",
                re: r(r"\b\d{9}\b"),
                score: 0.0,
                check: |t, _, s| cue(t, s, &["ssn", "social security", "ss#"]).then_some(0.85),
            },
            Rule {
                kind: "CREDIT_CARD",
                re: r(r"\b\d(?:[ -]?\d){12,18}\b"),
                score: 0.0,
                check: luhn,
            },
            Rule {
                // Twelve-digit (Maestro) numbers only where a card is spoken of.
                kind: "CREDIT_CARD",
                re: r(r"\b\d(?:[ -]?\d){11}\b"),
                score: 0.0,
                check: |t, m, s| {
                    let card = cue(t, s, &["card", "cc ", "visa", "maestro", "mastercard"]);
                    card.then(|| luhn(t, m, s)).flatten()
                },
            },
            Rule {
                kind: "DATE_TIME",
                re: r(
                    r"\b(?:19|20)\d\d-(?:0?[1-9]|1[0-2])-(?:0?[1-9]|[12]\d|3[01])(?:[T ]\d\d:\d\d(?::\d\d)?)?\b",
                ),
                score: 0.9,
                check: any,
            },
            Rule {
                kind: "DATE_TIME",
                re: r(
                    r"\b(?:0?[1-9]|[12]\d|3[01])[/.-](?:0?[1-9]|[12]\d|3[01])[/.-](?:\d{4}|\d{2})\b",
                ),
                score: 0.85,
                check: any,
            },
            Rule {
                kind: "DATE_TIME",
                re: r(&format!(
                    r"(?i)\b{month}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}\b|\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{month}\.?,?\s+\d{{4}}\b|\b{month}\.?\s+(?:19|20)\d\d\b"
                )),
                score: 0.85,
                check: any,
            },
            Rule {
                kind: "DATE_TIME",
                re: r(
                    r"(?i)\b(?:born|dob|d\.o\.b\.?|date of birth|admitted|discharged)\s*(?:on|:)?\s*\d{1,2}[/.-]\d{1,2}\b",
                ),
                score: 0.7,
                check: any,
            },
            Rule {
                kind: "PHONE_NUMBER",
                re: r(
                    // Separators stay on the line: a postcode ending one line and a number opening the next
                    // are two identifiers.
                    r"(?i)(?:\+|\b00)?\d{0,3}[ \t.-]?(?:\(\d{1,4}\)|\b\d{1,4})[ \t.-]?\d{2,4}(?:[ \t.-]?\d{2,5}){1,3}(?:[ \t]?(?:x|ext\.?)[ \t]?\d{1,6})?\b",
                ),
                score: 0.0,
                check: phone,
            },
            Rule {
                kind: "MEDICAL_RECORD_NUMBER",
                re: r(
                    r"(?i)\b(?:mrn|medical record(?: number| no\.?| #)?|record (?:number|no\.?|#)|acct|account(?: number| no\.?| #)?|patient id|chart(?: number| no\.?| #)?|member id|policy(?: number| no\.?)?)\s*(?:is|:|#|no\.?)?\s*#?\s*([A-Z0-9][A-Z0-9-]{3,19})\b",
                ),
                score: 0.9,
                check: has_digit,
            },
            Rule {
                kind: "US_DRIVER_LICENSE",
                re: r(
                    r"(?i)\b(?:driver'?s?\s+licen[cs]e|licen[cs]e|dl|permit)(?:\s+(?:number|no\.?|#|id))?\s*(?:is|:|#)?\s*#?\s*([A-Z]{0,2}\d[A-Z0-9-]{4,14})\b",
                ),
                score: 0.85,
                check: has_digit,
            },
            Rule {
                kind: "ADDRESS",
                // An optional building number first: "19 1755 Nelson Mandela Drive".
                re: r(&format!(
                    r"(?i)\b(?:\d{{1,4}}[ \t]+)?\d{{1,6}}[a-z]?,?[ \t]+(?:[\p{{L}}'.-]+[ \t]+){{0,4}}{street}\b\.?"
                )),
                score: 0.85,
                check: any,
            },
            Rule {
                kind: "ADDRESS",
                re: r(
                    r"(?i)\b(?:apt|apartment|suite|ste|unit|room|rm|floor|fl|p\.?\s?o\.?\s+box|box)\.?\s*#?\s*\d+[a-z]?\b",
                ),
                score: 0.8,
                check: any,
            },
            Rule {
                kind: "ADDRESS",
                re: r(
                    r"(?i)\b(?:\d{1,4}[ \t]+)?\p{L}+(?:straat|strasse|straße|weg|gasse|gade|vej|gatan|vägen|laan|plein|allee|platz|kade|dreef|steeg|gracht|ulica|utca|tér)\s+\d{1,5}[a-z]?\b",
                ),
                score: 0.85,
                check: any,
            },
            Rule {
                kind: "ADDRESS",
                re: r(
                    r"(?i)\b(?:\d{1,4}[ \t]+)?\d{1,5},?\s+(?:rue|via|viale|calle|avenida|rua|ul\.?|ulica|chemin|route de|plaza de)\s+(?:[\p{L}'-]+\s?){1,4}",
                ),
                score: 0.85,
                check: any,
            },
            Rule {
                kind: "ADDRESS",
                re: r(
                    r"(?i)\b(?:rue|via|viale|calle|avenida|rua|ulica|chemin)\s+(?:[\p{L}'-]+\s){1,3}\d{1,5}\b",
                ),
                score: 0.8,
                check: any,
            },
            Rule {
                // Continental form, number after the street: "87 Jakobi 69", "46 velký průhon 426".
                kind: "ADDRESS",
                re: r(r"\b\d{1,5}[ \t]+(?:[\p{L}'.-]+[ \t]+){1,4}\d{1,5}[a-z]?\b"),
                score: 0.0,
                check: street_words,
            },
            Rule {
                // Building and street number before a street name: "63 30 N. Stadion".
                kind: "ADDRESS",
                re: r(
                    r"\b\d{1,4}[ \t]+\d{1,5}[ \t]+(?:[NSEW]\.?[ \t]+)?\p{Lu}[\p{L}'.-]*(?:[ \t]+\p{Lu}[\p{L}'.-]*){0,3}",
                ),
                score: 0.0,
                check: street_words,
            },
            Rule {
                kind: "IBAN_CODE",
                re: r(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"),
                score: 0.0,
                check: iban,
            },
            Rule {
                // Four-digit and Swedish/Czech "860 13" postcodes, after their label only.
                kind: "ZIP_CODE",
                re: r(r"\b\d{4}\b|\b\d{3} \d{2}\b"),
                score: 0.0,
                check: |t, _, s| cue(t, s, &["zip", "postal", "postcode"]).then_some(0.8),
            },
            Rule {
                kind: "ZIP_CODE",
                re: r(r"\b\d{5}(?:-\d{4})?\b"),
                score: 0.0,
                check: |t, _, s| {
                    if cue(t, s, &["zip", "postal", "postcode"]) {
                        Some(0.85)
                    } else {
                        None
                    }
                },
            },
        ];
        Self {
            rules,
            street_words: r(&format!(
                r"(?i)\b{street}\b|\b(?:apt|suite|unit|address|lives at)\b|\b[A-Z]{{2}}\s*$|,\s*$"
            )),
        }
    }

    pub fn find(&self, text: &str, out: &mut Vec<Candidate>) {
        for rule in &self.rules {
            for caps in rule.re.captures_iter(text) {
                // A rule with a capture group reports the group (the number after its label).
                let m = caps
                    .get(1)
                    .unwrap_or_else(|| caps.get(0).expect("whole match"));
                // Separators a pattern may take in at its edges are not part of the identifier.
                let edge = |c: char| c.is_whitespace() || matches!(c, '.' | '-' | ',');
                let trimmed = m.as_str().trim_start_matches(edge);
                let start = m.end() - trimmed.len();
                let end = start + trimmed.trim_end_matches(char::is_whitespace).len();
                if start >= end {
                    continue;
                }
                let Some(bonus) = (rule.check)(text, &text[start..end], start) else {
                    continue;
                };
                out.push(Candidate {
                    start,
                    end,
                    kind: rule.kind,
                    score: (rule.score + bonus).min(1.0),
                });
            }
        }
        self.zip_after_address(text, out);
        address_block(text, out);
    }

    /// A bare 5-digit number is a ZIP code when an address (or a state code) precedes it closely.
    fn zip_after_address(&self, text: &str, out: &mut Vec<Candidate>) {
        static ZIP: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
        let zip = ZIP.get_or_init(|| Regex::new(r"\b\d{5}(?:-\d{4})?\b").expect("zip regex"));
        for m in zip.find_iter(text) {
            let before = &text[floor(text, m.start().saturating_sub(60))..m.start()];
            let near_address = out
                .iter()
                .any(|c| c.kind == "ADDRESS" && c.end <= m.start() && m.start() - c.end < 80);
            if near_address || self.street_words.is_match(before) {
                out.push(Candidate {
                    start: m.start(),
                    end: m.end(),
                    kind: "ZIP_CODE",
                    score: 0.75,
                });
            }
        }
    }
}

/// The lines after a street line that finish its address: town, region, country, postcode,
/// each short and without a sentence's punctuation ("\n Bryanston\n Rwanda 02438"). At most
/// four such lines, a blank line allowed between them.
fn address_block(text: &str, out: &mut Vec<Candidate>) {
    let streets: Vec<(usize, usize)> = out
        .iter()
        .filter(|c| c.kind == "ADDRESS" && c.score >= 0.5)
        .map(|c| (c.start, c.end))
        .collect();
    for (start, street_end) in streets {
        let line_break = text[street_end..]
            .find('\n')
            .map_or(text.len(), |b| street_end + b);
        // The rest of the street's line: a town after a comma ("… 426, opocnice"), a unit, or
        // nothing.
        let rest = text[street_end..line_break].trim_end();
        let mut end = street_end;
        let rest_words = rest.trim_start_matches([',', ' ']);
        if !rest_words.is_empty() {
            if !address_line(rest_words) {
                continue;
            }
            end = street_end + rest.len();
        }
        let mut at = line_break + 1;
        let (mut lines, mut blanks) = (0, 0);
        while lines < 4 && at < text.len() {
            // (`lines` counts the lines taken after the street's own.)
            let line_len = text[at..].find('\n').unwrap_or(text.len() - at);
            let line = text[at..at + line_len].trim();
            if line.is_empty() {
                blanks += 1;
                if blanks > 1 {
                    break;
                }
            } else {
                if !address_line(line) {
                    break;
                }
                end = at + text[at..].len() - text[at..].trim_start().len() + line.len();
                lines += 1;
                blanks = 0;
            }
            at += line_len + 1;
        }
        if end > street_end {
            // As sure as the surest part inside it, so that it replaces its parts.
            let score = out
                .iter()
                .filter(|c| c.start >= start && c.end <= end)
                .map(|c| c.score)
                .fold(0.7, f32::max);
            out.push(Candidate {
                start,
                end,
                kind: "ADDRESS",
                score,
            });
        }
    }
}

/// A line that can be part of an address: a few words and numbers, no sentence, label or phone.
/// A bullet before it (`-`, `*`, `•`, or the `???` a lost one leaves) does not count.
fn address_line(line: &str) -> bool {
    let line = line.trim_start_matches(['?', '-', '*', '•', ' ', '\t']);
    let words = line.split_whitespace().count();
    let digits = line.chars().filter(char::is_ascii_digit).count();
    line.chars().count() <= 40
        && words <= 5
        && digits <= 6
        && !line.contains([':', '?', '!', '@', ';'])
        && !line.ends_with('.')
}

/// Largest char boundary at or below `i`.
pub(super) fn floor(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// True when one of `cues` occurs in the 40 bytes before `start` (case-insensitive).
pub(super) fn cue(text: &str, start: usize, cues: &[&str]) -> bool {
    let before = text[floor(text, start.saturating_sub(40))..start].to_lowercase();
    cues.iter().any(|c| before.contains(c))
}

/// A street between numbers: some word of it a name (capitalised, or no English word) and none
/// a unit or a quantity, so that "take 2 tablets every 6" or "2 Tylenol 500" is no address.
fn street_words(_: &str, m: &str, _: usize) -> Option<f32> {
    const QUANTITIES: &[&str] = &[
        "mg", "mcg", "g", "kg", "ml", "l", "mmol", "mmhg", "bpm", "units", "iu", "tablets", "tabs",
        "times", "hours", "hrs", "days", "weeks", "months", "years", "x", "of", "to", "and", "or",
        "per", "at", "in", "on", "the", "a",
    ];
    let words: Vec<String> = m
        .split(|c: char| c.is_whitespace())
        .filter(|w| w.chars().any(char::is_alphabetic))
        .map(|w| w.trim_matches(|c: char| !c.is_alphabetic()).to_lowercase())
        .collect();
    let name = m
        .split_whitespace()
        .filter(|w| w.chars().any(char::is_alphabetic))
        .any(|w| {
            let lower = w.trim_matches(|c: char| !c.is_alphabetic()).to_lowercase();
            w.chars().next().is_some_and(char::is_uppercase) || !lexicon::known_word(&lower)
        });
    let quantity = words.iter().any(|w| QUANTITIES.contains(&w.as_str()))
        || words.iter().all(|w| lexicon::known_word(w));
    (name && !quantity).then_some(0.75)
}

/// An IBAN whose check digits hold (ISO 13616: the rearranged number mod 97 is 1).
fn iban(_: &str, m: &str, _: usize) -> Option<f32> {
    let compact: String = m.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return None;
    }
    let rearranged = compact[4..].chars().chain(compact[..4].chars());
    let mut rem: u32 = 0;
    for c in rearranged {
        let v = c.to_digit(36)?;
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    (rem == 1).then_some(0.95)
}

fn has_digit(_: &str, m: &str, _: usize) -> Option<f32> {
    m.bytes().any(|b| b.is_ascii_digit()).then_some(0.0)
}

fn not_email_tail(text: &str, _: &str, start: usize) -> Option<f32> {
    // `dayrep.com` inside `x@dayrep.com` is the e-mail's, not a URL.
    (start == 0 || !matches!(text.as_bytes()[start - 1], b'@' | b'.')).then_some(0.0)
}

fn ssn(_: &str, m: &str, _: usize) -> Option<f32> {
    let digits: String = m.chars().filter(char::is_ascii_digit).collect();
    let (area, group, serial) = (&digits[..3], &digits[3..5], &digits[5..]);
    // Never-issued numbers are still written in records (Synthea uses 999-xx-xxxx): lower score.
    if area == "000" || group == "00" || serial == "0000" {
        return None;
    }
    Some(if area == "666" || area.starts_with('9') {
        -0.1
    } else {
        0.1
    })
}

fn luhn(_: &str, m: &str, _: usize) -> Option<f32> {
    let digits: Vec<u32> = m.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(12..=19).contains(&digits.len()) {
        return None;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10).then_some(0.95)
}

fn phone(text: &str, m: &str, start: usize) -> Option<f32> {
    // The extension (`x38548`, `ext. 12`) is not part of the number's length.
    let number = m.split(['x', 'X']).next().unwrap_or(m);
    let number = number.split("ext").next().unwrap_or(number);
    let digits = number.chars().filter(char::is_ascii_digit).count();
    if !(7..=15).contains(&digits) {
        return None;
    }
    let separators = m
        .chars()
        .filter(|c| matches!(c, ' ' | '-' | '.' | '(' | ')' | '+'))
        .count();
    let plain_run = m.chars().all(|c| c.is_ascii_digit());
    // A date or a decimal number is not a phone number.
    if m.contains('/') || (m.matches('.').count() == 1 && !m.contains(' ') && !m.contains('-')) {
        return None;
    }
    let mut score: f32 = if m.starts_with('+') || m.starts_with('(') || m.contains(')') {
        0.75
    } else if separators >= 2 {
        0.65
    } else if separators == 1 {
        0.5
    } else if plain_run {
        0.3
    } else {
        0.4
    };
    if m.contains('x') || m.contains("ext") {
        score += 0.1;
    }
    if cue(text, start, PHONE_CUES) {
        score += 0.25;
    }
    Some(score)
}

//! A PII detector for free-text notes.
//!
//! Each recognizer proposes typed spans with a confidence: patterns with validation (e-mail,
//! URL, IP, SSN, credit card with Luhn, phone, dates, MRN/account and licence numbers after their
//! label, street addresses, ZIP codes near an address) in [`patterns`], and dictionaries with
//! context for people and places in [`names`] (US Census given names and surnames, titles,
//! "name is"/"seen by" cues, and the patient's own names and numbers when de-identifying a
//! record). Overlaps are resolved by score, then length; spans at or above the threshold are
//! replaced by typed placeholders (`<PERSON>`). Type names follow Presidio where it has one.
//!
//! Offsets in [`Span`] are Unicode scalar values (characters), as Presidio reports them.
//!
//! # Example
//! ```
//! use medfed_ingest::deid::text::Scrubber;
//! let s = Scrubber::new();
//! let out = s.redact("Seen by Dr. Maria Lopez, call 617-555-0199.", &[], &[]);
//! assert_eq!(out, "Seen by Dr. <PERSON>, call <PHONE_NUMBER>.");
//! ```

pub mod eval;
mod lexicon;
mod names;
mod patterns;

use serde::Serialize;

/// A detected identifier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Span {
    /// First character (Unicode scalar index).
    pub start: usize,
    /// One past the last character.
    pub end: usize,
    /// Entity type, e.g. `PERSON`, `PHONE_NUMBER`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Confidence in 0–1.
    pub score: f32,
}

/// A candidate in byte offsets, before overlap resolution.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate {
    pub start: usize,
    pub end: usize,
    pub kind: &'static str,
    pub score: f32,
}

/// Spans below this score are not reported or redacted.
pub const DEFAULT_THRESHOLD: f32 = 0.5;

/// The detector. Build once (dictionaries and regexes compile in ~20 ms), use from many threads.
pub struct Scrubber {
    patterns: patterns::Patterns,
    names: names::Names,
    threshold: f32,
}

impl Default for Scrubber {
    fn default() -> Self {
        Self::new()
    }
}

impl Scrubber {
    /// The detector with the default threshold.
    pub fn new() -> Self {
        Self {
            patterns: patterns::Patterns::new(),
            names: names::Names::new(),
            threshold: DEFAULT_THRESHOLD,
        }
    }

    /// Same detector, another threshold (lower: more recall, less precision).
    pub fn with_threshold(mut self, threshold: f32) -> Self {
        self.threshold = threshold;
        self
    }

    /// Detected identifiers, sorted, non-overlapping. `names` and `identifiers` are the
    /// patient's own (from the structured record), always found when they occur.
    pub fn detect(&self, text: &str, names: &[&str], identifiers: &[&str]) -> Vec<Span> {
        let mut found = Vec::new();
        self.patterns.find(text, &mut found);
        self.names.find(text, names, &mut found);
        known(text, identifiers, &mut found);
        let kept = resolve(found, self.threshold);
        to_chars(text, kept)
    }

    /// The text with every detected identifier replaced by `<TYPE>`.
    pub fn redact(&self, text: &str, names: &[&str], identifiers: &[&str]) -> String {
        redact_spans(text, &self.detect(text, names, identifiers))
    }
}

/// Replaces spans (character offsets, sorted, non-overlapping) by `<TYPE>`.
pub fn redact_spans(text: &str, spans: &[Span]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut spans = spans.iter().peekable();
    let mut skip_until = 0;
    for (i, c) in text.chars().enumerate() {
        if let Some(s) = spans.peek()
            && s.start == i
        {
            out.push('<');
            out.push_str(s.kind);
            out.push('>');
            skip_until = s.end;
            spans.next();
        }
        if i >= skip_until {
            out.push(c);
        }
    }
    out
}

/// The patient's own identifiers (phone, MRN, street) wherever they occur verbatim.
fn known(text: &str, identifiers: &[&str], out: &mut Vec<Candidate>) {
    for id in identifiers.iter().filter(|s| s.chars().count() >= 4) {
        let mut from = 0;
        while let Some(pos) = text[from..].find(id) {
            let start = from + pos;
            out.push(Candidate {
                start,
                end: start + id.len(),
                kind: "ID",
                score: 1.0,
            });
            from = start + id.len();
        }
    }
}

/// Keeps the best of overlapping candidates: higher score, then longer.
fn resolve(mut c: Vec<Candidate>, threshold: f32) -> Vec<Candidate> {
    c.retain(|c| c.score >= threshold && c.end > c.start);
    c.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then((b.end - b.start).cmp(&(a.end - a.start)))
            .then(a.start.cmp(&b.start))
    });
    let mut kept: Vec<Candidate> = Vec::new();
    for cand in c {
        if kept
            .iter()
            .all(|k| cand.end <= k.start || cand.start >= k.end)
        {
            kept.push(cand);
        }
    }
    kept.sort_by_key(|k| k.start);
    kept
}

/// Byte offsets → character offsets.
fn to_chars(text: &str, spans: Vec<Candidate>) -> Vec<Span> {
    if text.is_ascii() {
        return spans
            .into_iter()
            .map(|s| Span {
                start: s.start,
                end: s.end,
                kind: s.kind,
                score: s.score,
            })
            .collect();
    }
    // One pass over the text: byte offset → character offset for every span boundary.
    let mut bounds: Vec<usize> = spans.iter().flat_map(|s| [s.start, s.end]).collect();
    bounds.sort_unstable();
    bounds.dedup();
    let mut chars_at = std::collections::HashMap::with_capacity(bounds.len());
    let mut next = bounds.iter().peekable();
    for (chars, (byte, _)) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
        .enumerate()
    {
        while let Some(&&b) = next.peek() {
            if b > byte {
                break;
            }
            chars_at.insert(b, chars);
            next.next();
        }
    }
    spans
        .into_iter()
        .map(|s| Span {
            start: chars_at[&s.start],
            end: chars_at[&s.end],
            kind: s.kind,
            score: s.score,
        })
        .collect()
}

#[cfg(test)]
mod tests;

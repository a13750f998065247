//! Precision and recall of the detector on a labelled set (Presidio-research's JSON format:
//! `[{"full_text", "spans": [{"entity_type", "start_position", "end_position"}]}]`).
//!
//! A labelled identifier counts as caught when a detected span overlaps it, whatever type the
//! detector gave it: for de-identification what matters is that it was removed. A detected span
//! is a true positive when it overlaps some labelled identifier. Offsets are characters.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Scrubber;

/// One labelled text.
#[derive(Debug, Clone, Deserialize)]
pub struct Sample {
    /// The text.
    pub full_text: String,
    /// Its identifiers.
    pub spans: Vec<Labelled>,
}

/// One labelled identifier.
#[derive(Debug, Clone, Deserialize)]
pub struct Labelled {
    /// Entity type, as the set names it.
    pub entity_type: String,
    /// First character.
    pub start_position: usize,
    /// One past the last character.
    pub end_position: usize,
}

/// Recall of one entity type.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TypeScore {
    /// Labelled identifiers of this type.
    pub labelled: usize,
    /// Of those, overlapped by a detection.
    pub caught: usize,
}

impl TypeScore {
    /// caught / labelled.
    pub fn recall(&self) -> f64 {
        if self.labelled == 0 {
            1.0
        } else {
            self.caught as f64 / self.labelled as f64
        }
    }
}

/// The scores on a set.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Evaluation {
    /// Per labelled entity type.
    pub types: BTreeMap<String, TypeScore>,
    /// Spans detected.
    pub detected: usize,
    /// Detected spans overlapping a labelled identifier.
    pub correct: usize,
    /// Labelled identifiers no detection overlapped: what to work on for recall.
    #[serde(skip)]
    pub missed: Vec<Finding>,
    /// Detections overlapping no labelled identifier: what to work on for precision.
    #[serde(skip)]
    pub spurious: Vec<Finding>,
}

/// One labelled identifier missed, or one detection that was not an identifier.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Index of the sample in the set.
    pub sample: usize,
    /// Entity type (the label's for a miss, the detector's for a spurious detection).
    pub kind: String,
    /// The characters of the span.
    pub text: String,
}

/// Entity types of the labelled sets that HIPAA Safe Harbor does not count as identifiers of a
/// person: an organisation's name, a courtesy title, a nationality, religion or political group
/// (presidio-evaluator's NRP) and an age (only ages over 89 are, and `deid` caps those in the
/// structured record). Reported, but left out of [`Evaluation::recall`].
pub const NOT_IDENTIFIERS: [&str; 4] = ["ORGANIZATION", "TITLE", "NRP", "AGE"];

impl Evaluation {
    /// correct / detected.
    pub fn precision(&self) -> f64 {
        if self.detected == 0 {
            1.0
        } else {
            self.correct as f64 / self.detected as f64
        }
    }

    /// Recall over every identifier type (all but [`NOT_IDENTIFIERS`]).
    pub fn recall(&self) -> f64 {
        let (mut labelled, mut caught) = (0, 0);
        for (t, s) in &self.types {
            if !NOT_IDENTIFIERS.contains(&t.as_str()) {
                labelled += s.labelled;
                caught += s.caught;
            }
        }
        if labelled == 0 {
            1.0
        } else {
            caught as f64 / labelled as f64
        }
    }
}

/// Parses a labelled set.
pub fn load(json: &str) -> Result<Vec<Sample>, serde_json::Error> {
    serde_json::from_str(json)
}

/// Scores `scrubber` on `samples`.
pub fn evaluate(scrubber: &Scrubber, samples: &[Sample]) -> Evaluation {
    let overlaps = |a: (usize, usize), b: (usize, usize)| a.0 < b.1 && b.0 < a.1;
    let mut e = Evaluation::default();
    for (n, s) in samples.iter().enumerate() {
        let found = scrubber.detect(&s.full_text, &[], &[]);
        let chars = |start: usize, end: usize| -> String {
            s.full_text.chars().skip(start).take(end - start).collect()
        };
        for l in &s.spans {
            let t = e.types.entry(l.entity_type.clone()).or_default();
            t.labelled += 1;
            if found
                .iter()
                .any(|f| overlaps((f.start, f.end), (l.start_position, l.end_position)))
            {
                t.caught += 1;
            } else {
                e.missed.push(Finding {
                    sample: n,
                    kind: l.entity_type.clone(),
                    text: chars(l.start_position, l.end_position),
                });
            }
        }
        e.detected += found.len();
        for f in &found {
            let labelled = s
                .spans
                .iter()
                .any(|l| overlaps((f.start, f.end), (l.start_position, l.end_position)));
            if labelled {
                e.correct += 1;
            } else {
                e.spurious.push(Finding {
                    sample: n,
                    kind: f.kind.to_string(),
                    text: chars(f.start, f.end),
                });
            }
        }
    }
    e
}

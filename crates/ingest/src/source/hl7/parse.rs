//! An HL7 v2.x message parser: segments, fields, repetitions, components, sub-components and
//! escape sequences, with the delimiters each message declares in MSH-1/MSH-2.
//!
//! Written here rather than taken from crates.io: the one full-featured HL7 v2 crate is AGPL,
//! which a hospital's own modifications of medfed could not accept. The grammar is small;
//! what is easy to get wrong (MSH numbering, escapes, delimiters other than `|^~\&`, `\r` vs `\n`
//! segment ends, Z-segments) is covered by tests and a fuzz target.

/// The delimiters of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    pub field: char,
    pub component: char,
    pub repetition: char,
    pub escape: char,
    pub subcomponent: char,
}

impl Default for Delimiters {
    fn default() -> Self {
        Self {
            field: '|',
            component: '^',
            repetition: '~',
            escape: '\\',
            subcomponent: '&',
        }
    }
}

/// A parsed message: segments in order.
#[derive(Debug, Clone)]
pub struct Message {
    delimiters: Delimiters,
    segments: Vec<Segment>,
}

/// One segment: its id and raw fields (field 0 is the id).
#[derive(Debug, Clone)]
pub struct Segment {
    fields: Vec<String>,
    delimiters: Delimiters,
}

/// Why a message could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("message does not start with an MSH segment")]
    NoMsh,
    #[error("MSH segment is truncated: no encoding characters")]
    Truncated,
    #[error("encoding characters `{0}` repeat a delimiter")]
    BadDelimiters(String),
    #[error("segment {0} has an invalid id `{1}`")]
    BadSegment(usize, String),
}

impl Message {
    /// Parses one message (segments separated by `\r`, `\n` or `\r\n`).
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let text = text.trim_start_matches('\u{feff}').trim_start();
        let rest = text.strip_prefix("MSH").ok_or(ParseError::NoMsh)?;
        let mut chars = rest.chars();
        let field = chars.next().ok_or(ParseError::Truncated)?;
        let enc: String = chars.take_while(|&c| c != field).collect();
        let e: Vec<char> = enc.chars().collect();
        if e.len() < 3 || field.is_alphanumeric() {
            return Err(ParseError::Truncated);
        }
        let d = Delimiters {
            field,
            component: e[0],
            repetition: e[1],
            escape: e[2],
            subcomponent: e.get(3).copied().unwrap_or('&'),
        };
        let mut all = vec![d.field, d.component, d.repetition, d.escape, d.subcomponent];
        all.sort_unstable();
        all.dedup();
        if all.len() != 5 || all.iter().any(|c| c.is_alphanumeric() || c.is_whitespace()) {
            return Err(ParseError::BadDelimiters(enc));
        }
        let mut segments = Vec::new();
        for (i, line) in text.split(['\r', '\n']).enumerate() {
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            let mut fields: Vec<String> = line.split(d.field).map(str::to_string).collect();
            let id = &fields[0];
            if id.len() != 3
                || !id
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            {
                return Err(ParseError::BadSegment(i + 1, id.chars().take(8).collect()));
            }
            if id == "MSH" {
                // MSH-1 is the field separator itself, so MSH numbering is shifted by one.
                fields.insert(1, d.field.to_string());
            }
            segments.push(Segment {
                fields,
                delimiters: d,
            });
        }
        Ok(Self {
            delimiters: d,
            segments,
        })
    }

    /// Delimiters declared in MSH.
    pub fn delimiters(&self) -> Delimiters {
        self.delimiters
    }

    /// All segments.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The first segment with this id.
    pub fn segment(&self, id: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.id() == id)
    }

    /// Message type and trigger, e.g. `("ADT", "A01")`, from MSH-9.
    pub fn kind(&self) -> (String, String) {
        let msh = self.segment("MSH");
        let get = |c| msh.map(|s| s.component(9, c)).unwrap_or_default();
        (get(1), get(2))
    }

    /// Message control id (MSH-10), echoed in the ACK.
    pub fn control_id(&self) -> String {
        self.segment("MSH").map(|s| s.value(10)).unwrap_or_default()
    }
}

impl Segment {
    /// Segment id (`PID`, `OBX`, `ZPI`, …).
    pub fn id(&self) -> &str {
        &self.fields[0]
    }

    /// Raw field `n` (1-based, HL7 numbering), empty when absent.
    pub fn raw(&self, n: usize) -> &str {
        self.fields.get(n).map(String::as_str).unwrap_or("")
    }

    /// Repetitions of field `n`, raw.
    pub fn repetitions(&self, n: usize) -> impl Iterator<Item = &str> {
        let raw = self.raw(n);
        raw.split(self.delimiters.repetition)
            .filter(move |_| !raw.is_empty())
    }

    /// Component `c` (1-based) of the first repetition of field `n`, unescaped.
    pub fn component(&self, n: usize, c: usize) -> String {
        self.repetitions(n)
            .next()
            .map(|r| component_of(r, c, &self.delimiters))
            .unwrap_or_default()
    }

    /// The whole first repetition of field `n`'s first component, unescaped (the common case of a
    /// simple value).
    pub fn value(&self, n: usize) -> String {
        self.component(n, 1)
    }

    /// The delimiters.
    pub fn delimiters(&self) -> &Delimiters {
        &self.delimiters
    }
}

/// Component `c` (1-based) of one repetition, with its first sub-component, unescaped.
pub fn component_of(repetition: &str, c: usize, d: &Delimiters) -> String {
    let comp = repetition
        .split(d.component)
        .nth(c.saturating_sub(1))
        .unwrap_or("");
    let sub = comp.split(d.subcomponent).next().unwrap_or("");
    unescape(sub, d)
}

/// Resolves `\F\ \S\ \T\ \R\ \E\`, `\Xhh..\` and formatting escapes (`\.br\` → newline).
pub fn unescape(s: &str, d: &Delimiters) -> String {
    if !s.contains(d.escape) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find(d.escape) {
        out.push_str(&rest[..start]);
        let after = &rest[start + d.escape.len_utf8()..];
        let Some(end) = after.find(d.escape) else {
            // A lone escape character: keep it as written.
            out.push_str(&rest[start..]);
            return out;
        };
        let seq = &after[..end];
        match seq {
            "F" => out.push(d.field),
            "S" => out.push(d.component),
            "T" => out.push(d.subcomponent),
            "R" => out.push(d.repetition),
            "E" => out.push(d.escape),
            ".br" => out.push('\n'),
            s if s.starts_with('X') => {
                let bytes = hex::decode(&s[1..]).unwrap_or_default();
                out.push_str(&String::from_utf8_lossy(&bytes));
            }
            // Highlighting, character-set switches and unknown sequences carry no text.
            _ => {}
        }
        rest = &after[end + d.escape.len_utf8()..];
    }
    out.push_str(rest);
    out
}

/// Splits a file or stream into messages: each starts at an `MSH` at the start of a line.
pub fn split_messages(text: &str) -> Vec<&str> {
    let mut starts: Vec<usize> = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("MSH") {
        let at = i + pos;
        let line_start = at == 0
            || matches!(bytes[at - 1], b'\r' | b'\n')
            || text[..at].trim_start_matches('\u{feff}').trim().is_empty();
        if line_start {
            starts.push(at);
        }
        i = at + 3;
    }
    if starts.is_empty() {
        return if text.trim().is_empty() {
            vec![]
        } else {
            vec![text]
        };
    }
    if !text[..starts[0]]
        .trim_start_matches('\u{feff}')
        .trim()
        .is_empty()
    {
        starts.insert(0, 0);
    }
    starts
        .iter()
        .zip(starts.iter().skip(1).chain(std::iter::once(&text.len())))
        .map(|(&a, &b)| &text[a..b])
        .filter(|m| !m.trim().is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADT: &str = "MSH|^~\\&|App|Fac|||20050110045504+0700||ADT^A01|599102|P|2.3\rPID|1||10006579^^^1^MR^1~123^^^SSA^SS||DUCK^DONALD^D||19241010|M\rZPI|custom|stuff^here\r";

    #[test]
    fn fields_components_repetitions_and_msh_numbering() {
        let m = Message::parse(ADT).unwrap();
        assert_eq!(m.kind(), ("ADT".to_string(), "A01".to_string()));
        assert_eq!(m.control_id(), "599102");
        let pid = m.segment("PID").unwrap();
        assert_eq!(pid.value(3), "10006579");
        assert_eq!(pid.component(3, 5), "MR");
        assert_eq!(pid.repetitions(3).count(), 2);
        assert_eq!(pid.component(5, 2), "DONALD");
        assert_eq!(pid.value(99), "");
        assert_eq!(m.segment("ZPI").unwrap().component(2, 2), "here");
    }

    #[test]
    fn escapes_and_other_delimiters() {
        let d = Delimiters::default();
        assert_eq!(
            unescape("a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f", &d),
            "a|b^c&d~e\\f"
        );
        assert_eq!(unescape("line\\.br\\two \\X41\\", &d), "line\ntwo A");
        assert_eq!(unescape("dangling \\", &d), "dangling \\");
        let m = Message::parse("MSH#:-!@#x#y\nPID#1##id:a:b#").unwrap();
        assert_eq!(m.segment("PID").unwrap().component(3, 2), "a");
    }

    #[test]
    fn truncated_and_garbage_are_errors_not_panics() {
        assert_eq!(Message::parse("MSH").unwrap_err(), ParseError::Truncated);
        assert_eq!(Message::parse("PID|1").unwrap_err(), ParseError::NoMsh);
        assert!(Message::parse("MSH|^^\\&|").is_err());
        assert!(matches!(
            Message::parse("MSH|^~\\&|a\rpid lower"),
            Err(ParseError::BadSegment(2, _))
        ));
    }

    #[test]
    fn splits_files_of_several_messages() {
        let two = format!("{ADT}\n{ADT}");
        assert_eq!(split_messages(&two).len(), 2);
        assert_eq!(split_messages("\u{feff}MSH|^~\\&|x").len(), 1);
        assert_eq!(split_messages("junk\nMSH|^~\\&|x").len(), 2);
    }
}

//! People and places: dictionaries plus the context that makes a word a name.
//!
//! Given names and surnames are the US Census Bureau's 1990 lists (public domain; 5,163 given
//! names, the 30,000 most frequent surnames). A dictionary word alone is weak evidence (Rose,
//! Grant and Will are words too, listed in `common_words.txt`); a title before it, a second name
//! beside it, capitalisation mid-sentence and cues such as "seen by" or "daughter" raise the score.

use std::collections::HashSet;
use std::sync::LazyLock;

use super::Candidate;
use super::patterns::cue;

static FIRST: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| words(include_str!("../../../data/first_names.txt")));
static LAST: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| words(include_str!("../../../data/surnames.txt")));
static COMMON: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| words(include_str!("../../../data/common_words.txt")));
static PLACES: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| words(include_str!("../../../data/places.txt")));

const TITLES: &[&str] = &[
    "mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "madam", "rev", "nurse", "doctor",
];
const SUFFIXES: &[&str] = &[
    "md", "jr", "sr", "phd", "rn", "np", "pa", "do", "ii", "iii", "iv",
];
const PERSON_CUES: &[&str] = &[
    "name",
    "dear",
    "patient",
    "pt ",
    "seen by",
    "spoke",
    "husband",
    "wife",
    "son",
    "daughter",
    "mother",
    "father",
    "brother",
    "sister",
    "friend",
    "signed",
    "attn",
    "cc:",
    "contact",
    "ask for",
    "with ",
    "by ",
    "from ",
    "accounts with",
    "per ",
];
const PLACE_CUES: &[&str] = &[
    "lives in",
    "live in",
    "born in",
    "moved to",
    "from ",
    "city of",
    "town of",
    "village of",
    "resident of",
    "located in",
    "near ",
];

fn words(text: &'static str) -> HashSet<&'static str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

pub(super) struct Names;

#[derive(Debug, Clone)]
struct Token<'a> {
    start: usize,
    end: usize,
    text: &'a str,
    lower: String,
    capitalised: bool,
    sentence_start: bool,
    /// Only spaces (at most two, no line break) between this token and the previous one.
    joined: bool,
}

impl Names {
    pub fn new() -> Self {
        // Touch the dictionaries so the first note does not pay for loading them.
        let _ = (FIRST.len(), LAST.len(), COMMON.len(), PLACES.len());
        Self
    }

    pub fn find(&self, text: &str, own: &[&str], out: &mut Vec<Candidate>) {
        let tokens = tokenize(text);
        let own: HashSet<String> = own
            .iter()
            .flat_map(|n| n.split_whitespace())
            .map(|n| {
                n.trim_matches(|c: char| !c.is_alphanumeric())
                    .to_lowercase()
            })
            .filter(|n| n.chars().count() >= 2)
            .collect();
        let mut i = 0;
        while i < tokens.len() {
            if let Some((first, end, score)) = person_at(text, &tokens, i, &own) {
                out.push(Candidate {
                    start: tokens[first].start,
                    end: tokens[end].end,
                    kind: "PERSON",
                    score,
                });
                i = end + 1;
                continue;
            }
            if let Some((end, score)) = place_at(text, &tokens, i) {
                out.push(Candidate {
                    start: tokens[i].start,
                    end: tokens[end].end,
                    kind: "LOCATION",
                    score,
                });
                i = end + 1;
                continue;
            }
            i += 1;
        }
    }
}

fn tokenize<'a>(text: &'a str) -> Vec<Token<'a>> {
    let mut tokens: Vec<Token<'a>> = Vec::new();
    let mut start = None;
    let mut last_end = 0;
    let push = |s: usize, e: usize, last_end: &mut usize, tokens: &mut Vec<Token<'a>>| {
        let word = &text[s..e];
        let gap = &text[*last_end..s];
        let prev = gap
            .trim_end_matches([' ', '\t', '"', '(', '\''])
            .chars()
            .last();
        let sentence_start =
            tokens.is_empty() || gap.contains('\n') || matches!(prev, Some('.' | '!' | '?' | ':'));
        let joined = !tokens.is_empty()
            && !gap.is_empty()
            && gap.len() <= 2
            && gap.chars().all(|c| c == ' ');
        let first = word.chars().next().unwrap_or(' ');
        tokens.push(Token {
            start: s,
            end: e,
            text: word,
            lower: word.to_lowercase(),
            capitalised: first.is_uppercase(),
            sentence_start,
            joined,
        });
        *last_end = e;
    };
    for (i, c) in text.char_indices() {
        let part = c.is_alphabetic() || (start.is_some() && matches!(c, '\'' | '-'));
        match (part, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                let e = trim_tail(text, s, i);
                push(s, e, &mut last_end, &mut tokens);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        let e = trim_tail(text, s, text.len());
        push(s, e, &mut last_end, &mut tokens);
    }
    tokens
}

/// Drops a trailing apostrophe or hyphen (`Jones'`).
fn trim_tail(text: &str, s: usize, mut e: usize) -> usize {
    while e > s && matches!(text.as_bytes()[e - 1], b'\'' | b'-') {
        e -= 1;
    }
    e
}

fn is_first(t: &Token) -> bool {
    t.lower.chars().count() >= 3
        && FIRST.contains(t.lower.as_str())
        && !COMMON.contains(t.lower.as_str())
}

fn is_last(t: &Token) -> bool {
    t.lower.chars().count() >= 2
        && LAST.contains(t.lower.as_str())
        && !COMMON.contains(t.lower.as_str())
}

fn is_title(t: &Token) -> bool {
    TITLES.contains(&t.lower.as_str())
}

/// A word that can continue a name: the patient's own name; a capitalised word that is not
/// common; or, after a lower-case first word (`tracy sukhorukova`), a lower-case dictionary name.
fn continues(t: &Token, own: &HashSet<String>, head_lower: bool) -> bool {
    t.joined
        && !is_title(t)
        && (own.contains(&t.lower)
            || (t.capitalised && !COMMON.contains(t.lower.as_str()))
            || (head_lower && !t.capitalised && (is_first(t) || is_last(t))))
}

fn person_at(
    text: &str,
    tokens: &[Token],
    i: usize,
    own: &HashSet<String>,
) -> Option<(usize, usize, f32)> {
    let t = &tokens[i];
    // Title: the capitalised or dictionary words after it are the name.
    if is_title(t) && i + 1 < tokens.len() {
        let next = &tokens[i + 1];
        let gap_ok = text[t.end..next.start]
            .trim_start_matches('.')
            .trim()
            .is_empty();
        if gap_ok
            && (next.capitalised || is_first(next) || is_last(next) || own.contains(&next.lower))
            && !COMMON.contains(next.lower.as_str())
        {
            // Reported from the first name word, not the title.
            return Some((i + 1, extend(tokens, i + 1, own), 0.9));
        }
    }
    let own_hit = own.contains(&t.lower);
    let first = is_first(t);
    let last = is_last(t) && t.capitalised && !t.sentence_start;
    if !(own_hit || first || last) {
        return None;
    }
    let end = extend(tokens, i, own);
    let multi = end > i;
    let cued = cue(text, t.start, PERSON_CUES);
    let mut score: f32 = if own_hit {
        0.95
    } else if multi && t.capitalised {
        0.85
    } else if multi {
        0.65
    } else if first && t.capitalised && !t.sentence_start {
        0.6
    } else if first && t.capitalised {
        0.5
    } else if first {
        0.35
    } else {
        0.4
    };
    if cued {
        score += 0.15;
    }
    Some((i, end, score.min(1.0)))
}

/// Extends a name from token `i` over following name words and a suffix (`MD`, `Jr`).
fn extend(tokens: &[Token], i: usize, own: &HashSet<String>) -> usize {
    let mut end = i;
    let head_lower = !tokens[i].capitalised;
    while end + 1 < tokens.len()
        && end - i < 3
        && continues(&tokens[end + 1], own, head_lower)
        && !tokens[end + 1].sentence_start
    {
        end += 1;
    }
    if end + 1 < tokens.len()
        && tokens[end + 1].joined
        && SUFFIXES.contains(&tokens[end + 1].lower.as_str())
        && tokens[end + 1]
            .text
            .chars()
            .next()
            .is_some_and(char::is_uppercase)
    {
        end += 1;
    }
    end
}

fn place_at(text: &str, tokens: &[Token], i: usize) -> Option<(usize, f32)> {
    // Longest dictionary place of up to three words starting here.
    for len in (1..=3).rev() {
        if i + len > tokens.len() || !tokens[i + 1..i + len].iter().all(|t| t.joined) {
            continue;
        }
        let phrase: Vec<&str> = tokens[i..i + len]
            .iter()
            .map(|t| t.lower.as_str())
            .collect();
        if PLACES.contains(phrase.join(" ").as_str()) {
            let score = if tokens[i].capitalised { 0.75 } else { 0.55 };
            return Some((i + len - 1, score));
        }
    }
    let t = &tokens[i];
    if t.capitalised
        && !t.sentence_start
        && !COMMON.contains(t.lower.as_str())
        && !t.text.chars().all(char::is_uppercase)
        && cue(text, t.start, PLACE_CUES)
    {
        let mut end = i;
        while end + 1 < tokens.len()
            && end - i < 2
            && tokens[end + 1].joined
            && tokens[end + 1].capitalised
        {
            end += 1;
        }
        return Some((end, 0.6));
    }
    None
}

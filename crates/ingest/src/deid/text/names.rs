//! People and places: dictionaries plus the context that makes a word a name.
//!
//! Evidence, weakest first: a word of the Census name lists (Rose, Grant and Will are words too,
//! so a dictionary hit alone is weak); a capitalised word that is no English or medical word
//! (a proper noun the lists have never heard of: "Morishita began", "grew up in Palhais"); and
//! what raises either: a title before it, a second name beside it, capitalisation mid-sentence,
//! cues such as "seen by", "said" or "daughter", and for places a preposition before it.

use std::collections::HashSet;

use super::Candidate;
use super::lexicon;
use super::patterns::cue;

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
    "said",
    "says",
    "told",
    "asked",
    "call me",
    "calls me",
    "called",
    "partner",
    "kid",
    "boss",
];
/// A proper noun right after one of these is a place ("returned to Blaketown").
const PLACE_PREPOSITIONS: &[&str] = &[
    "in", "at", "from", "near", "to", "of", "visiting", "visited", "outside", "around",
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
        lexicon::load();
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
        // Every token may start a person and a place; overlaps are resolved by score later.
        let from = out.len();
        for i in 0..tokens.len() {
            if let Some((first, end, score)) = person_at(text, &tokens, i, &own) {
                out.push(candidate(&tokens, first, end, "PERSON", score));
            }
            if let Some((end, score)) = place_at(text, &tokens, i) {
                out.push(candidate(&tokens, i, end, "LOCATION", score));
            } else if let Some((end, score)) = proper_noun_at(text, &tokens, i) {
                out.push(candidate(&tokens, i, end, "PERSON", score));
            }
        }
        listed_with_people(text, &tokens, out, from);
        place_above_country(text, &tokens, out, from);
    }
}

fn candidate(
    tokens: &[Token],
    first: usize,
    last: usize,
    kind: &'static str,
    score: f32,
) -> Candidate {
    Candidate {
        start: tokens[first].start,
        end: tokens[last].end,
        kind,
        score,
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
        // "Brodie H. Walker": the full stop after an initial ends no sentence.
        let after_initial = tokens
            .last()
            .is_some_and(|t: &Token| t.text.chars().count() == 1 && t.capitalised && gap == ". ");
        let sentence_start = !after_initial
            && (tokens.is_empty()
                || gap.contains('\n')
                || matches!(prev, Some('.' | '!' | '?' | ':')));
        let joined = after_initial
            || (!tokens.is_empty()
                && !gap.is_empty()
                && gap.len() <= 2
                && gap.chars().all(|c| c == ' '));
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
    t.lower.chars().count() >= 3 && lexicon::first_name(&t.lower) && !lexicon::common(&t.lower)
}

fn is_last(t: &Token) -> bool {
    t.lower.chars().count() >= 2 && lexicon::surname(&t.lower) && !lexicon::common(&t.lower)
}

fn is_title(t: &Token) -> bool {
    TITLES.contains(&t.lower.as_str())
}

/// A capitalised word of three letters or more that is no English or medical word. An acronym
/// (ICU, COPD, NSTEMI) is not one; a name written in capitals (CHISHOLM) of seven letters is.
fn is_proper_noun(t: &Token) -> bool {
    let letters = t.text.chars().count();
    // "CEOs" is an acronym's plural.
    let stem = t.text.strip_suffix('s').unwrap_or(t.text);
    let capitals = stem.chars().all(|c| !c.is_lowercase());
    t.capitalised && letters >= 3 && (!capitals || letters >= 7) && !lexicon::known_word(&t.lower)
}

/// Words that, right before a capitalised word, say it is a name.
const INTRODUCERS: &[&str] = &[
    "says", "said", "asks", "asked", "told", "named", "nee", "née",
];

/// True when the word before token `i` introduces a name, or a question or label for a name
/// ("last name? Smith", "Name: Brown") precedes it.
fn introduced(text: &str, tokens: &[Token], i: usize) -> bool {
    if i == 0 {
        return false;
    }
    let prev = &tokens[i - 1];
    let gap = &text[prev.end..tokens[i].start];
    (INTRODUCERS.contains(&prev.lower.as_str()) && gap == " ")
        || (prev.lower == "name" && matches!(gap.trim(), "?" | ":" | "is"))
}

/// Capitalised name words in a list with a person ("Lapresse, Morris and Wright"): each is a
/// person too. Repeats until the list is covered, in both directions.
fn listed_with_people(text: &str, tokens: &[Token], out: &mut Vec<Candidate>, from: usize) {
    // Which tokens a person already covers: one pass over the candidates, then a flag per token
    // (a long note has thousands of both).
    let mut person = vec![false; tokens.len()];
    for c in out[from..]
        .iter()
        .filter(|c| c.kind == "PERSON" && c.score >= 0.5)
    {
        let first = tokens.partition_point(|t| t.start < c.start);
        for (flag, _) in person[first..]
            .iter_mut()
            .zip(&tokens[first..])
            .take_while(|(_, t)| t.end <= c.end)
        {
            *flag = true;
        }
    }
    let name_word = |t: &Token| {
        t.capitalised
            && (is_first(t) || is_last(t) || is_proper_noun(t) || lexicon::surname(&t.lower))
    };
    let linked = |a: &Token, b: &Token| matches!(text[a.end..b.start].trim_end(), "," | " &");
    let conjunction = |t: &Token| matches!(t.lower.as_str(), "and" | "or");
    let spaced = |a: &Token, b: &Token| text[a.end..b.start].trim_start_matches(',') == " ";
    // The list neighbour of token `j` on one side, past an "and"/"or" if there is one.
    let neighbour = |j: usize, forward: bool| -> Option<usize> {
        let step = |k: usize| {
            if forward {
                Some(k + 1).filter(|&k| k < tokens.len())
            } else {
                k.checked_sub(1)
            }
        };
        let k = step(j)?;
        let (near, far) = if conjunction(&tokens[k]) {
            (k, step(k)?)
        } else {
            let (a, b) = if forward { (j, k) } else { (k, j) };
            return linked(&tokens[a], &tokens[b]).then_some(k);
        };
        let (a, b) = if forward { (j, near) } else { (near, j) };
        let (c, d) = if forward { (near, far) } else { (far, near) };
        (spaced(&tokens[a], &tokens[b]) && spaced(&tokens[c], &tokens[d])).then_some(far)
    };
    let mut changed = true;
    while changed {
        changed = false;
        for j in 0..tokens.len() {
            if person[j] || !name_word(&tokens[j]) {
                continue;
            }
            let beside = |forward| neighbour(j, forward).is_some_and(|k| person[k]);
            if beside(false) || beside(true) {
                out.push(candidate(tokens, j, j, "PERSON", 0.6));
                person[j] = true;
                changed = true;
            }
        }
    }
}

/// A word that can continue a name: the patient's own name; a capitalised word that is not
/// common; or, after a lower-case first word (`tracy sukhorukova`), a lower-case name or a word
/// that is no English word.
fn continues(t: &Token, own: &HashSet<String>, head_lower: bool) -> bool {
    t.joined
        && !is_title(t)
        && t.text.chars().count() >= 2
        && (own.contains(&t.lower)
            || (t.capitalised && !lexicon::common(&t.lower))
            || (head_lower
                && !t.capitalised
                && (is_first(t) || is_last(t) || !lexicon::known_word(&t.lower))))
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
        // After a title even a word is a name ("Dr. Brown", "Mrs. White").
        if gap_ok
            && (next.capitalised
                || ((is_first(next) || is_last(next) || own.contains(&next.lower))
                    && !lexicon::common(&next.lower)))
        {
            // Reported from the first name word, not the title.
            return Some((i + 1, extend(tokens, i + 1, own), 0.9));
        }
    }
    // Right after "says", "told" or "last name?", a capitalised word is a name even when it is
    // also a word ("says Brown.").
    if t.capitalised && introduced(text, tokens, i) && !is_title(t) {
        return Some((i, extend(tokens, i, own), 0.65));
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
    // "Carry Me Back", "Border Force": a run of capitalised words is a title when every word of
    // it is an ordinary word.
    let title_case = tokens[i..=end]
        .iter()
        .all(|t| lexicon::known_word(&t.lower));
    let mut score: f32 = if own_hit {
        0.95
    } else if multi && t.capitalised && title_case {
        0.45
    } else if multi && t.capitalised {
        0.85
    } else if multi {
        0.65
    } else if first && t.capitalised && !t.sentence_start {
        0.6
    } else if first && t.capitalised {
        0.5
    } else if first && !lexicon::known_word(&t.lower) {
        // A lower-case given name that is no English word ("the gender of lilly").
        0.5
    } else if first {
        // A lower-case given name that is also a word ("song", "rose"): a cue alone is not enough.
        0.3
    } else {
        0.4
    };
    if cued {
        score += 0.15;
    }
    Some((i, end, score.min(1.0)))
}

/// A proper noun not in the name lists, taken for a person: mid-sentence, or opening one when a
/// verb, a comma or a colon follows ("Morishita began", "Jakobine, can I", "Arya: What") or a
/// cue precedes ("last name? Krylova").
fn proper_noun_at(text: &str, tokens: &[Token], i: usize) -> Option<(usize, f32)> {
    let t = &tokens[i];
    if !is_proper_noun(t) || is_title(t) {
        return None;
    }
    let end = extend(tokens, i, &HashSet::new());
    let cued = cue(text, t.start, PERSON_CUES);
    if t.sentence_start && end == i && !cued {
        let next = tokens.get(i + 1)?;
        let gap = &text[t.end..next.start];
        let verb_follows = gap == " " && !next.capitalised;
        if !(verb_follows || matches!(gap, ", " | ": ")) {
            return None;
        }
    }
    let score = if end > i { 0.6 } else { 0.5 };
    Some((end, if cued { score + 0.15 } else { score }))
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
    // Longest gazetteer place of up to five words starting here; in lower case only when the
    // phrase is no English word (tunisia, not turkey).
    for len in (1..=5).rev() {
        if i + len > tokens.len() || !tokens[i + 1..i + len].iter().all(|t| t.joined) {
            continue;
        }
        let phrase: Vec<&str> = tokens[i..i + len]
            .iter()
            .map(|t| t.lower.as_str())
            .collect();
        let phrase = phrase.join(" ");
        if lexicon::place(&phrase) {
            if tokens[i].capitalised {
                return Some((i + len - 1, 0.75));
            }
            if !lexicon::known_word(&phrase) {
                return Some((i + len - 1, 0.55));
            }
        }
    }
    let t = &tokens[i];
    let name_like = is_proper_noun(t)
        || (t.capitalised && (is_first(t) || is_last(t)) && !lexicon::known_word(&t.lower));
    if !name_like || t.sentence_start {
        return None;
    }
    let after_preposition = i > 0 && {
        let prev = &tokens[i - 1];
        PLACE_PREPOSITIONS.contains(&prev.lower.as_str())
            && text[prev.end..t.start].chars().all(char::is_whitespace)
    };
    if !after_preposition && !cue(text, t.start, PLACE_CUES) {
        return None;
    }
    let mut end = i;
    while end + 1 < tokens.len()
        && end - i < 2
        && tokens[end + 1].joined
        && tokens[end + 1].capitalised
        && !lexicon::common(&tokens[end + 1].lower)
    {
        end += 1;
    }
    // A Census name after "to" or "of" may as well be a person ("to Tyler"): a lower score, so
    // that its person reading wins when that has any other support.
    let score = if is_proper_noun(t) { 0.6 } else { 0.55 };
    Some((end, score))
}

/// In an address block, the line above a country is its town ("Jestetten\nGermany",
/// "Dot Lake\nUnited States"): one to three capitalised words alone on their line.
fn place_above_country(text: &str, tokens: &[Token], out: &mut Vec<Candidate>, from: usize) {
    let countries: Vec<usize> = out[from..]
        .iter()
        .filter(|c| c.kind == "LOCATION" && c.score >= 0.75)
        .map(|c| c.start)
        .collect();
    for start in countries {
        let k = tokens.partition_point(|t| t.start < start);
        if tokens.get(k).is_none_or(|t| t.start != start) {
            continue;
        }
        if k == 0 || !tokens[k].sentence_start || !text[tokens[k - 1].end..start].contains('\n') {
            continue;
        }
        // The previous line's tokens: back to the one that starts it.
        let last = k - 1;
        let mut first = last;
        while first > 0 && !text[tokens[first - 1].end..tokens[first].start].contains('\n') {
            first -= 1;
        }
        let line = &text[tokens[first].start..tokens[last].end];
        let words = last - first + 1;
        if words <= 3
            && tokens[first..=last].iter().all(|t| t.capitalised)
            && !line.contains(|c: char| c.is_ascii_digit() || matches!(c, ',' | '.' | ':'))
        {
            out.push(candidate(tokens, first, last, "LOCATION", 0.6));
        }
    }
}

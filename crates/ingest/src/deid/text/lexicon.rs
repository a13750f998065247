//! The word lists the recognizers share, loaded once.
//!
//! - given names and surnames: the US Census Bureau's 1990 lists (public domain);
//! - `common_words.txt`: English words that are also Census names (Rose, Grant, Will);
//! - `places.txt`: countries, US states and a few regions;
//! - `english_words.txt`: the lower-case entries of SCOWL (size 50, as Debian's wamerican packages
//!   it; `data/LICENSE-SCOWL`), 63,875 words. A capitalised word that is none of these is most
//!   likely a proper noun: a person or a place the name lists have never heard of;
//! - `clinical_words.txt`: drug names, eponyms and organisms a note capitalises (Lipitor,
//!   Parkinson, Klebsiella), which that rule must not take for names;
//! - `nationalities.txt`: nationalities, peoples, languages and religions (American, Sudanese):
//!   capitalised, yet neither a person nor a place.

use std::collections::HashSet;
use std::sync::LazyLock;

static FIRST: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| words(include_str!("../../../data/first_names.txt")));
static LAST: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| words(include_str!("../../../data/surnames.txt")));
static COMMON: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| words(include_str!("../../../data/common_words.txt")));
static PLACES: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| words(include_str!("../../../data/places.txt")));
static ENGLISH: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| words(include_str!("../../../data/english_words.txt")));
static CLINICAL: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| words(include_str!("../../../data/clinical_words.txt")));
static NATIONALITIES: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| words(include_str!("../../../data/nationalities.txt")));

fn words(text: &'static str) -> HashSet<&'static str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// Loads every list now, so the first note does not pay for it.
pub(super) fn load() {
    let _ = (
        FIRST.len(),
        LAST.len(),
        COMMON.len(),
        PLACES.len(),
        ENGLISH.len(),
        CLINICAL.len(),
        NATIONALITIES.len(),
    );
}

/// A Census given name (lower-case input).
pub(super) fn first_name(lower: &str) -> bool {
    FIRST.contains(lower)
}

/// A Census surname (lower-case input).
pub(super) fn surname(lower: &str) -> bool {
    LAST.contains(lower)
}

/// An English word that is also a name, or a function word (lower-case input).
pub(super) fn common(lower: &str) -> bool {
    COMMON.contains(lower)
}

/// A country, US state or region, of one to three words (lower-case input).
pub(super) fn place(lower: &str) -> bool {
    PLACES.contains(lower)
}

/// A word of ordinary English or of medicine, or a nationality (lower-case input): not, by
/// itself, a proper noun. Plurals and inflections are listed as such; a contraction or a
/// possessive is judged by its stem ("what's", "i'm"; but "sumaya's" is no word), a hyphenated
/// word by its parts.
pub(super) fn known_word(lower: &str) -> bool {
    let known = |w: &str| {
        ENGLISH.contains(w)
            || COMMON.contains(w)
            || CLINICAL.contains(w)
            || NATIONALITIES.contains(w)
    };
    let stem = lower
        .split_once(['\'', '’'])
        .map_or(lower, |(stem, _)| stem);
    if stem == "i" || known(stem) {
        return true;
    }
    // "e-mail", "follow-up": known when each part is a word or a letter.
    stem.contains('-')
        && stem
            .split('-')
            .all(|part| part.chars().count() <= 1 || known(part))
}

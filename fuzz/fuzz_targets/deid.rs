//! Any text through the PII detector: spans are in bounds, sorted and disjoint.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medfed_ingest::deid::text::Scrubber;

fuzz_target!(|data: &[u8]| {
    static SCRUBBER: std::sync::OnceLock<Scrubber> = std::sync::OnceLock::new();
    let Ok(text) = std::str::from_utf8(data) else { return };
    let spans = SCRUBBER.get_or_init(Scrubber::new).detect(text, &["Quux"], &["555-1234"]);
    let chars = text.chars().count();
    let mut last = 0;
    for s in &spans {
        assert!(s.start >= last && s.start < s.end && s.end <= chars);
        last = s.end;
    }
});

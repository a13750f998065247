//! Any bytes through the HL7 v2 file parser and the MLLP answer: no panic, and every message
//! either parses to facts or is rejected with a reason.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medfed_ingest::source::hl7;

fuzz_target!(|data: &[u8]| {
    for record in hl7::parse_file("fuzz", data) {
        if let Err(reject) = &record.parsed {
            assert!(!reject.rule.is_empty() && !reject.reason.is_empty());
        }
    }
    let handler: hl7::mllp::Handler = std::sync::Arc::new(|_| Ok(()));
    let ack = hl7::mllp::answer(data, &handler);
    assert!(ack.starts_with("MSH|") && ack.contains("\rMSA|"));
});

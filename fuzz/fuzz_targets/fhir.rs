//! Any bytes as a FHIR Bundle and as Bulk Data NDJSON: no panic, rejects carry reasons.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medfed_ingest::source::fhir;

fuzz_target!(|data: &[u8]| {
    for record in fhir::parse_bundle("fuzz", data).into_iter().chain(fhir::parse_ndjson("fuzz", data)) {
        if let Err(reject) = &record.parsed {
            assert!(!reject.rule.is_empty());
        }
    }
});

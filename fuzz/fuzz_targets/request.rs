//! Request parsing and validation: any body, as JSON or NDJSON, is parsed into writes or
//! refused with an error that says where; never a panic. Writes that pass are prepared for
//! the store (trace ids, canonical properties) and keep their count and line numbers.
#![no_main]

use hubspot_outbox::ingest::group::prepare;
use hubspot_outbox::ingest::socket::body::{BodyError, BodyFormat, parse_body};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let format = if selector & 1 == 0 {
        BodyFormat::Json
    } else {
        BodyFormat::Ndjson
    };
    let max = usize::from(selector >> 1).max(1);
    match parse_body(format, body, max) {
        Ok(parsed) => {
            assert!(!parsed.writes.is_empty() && parsed.writes.len() <= max);
            assert_eq!(parsed.writes.len(), parsed.lines.len());
            let count = parsed.writes.len();
            assert_eq!(prepare(parsed.writes, &|_| None).len(), count);
        }
        Err(BodyError::Invalid(errors)) => assert!(!errors.is_empty()),
        Err(BodyError::TooManyWrites { count, max: m }) => assert!(count > m),
        Err(_) => {}
    }
});

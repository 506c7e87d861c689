//! The strict JSON body parser (repeated keys refused, a leading BOM skipped) against
//! serde_json's own: it accepts nothing serde_json refuses, and what it accepts reads the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offboard::ingest::json_body;

fuzz_target!(|body: &[u8]| {
    let strict = json_body::parse(body);
    let plain = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let lax = serde_json::from_slice::<serde_json::Value>(plain);
    match (strict, lax) {
        (Ok(strict), Ok(lax)) => assert_eq!(strict, lax, "a body read two ways"),
        (Ok(strict), Err(e)) => panic!("accepted what serde_json refuses ({e}): {strict}"),
        (Err(_), _) => {}
    }
});

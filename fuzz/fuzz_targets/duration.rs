//! Durations (`30s`, `15m`, `12h`, `30d`): what parses round-trips through its display and
//! converts without overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offboard::domain::duration::Span;

fuzz_target!(|text: &str| {
    if let Ok(span) = Span::parse(text) {
        assert_eq!(
            Span::parse(&span.to_string()),
            Ok(span),
            "round trip of {text:?}"
        );
        let _ = (span.to_chrono(), span.to_std());
    }
});

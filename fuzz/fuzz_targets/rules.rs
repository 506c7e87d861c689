//! The rules of every example source over arbitrary bodies, parsed as the receiver parses
//! them: nothing panics, and every planned chain has steps and a lower-cased email.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offboard::domain::Plan;
use offboard::ingest::json_body;
use offboard::rules;
use offboard_fuzz::{SOURCES, instant};

fuzz_target!(|input: (u32, &[u8])| {
    let (now, body) = input;
    let Ok(body) = json_body::parse(body) else {
        return;
    };
    for source in SOURCES.iter() {
        let Ok(plans) = rules::map_delivery(&source.rules, &body, instant(now)) else {
            continue;
        };
        for plan in plans {
            if let Plan::Chain(chain) = plan {
                assert!(!chain.steps.is_empty(), "an empty chain");
                let email = chain.email.as_str();
                assert_eq!(email, email.to_ascii_lowercase(), "email not lower-cased");
            }
        }
    }
});

//! `jobs import`'s CSV check over arbitrary files: nothing panics, a bad row's line is a line
//! of the file, and what passes is a chain per row with a lower-cased email.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use offboard::config::{Config, ConfigOrigin};
use offboard::manual::import;
use offboard_fuzz::instant;

/// The built-in defaults: no directory, so every action may be imported.
static CONFIG: LazyLock<Config> = LazyLock::new(|| {
    Config::from_toml("", ConfigOrigin::Defaults, &|_| None).expect("the defaults are valid")
});

fuzz_target!(|input: (bool, u32, &[u8])| {
    let (with_action, now, file) = input;
    let action = with_action.then_some("delete_portal_customer");
    let lines = file.iter().filter(|b| **b == b'\n').count() as u64 + 1;
    match import::check(&CONFIG, file, action, false, instant(now), |_| {}) {
        Ok(chains) => {
            assert!(!chains.is_empty(), "a file without rows passed");
            for chain in chains {
                let email = chain.email.as_str();
                assert_eq!(email, email.to_ascii_lowercase());
                assert_eq!(chain.steps.len(), 1);
            }
        }
        Err(bad) => {
            assert!(!bad.is_empty());
            for row in bad {
                assert!(
                    row.line >= 1 && row.line <= lines,
                    "line {} of {lines}",
                    row.line
                );
            }
        }
    }
});

//! The config loader over arbitrary text: nothing panics, a config that loads has unique
//! source names, and neither what loads (its Debug) nor the error shows a secret's value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offboard::config::{Config, ConfigOrigin};

use offboard_fuzz::{SECRET, env};

fuzz_target!(|text: &str| {
    match Config::from_toml(text, ConfigOrigin::Defaults, &env) {
        Ok(config) => {
            assert!(
                !format!("{config:?}").contains(SECRET),
                "Debug shows a secret"
            );
            let mut names: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), config.sources.len(), "source names repeat");
        }
        Err(e) => {
            // A secret the text itself holds may be echoed only if the text shows it outside
            // a secret's place too; the resolved value never is.
            if !text.contains(SECRET) {
                assert!(
                    !e.to_string().contains(SECRET),
                    "an error shows a secret: {e}"
                );
            }
        }
    }
});

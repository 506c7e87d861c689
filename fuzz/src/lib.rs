//! What the fuzz targets share: the sources of the example configurations (one or more per
//! signature scheme, each with its realistic rules) plus a `deel` source, every secret
//! resolved to one base64 value that each scheme accepts.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use offboard::config::{Config, ConfigOrigin, Source};

/// What every `env:` secret of the examples resolves to.
pub const SECRET: &str = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

const DEEL: &str = r#"
[[sources]]
name = "deel"
scheme = "deel"
secrets = ["deel-key"]
  [[sources.rules]]
  name = "plain-list"
  for_each = "/data/emails"
  email = ""
  actions = ["remove_from_directory"]
"#;

const CONFIGS: [&str; 7] = [
    include_str!("../../examples/quickstart.toml"),
    include_str!("../../examples/jira-automation.toml"),
    include_str!("../../examples/jira-admin-webhook.toml"),
    include_str!("../../examples/bamboohr.toml"),
    include_str!("../../examples/hibob.toml"),
    include_str!("../../examples/standard-webhooks.toml"),
    DEEL,
];

/// The environment the examples see: every secret they name resolves to [`SECRET`], and the
/// variables that override settings are unset.
pub fn env(name: &str) -> Option<String> {
    let overrides = ["DATABASE_URL", "OFFBOARD_LISTEN", "OFFBOARD_DRY_RUN"];
    (!overrides.contains(&name)).then(|| SECRET.to_owned())
}

/// Every source of the examples, loaded once.
pub static SOURCES: LazyLock<Vec<Source>> = LazyLock::new(|| {
    CONFIGS
        .iter()
        .flat_map(|text| {
            Config::from_toml(text, ConfigOrigin::Defaults, &env)
                .unwrap_or_else(|e| panic!("an example config loads: {e}"))
                .sources
        })
        .collect()
});

/// An instant anywhere from year 1970 to 2100, from fuzzer input.
pub fn instant(seconds: u32) -> DateTime<Utc> {
    DateTime::from_timestamp(i64::from(seconds) * 2, 0).expect("in range")
}

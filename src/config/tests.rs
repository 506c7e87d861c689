//! The configuration's tests in one file, over ~600 lines because they are one concept: a TOML
//! text in, the validated `Config` or the exact problems out, whichever room does the work.

use std::collections::HashMap;

use secrecy::ExposeSecret;

use super::raw::redact_quoted_values;
use super::*;

fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| vars.get(name).cloned()
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, ConfigOrigin::Defaults, &env_of(&[]))
}

fn problems(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => panic!("expected problems in:\n{text}"),
        Err(ConfigError(problems)) => problems,
    }
}

fn assert_problem(text: &str, needle: &str) {
    let problems = problems(text);
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "no problem mentions {needle:?}: {problems:#?}"
    );
}

const SOURCE: &str = r#"
[[sources]]
name = "hr"
scheme = "hub-signature"
secrets = ["It's a Secret to Everybody"]

  [[sources.rules]]
  name = "contract-ended"
  when = { "/type" = "contract.ended" }
  email = "/data/email"
  actions = ["suspend_access", { action = "delete_account", after = "30d", allow_content_loss = true }]
"#;

#[test]
fn defaults_are_sqlite_local_and_dry_run() {
    let config = parse("").unwrap();
    assert_eq!(config.database_url.expose(), DEFAULT_DATABASE_URL);
    assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
    assert!(config.dry_run, "dry_run must default to true");
    assert!(config.admin_token.is_none());
    assert_eq!(config.max_body_bytes, 1024 * 1024);
    assert_eq!(config.max_connections, 1024);
    assert_eq!(config.worker.concurrency, 4);
    assert_eq!(config.safety.max_actions_per_hour, 100);
    assert_eq!(config.safety.approval_above, 50);
    assert!(config.sources.is_empty());
}

#[test]
fn approval_above_is_read_checked_and_summarised() {
    let config = parse("[safety]\napproval_above = 0").unwrap();
    assert_eq!(config.safety.approval_above, 0);
    let config = parse("[safety]\napproval_above = 7").unwrap();
    assert!(
        config
            .summary()
            .contains("approval needed for any delivery of more than 7 jobs"),
        "{}",
        config.summary()
    );
    assert_problem("[safety]\napproval_above = -1", "safety.approval_above");
    assert_problem("[safety]\napproval_above = \"50\"", "approval_above");
}

#[test]
fn the_interface_example_is_valid() {
    let text = format!(
        r#"
listen = "127.0.0.1:9090"
database_url = "postgres://offboard:pw@db/offboard"
dry_run = false
admin_token = "env:OFFBOARD_ADMIN_TOKEN"
max_body_bytes = 1048576

[atlassian]
site_url = "https://example.atlassian.net"
site_email = "automation@example.com"
site_api_token = "env:ATLASSIAN_API_TOKEN"
admin_url = "https://api.atlassian.com"
admin_api_key = "env:ATLASSIAN_ADMIN_API_KEY"
org_id = "org"
directory_id = "dir"

[worker]
concurrency = 4
max_attempts = 8
lease_seconds = 120
requests_per_second = 5.0
backoff_base_seconds = 5
backoff_max_seconds = 3600

[safety]
protected_emails = ["it-admin@example.com"]
protected_domains = ["example-admins.com"]
protected_account_ids = []
max_actions_per_hour = 100
{SOURCE}
  [[sources.rules]]
  name = "rehired"
  when = {{ "/type" = "contract.extended" }}
  email = "/data/email"
  cancel = true
"#
    );
    let env = env_of(&[
        ("OFFBOARD_ADMIN_TOKEN", "admin-secret-1-of-the-api"),
        ("ATLASSIAN_API_TOKEN", "site-secret-2"),
        ("ATLASSIAN_ADMIN_API_KEY", "admin-key-3"),
    ]);
    let config = Config::from_toml(&text, ConfigOrigin::Defaults, &env).unwrap();
    assert!(!config.dry_run);
    assert!(config.database_url.is_postgres());
    assert_eq!(config.sources[0].rules.len(), 2);
    let atlassian = config.atlassian.as_ref().unwrap();
    assert_eq!(
        atlassian.site.as_ref().unwrap().api_token.expose_secret(),
        "site-secret-2"
    );
    assert_eq!(atlassian.admin.as_ref().unwrap().org_id, "org");
    let summary = config.summary();
    assert!(summary.contains("hr (hub-signature"), "{summary}");
    assert!(
        summary.contains("suspend_access, then delete_account after 30d"),
        "{summary}"
    );
    assert!(
        summary.contains("actions: suspend_access, delete_account"),
        "{summary}"
    );
}

#[test]
fn unknown_keys_are_named_with_their_path() {
    assert_problem("dry_rn = false", "dry_rn");
    assert_problem(
        "[safety]\nprotected_email = [\"a@b.co\"]",
        "safety.protected_email",
    );
    assert_problem("[worker]\nconcurency = 2", "worker.concurency");
    let text = SOURCE.replace("email = \"/data/email\"", "emial = \"/data/email\"");
    let found = problems(&text);
    assert!(
        found
            .iter()
            .any(|p| p.contains("`sources[0].rules[0].emial`")),
        "{found:#?}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"
listen = "nowhere"
database_url = "mysql://x"
max_body_bytes = 1
max_connections = 0

[worker]
requests_per_second = 0.0
backoff_base_seconds = 10
backoff_max_seconds = 5

[[sources]]
name = "hr"
scheme = "smoke-signals"
secrets = []

[[sources]]
name = "hr"
scheme = "token"
secrets = ["t"]
  [[sources.rules]]
  name = "r"
  actions = ["delete_everything", "remove_from_group"]
"#;
    let found = problems(text);
    for needle in [
        "listen",
        "database_url",
        "max_body_bytes",
        "max_connections",
        "worker.requests_per_second",
        "backoff_max_seconds",
        "unknown scheme",
        "at least one secret",
        "duplicate source name",
        "email",
        "delete_everything",
        "group_id",
    ] {
        assert!(
            found.iter().any(|p| p.contains(needle)),
            "no problem mentions {needle:?}: {found:#?}"
        );
    }
}

#[test]
fn bad_values_say_what_to_fix() {
    assert_problem(
        &SOURCE.replace("after = \"30d\"", "after = \"30 days\""),
        "30 days",
    );
    assert_problem(
        &format!(
            "{}\n[atlassian]\nsite_url = \"not a url\"\nsite_email = \"a@b.co\"\nsite_api_token = \"x\"",
            ""
        ),
        "atlassian.site_url",
    );
    assert_problem(
        "[safety]\nprotected_emails = [\"nope\"]",
        "safety.protected_emails[0]",
    );
    assert_problem(
        "[safety]\nmax_actions_per_hour = 0",
        "safety.max_actions_per_hour",
    );
    assert_problem(
        &SOURCE.replace("name = \"hr\"", "name = \"HR Source\""),
        "sources[0].name",
    );
    assert_problem(
        &SOURCE.replace(
            "scheme = \"hub-signature\"",
            "scheme = \"standard-webhooks\"",
        ),
        "sources[0].secrets[0]",
    );
    assert_problem(
        &SOURCE.replace("secrets = [", "id_pointer = \"data/id\"\nsecrets = ["),
        "sources[0].id_pointer",
    );
}

#[test]
fn live_mode_needs_credentials_for_the_configured_actions() {
    let found = problems(&format!("dry_run = false\n{SOURCE}"));
    assert!(
        found.iter().any(|p| p.starts_with("atlassian")),
        "{found:#?}"
    );
    // Managed actions need the admin half; the site half is optional then.
    let text =
        format!("dry_run = false\n[atlassian]\nadmin_api_key = \"k\"\norg_id = \"o\"\n{SOURCE}");
    let found = problems(&text);
    assert!(
        found.iter().any(|p| p.contains("atlassian.directory_id")),
        "{found:#?}"
    );
    assert!(!found.iter().any(|p| p.contains("site_url")), "{found:#?}");
    // A deletion that first counts the leaver's filters and dashboards needs the site too,
    // and so does a hand-over.
    for step in [
        r#"{ action = "delete_account", after = "30d" }"#,
        r#"{ action = "transfer_filters", successor_email = "boss@example.com" }"#,
    ] {
        let text = text.replace(
            r#"{ action = "delete_account", after = "30d", allow_content_loss = true }"#,
            step,
        );
        let found = problems(&text);
        assert!(
            found.iter().any(|p| p.contains("atlassian.site_url")),
            "{step}: {found:#?}"
        );
    }
}

#[test]
fn secret_references_resolve_from_env_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "from-a-file-token-0\n").unwrap();
    let text = format!(
        "admin_token = \"file:{}\"\n{}",
        file.display(),
        SOURCE.replace(
            "\"It's a Secret to Everybody\"",
            "\"env:HR_SECRET\", \"literal-second\""
        )
    );
    let config = Config::from_toml(
        &text,
        ConfigOrigin::Defaults,
        &env_of(&[("HR_SECRET", "from-env")]),
    )
    .unwrap();
    assert_eq!(
        config.admin_token.unwrap().expose_secret(),
        "from-a-file-token-0"
    );
    let secrets: Vec<&str> = config.sources[0]
        .verifier
        .secrets
        .iter()
        .map(|s| s.expose_secret())
        .collect();
    assert_eq!(secrets, ["from-env", "literal-second"]);

    let found =
        problems(&SOURCE.replace("\"It's a Secret to Everybody\"", "\"env:NOT_SET_ANYWHERE\""));
    assert!(
        found
            .iter()
            .any(|p| p.contains("NOT_SET_ANYWHERE is not set")),
        "{found:#?}"
    );
    assert_problem(
        "admin_token = \"file:/nonexistent/offboard-token\"",
        "secret file /nonexistent/offboard-token cannot be read",
    );
}

/// `file:` reads a regular file of at most 64 KiB; a relative path is the config file's
/// folder's, wherever the service is started from.
#[test]
fn secret_files_are_small_regular_files_next_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/token"), "relative-file-token\n").unwrap();
    std::fs::write(dir.path().join("db-url"), "sqlite://from-a-file.db\n").unwrap();
    let path = dir.path().join("offboard.toml");
    std::fs::write(
        &path,
        "admin_token = \"file:secrets/token\"\ndatabase_url = \"file:db-url\"",
    )
    .unwrap();
    let config = Config::load(&path, &env_of(&[])).unwrap();
    assert_eq!(
        config.admin_token.unwrap().expose_secret(),
        "relative-file-token"
    );
    assert_eq!(config.database_url.expose(), "sqlite://from-a-file.db");
    let url = Config::discover_database_url(Some(&path)).unwrap();
    assert_eq!(url.expose(), "sqlite://from-a-file.db");

    let load = |text: String| {
        std::fs::write(&path, text).unwrap();
        Config::load(&path, &env_of(&[])).unwrap_err().0
    };
    let exactly = dir.path().join("exactly-64k");
    std::fs::write(&exactly, "HUNTER2-".repeat(8 * 1024)).unwrap();
    std::fs::write(&path, "admin_token = \"file:exactly-64k\"").unwrap();
    assert!(
        Config::load(&path, &env_of(&[])).is_ok(),
        "64 KiB is allowed"
    );

    std::fs::write(dir.path().join("65k"), "HUNTER2-".repeat(8 * 1024 + 128)).unwrap();
    std::fs::write(dir.path().join("binary"), b"HUNTER2\xff\xfe").unwrap();
    for (reference, why) in [
        ("file:65k", "is larger than 64 KiB"),
        ("file:/dev/zero", "is not a regular file"),
        ("file:secrets", "is not a regular file"),
        ("file:binary", "is not UTF-8 text"),
        ("file:missing", "cannot be read"),
    ] {
        let found = load(format!("admin_token = \"{reference}\""));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].starts_with("admin_token: secret file "),
            "{found:#?}"
        );
        assert!(found[0].contains(why), "{reference}: {found:#?}");
        assert!(!found[0].contains("HUNTER2"), "{found:#?}");
    }
    let found = load("admin_token = \"file:missing\"".into());
    let expected = dir.path().join("missing");
    assert!(
        found[0].contains(&expected.display().to_string()),
        "the path is the config folder's: {found:#?}"
    );
}

/// A FIFO would block `check` and `serve` until something writes to it: refused at once.
#[test]
fn a_fifo_secret_file_is_refused_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success());
    let path = dir.path().join("offboard.toml");
    std::fs::write(&path, "admin_token = \"file:fifo\"").unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    // On a thread, so that a regression fails the test instead of hanging it.
    std::thread::spawn(move || {
        let _ = sender.send(Config::load(&path, &env_of(&[])).map(|_| ()));
    });
    let result = receiver
        .recv_timeout(std::time::Duration::from_secs(5))
        .expect("loading a config with a FIFO secret must not wait for a writer");
    let found = result.unwrap_err().0;
    assert!(found[0].contains("is not a regular file"), "{found:#?}");
}

#[test]
fn environment_overrides_win() {
    let env = env_of(&[
        ("DATABASE_URL", "postgres://u:pw@h/db"),
        ("OFFBOARD_LISTEN", "0.0.0.0:9999"),
        ("OFFBOARD_ADMIN_TOKEN", "overriding-admin-token"),
        ("OFFBOARD_DRY_RUN", "0"),
    ]);
    let config = Config::from_toml(
        "listen = \"127.0.0.1:1\"\ndry_run = true\nadmin_token = \"token-from-the-file-0\"",
        ConfigOrigin::Defaults,
        &env,
    )
    .unwrap();
    assert!(config.database_url.is_postgres());
    assert_eq!(config.listen.port(), 9999);
    assert_eq!(
        config.admin_token.unwrap().expose_secret(),
        "overriding-admin-token"
    );
    assert!(!config.dry_run);

    let bad = Config::from_toml(
        "",
        ConfigOrigin::Defaults,
        &env_of(&[("OFFBOARD_DRY_RUN", "maybe")]),
    );
    assert!(bad.unwrap_err().to_string().contains("OFFBOARD_DRY_RUN"));
    // An empty admin token counts as unset.
    let empty = Config::from_toml(
        "",
        ConfigOrigin::Defaults,
        &env_of(&[("OFFBOARD_ADMIN_TOKEN", "")]),
    )
    .unwrap();
    assert!(empty.admin_token.is_none());
}

#[test]
fn no_secret_appears_in_debug_summary_or_errors() {
    let text = format!(
        r#"
database_url = "postgres://offboard:db-password-1@db/offboard"
admin_token = "admin-token-2-secret"
[atlassian]
site_url = "https://example.atlassian.net"
site_email = "bot@example.com"
site_api_token = "site-token-3"
admin_api_key = "admin-key-4"
org_id = "o"
directory_id = "d"
{SOURCE}"#
    );
    let config = parse(&text).unwrap();
    let shown = format!("{config:?}\n{}", config.summary());
    for secret in [
        "db-password-1",
        "admin-token-2-secret",
        "site-token-3",
        "admin-key-4",
        "Secret to Everybody",
    ] {
        assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
    }
    assert!(
        config
            .summary()
            .contains("postgres://offboard:***@db/offboard")
    );

    // A bad value next to a secret: the error names the key, not the secret.
    let broken = text.replace("org_id = \"o\"", "org_id = \"\"");
    let message = parse(&broken).unwrap_err().to_string();
    for secret in [
        "db-password-1",
        "admin-token-2-secret",
        "site-token-3",
        "admin-key-4",
    ] {
        assert!(!message.contains(secret), "{secret} leaked: {message}");
    }
}

#[test]
fn protected_domains_cover_subdomains_only() {
    let config = parse(
        "[safety]\nprotected_emails = [\"Boss@Example.com\"]\nprotected_domains = [\"admins.example.com\"]",
    )
    .unwrap();
    let safety = &config.safety;
    assert_eq!(
        safety.protects_email("boss@example.com"),
        Some("protected_email")
    );
    assert_eq!(
        safety.protects_email("BOSS@EXAMPLE.COM"),
        Some("protected_email")
    );
    assert_eq!(
        safety.protects_email("a@admins.example.com"),
        Some("protected_domain")
    );
    assert_eq!(
        safety.protects_email("a@eu.admins.example.com"),
        Some("protected_domain")
    );
    assert_eq!(safety.protects_email("a@evil-admins.example.com"), None);
    assert_eq!(safety.protects_email("a@example.com"), None);
}

#[test]
fn malformed_toml_is_one_clear_problem() {
    let found = problems("listen = ");
    assert_eq!(found.len(), 1);
    assert!(found[0].starts_with("invalid TOML"), "{found:#?}");
    assert_problem("dry_run = \"yes\"", "invalid configuration");
}

#[test]
fn database_url_may_be_a_secret_reference_and_empty_overrides_are_unset() {
    let env = env_of(&[("PG_URL", "postgres://u:pw@h/db"), ("OFFBOARD_DRY_RUN", "")]);
    let config = Config::from_toml(
        "database_url = \"env:PG_URL\"\ndry_run = false",
        ConfigOrigin::Defaults,
        &env,
    )
    .unwrap();
    assert!(config.database_url.is_postgres());
    assert!(
        !config.dry_run,
        "an empty OFFBOARD_DRY_RUN leaves the file's value"
    );
    assert_problem("database_url = \"env:NOT_SET_PG\"", "NOT_SET_PG is not set");
}

#[test]
fn the_store_url_alone_needs_no_other_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("offboard.toml");
    std::fs::write(
        &path,
        format!(
            "database_url = \"sqlite://x.db\"\n{}",
            SOURCE.replace(
                "\"It's a Secret to Everybody\"",
                "\"env:UNSET_HR_SECRET_FOR_TEST\""
            )
        ),
    )
    .unwrap();
    assert!(Config::discover(Some(&path)).is_err());
    let url = Config::discover_database_url(Some(&path)).unwrap();
    assert_eq!(url.expose(), "sqlite://x.db");
    std::fs::write(&path, "databse_url = \"sqlite://x.db\"").unwrap();
    let err = Config::discover_database_url(Some(&path)).unwrap_err();
    assert!(err.to_string().contains("databse_url"), "{err}");
}

#[test]
fn replay_window_defaults_to_a_month_and_is_checked() {
    let config = parse(SOURCE).unwrap();
    let source = &config.sources[0];
    assert_eq!(source.replay_window.as_secs(), 30 * 86_400);
    assert!(source.has_unsigned_ids());
    assert!(
        config
            .summary()
            .contains("unsigned delivery ids: repeats need the same body, replay window 30d"),
        "{}",
        config.summary()
    );
    let with = |line: &str| SOURCE.replace("secrets = [", &format!("{line}\nsecrets = ["));
    let config = parse(&with("replay_window = \"1s\"")).unwrap();
    assert_eq!(config.sources[0].replay_window.as_secs(), 1);
    assert_problem(&with("replay_window = \"0s\""), "sources[0].replay_window");
    assert_problem(&with("replay_window = \"30 days\""), "30 days");
    assert_problem(&with("replay_window = 30"), "replay_window");

    // Standard Webhooks signs webhook-id: a replay window there would do nothing.
    let standard = SOURCE
        .replace("hub-signature", "standard-webhooks")
        .replace(
            "\"It's a Secret to Everybody\"",
            "\"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD\"",
        );
    let config = parse(&standard).unwrap();
    assert!(!config.sources[0].has_unsigned_ids());
    assert!(!config.summary().contains("replay window"));
    let found = problems(&standard.replace("secrets = [", "replay_window = \"1d\"\nsecrets = ["));
    assert!(
        found
            .iter()
            .any(|p| p.contains("sources[0].replay_window") && p.contains("signs its delivery id")),
        "{found:#?}"
    );
    let by_header = standard.replace(
        "secrets = [",
        "id_header = \"X-Request-Id\"\nreplay_window = \"1d\"\nsecrets = [",
    );
    let config = parse(&by_header).unwrap();
    assert!(config.sources[0].has_unsigned_ids());
}

#[test]
fn timestamp_pointer_needs_a_pointer_into_a_signed_body() {
    let with = |line: &str| SOURCE.replace("secrets = [", &format!("{line}\nsecrets = ["));
    let config = parse(&with("timestamp_pointer = \"/timestamp\"")).unwrap();
    assert_eq!(
        config.sources[0].timestamp_pointer.as_deref(),
        Some("/timestamp")
    );
    assert!(
        config.summary().contains("also for the body's /timestamp"),
        "{}",
        config.summary()
    );
    assert_problem(
        &with("timestamp_pointer = \"timestamp\""),
        "sources[0].timestamp_pointer",
    );
    assert_problem(
        &with("timestamp_pointer = \"\""),
        "sources[0].timestamp_pointer",
    );
    let token = with("timestamp_pointer = \"/timestamp\"").replace("hub-signature", "token");
    let found = problems(&token);
    assert!(
        found
            .iter()
            .any(|p| p.contains("sources[0].timestamp_pointer")
                && p.contains("does not sign the body")),
        "{found:#?}"
    );
}

/// A hub-signature source that gives access back on a rehire can be replayed past its
/// replay window unless the body's own time is checked: `check` warns, naming the rule.
#[test]
fn an_undo_on_a_body_only_signature_without_timestamp_pointer_is_warned_about() {
    let rehire = r#"
  [[sources.rules]]
  name = "rehired"
  when = { "/type" = "contract.extended" }
  email = "/data/email"
  cancel = true
  undo = true
"#;
    let with_undo = format!("{SOURCE}{rehire}");
    let warnings = parse(&with_undo).unwrap().warnings();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    for needle in [
        "sources[0].timestamp_pointer",
        "`hr`",
        "`rehired`",
        "30d",
        "/timestamp",
    ] {
        assert!(warnings[0].contains(needle), "{needle}: {}", warnings[0]);
    }

    let stamped = with_undo.replace(
        "secrets = [",
        "timestamp_pointer = \"/timestamp\"\nsecrets = [",
    );
    assert_eq!(parse(&stamped).unwrap().warnings(), Vec::<String>::new());
    let cancel_only = with_undo.replace("undo = true\n", "");
    assert_eq!(
        parse(&cancel_only).unwrap().warnings(),
        Vec::<String>::new()
    );
    // BambooHR signs its timestamp header, so its deliveries go stale on their own.
    let bamboo = with_undo.replace("hub-signature", "bamboohr");
    assert_eq!(parse(&bamboo).unwrap().warnings(), Vec::<String>::new());
}

/// Written where a list or a string belongs, or left in an unclosed string: a secret must not
/// come back in the error, which still says where the problem is.
#[test]
fn toml_errors_never_quote_the_offending_value() {
    let source = "[[sources]]\nname = \"hr\"\nscheme = \"token\"\n";
    for (text, place) in [
        (
            format!("{source}secrets = \"TOKEN-LEAK\"\n"),
            "at `sources.secrets`, line 4, column 11",
        ),
        (
            format!("{source}secrets = [\"x\", [\"TOKEN-LEAK\"]]\n"),
            "line 4",
        ),
        (
            "admin_token = 7777777777777777\n".to_owned(),
            "at `admin_token`, line 1, column 15",
        ),
        ("dry_run = \"TOKEN-LEAK\"".to_owned(), "at `dry_run`"),
        (
            "[worker]\nconcurrency = \"TOK\\\"EN-LEAK\"".to_owned(),
            "at `worker.concurrency`",
        ),
        (
            "admin_token = \"TOKEN-LEAK\n".to_owned(),
            "line 1, column 26",
        ),
        ("admin_token = 'TOKEN-LEAK".to_owned(), "line 1"),
        ("admin_token = \"\"\"TOKEN-LEAK".to_owned(), "line 1"),
        ("admin_token = \"TOKEN\\qLEAK\"".to_owned(), "line 1"),
        (
            "admin_token = \"a\"\nadmin_token = \"TOKEN-LEAK\"\n".to_owned(),
            "line 2, column 1",
        ),
        ("admin_token = TOKEN-LEAK".to_owned(), "line 1, column 15"),
        (
            "[atlassian]\nsite_api_token = [\"TOKEN-LEAK\"]".to_owned(),
            "at `atlassian.site_api_token`",
        ),
    ] {
        let found = problems(&text);
        assert_eq!(found.len(), 1, "{found:#?}");
        let problem = &found[0];
        assert!(!problem.contains("TOKEN"), "leaked: {problem}");
        assert!(!problem.contains("7777"), "leaked: {problem}");
        assert!(!problem.contains('\n'), "one line: {problem}");
        assert!(problem.contains(place), "{problem} should say {place}");
    }
    // What was wrong is still said, and what was found is masked.
    let found = problems(&format!("{source}secrets = \"TOKEN-LEAK\"\n"));
    assert!(
        found[0].ends_with("invalid type: string ***, expected a sequence"),
        "{found:#?}"
    );
    let found = problems("admin_token = \"TOKEN-LEAK\n");
    assert!(found[0].starts_with("invalid TOML at line 1"), "{found:#?}");
}

#[test]
fn quoted_values_are_masked_but_field_names_stay() {
    for (message, masked) in [
        (
            r#"invalid type: string "s3cr\"et", expected a sequence"#,
            "invalid type: string ***, expected a sequence",
        ),
        (
            "invalid type: character '\\'', expected a string",
            "invalid type: character ***, expected a string",
        ),
        (
            "invalid value: integer `12`, expected one of `a`, `b`",
            "invalid value: integer ***, expected one of `a`, `b`",
        ),
        ("unknown variant `x`", "unknown variant ***"),
        ("missing field `name`", "missing field `name`"),
        (
            "unknown field `emial`, expected one of `email`",
            "unknown field `emial`, expected one of `email`",
        ),
        (
            "invalid basic string, expected `\"`",
            "invalid basic string, expected `\"`",
        ),
        (r#"unclosed "TOKEN"#, "unclosed ***"),
    ] {
        assert_eq!(redact_quoted_values(message), masked, "{message}");
    }
}

#[test]
fn database_url_passwords_in_the_query_are_masked_too() {
    for (url, shown) in [
        (
            "postgres://u@h/db?password=HUNTER2",
            "postgres://u@h/db?password=***",
        ),
        (
            "postgres://u:HUNTER2@h/db?sslmode=require&password=HUNTER2&application_name=x",
            "postgres://u:***@h/db?sslmode=require&password=***&application_name=x",
        ),
        (
            "postgres://u@h/db?pass%77ord=HUNTER2",
            "postgres://u@h/db?pass%77ord=***",
        ),
        (
            "postgres://u@h/db?options=-c%20search_path%3Dx",
            "postgres://u@h/db?options=-c%20search_path%3Dx",
        ),
        ("postgres://u@h/db", "postgres://u@h/db"),
    ] {
        let config = parse(&format!("database_url = \"{url}\"")).unwrap();
        assert_eq!(config.database_url.redacted(), shown);
        let printed = format!("{config:?}\n{}", config.summary());
        assert!(!printed.contains("HUNTER2"), "{printed}");
        assert!(printed.contains(shown), "{printed}");
    }
    let env = env_of(&[("DATABASE_URL", "postgres://u@h/db?password=HUNTER2")]);
    let config = Config::from_toml("", ConfigOrigin::Defaults, &env).unwrap();
    assert!(!config.summary().contains("HUNTER2"));
}

/// What the driver does not read, it would print in its own warning: a `sslpassword`, an
/// unknown parameter, a `#` fragment are refused before it sees the URL, and never shown.
#[test]
fn database_url_parameters_the_driver_does_not_read_are_refused_unseen() {
    for (url, why) in [
        (
            "postgres://u@h/db?sslpassword=HUNTER2",
            "unknown Postgres connection parameter `sslpassword` (the passphrase",
        ),
        (
            "postgres://u@h/db?sslmode=require&apikey=HUNTER2",
            "unknown Postgres connection parameter `apikey`; its value is not repeated",
        ),
        (
            "postgres://u@h/db?PASSWORD=HUNTER2",
            "unknown Postgres connection parameter `PASSWORD`",
        ),
        (
            "postgres://u@h/db?HUNTER2",
            "unknown Postgres connection parameter (name not shown)",
        ),
        (
            "postgres://u@h/db#password=HUNTER2",
            "has a `#` fragment, which no driver reads",
        ),
        (
            "sqlite://offboard.db#password=HUNTER2",
            "has a `#` fragment, which no driver reads",
        ),
    ] {
        let found = problems(&format!("database_url = \"{url}\""));
        assert_eq!(found.len(), 1, "{url}: {found:#?}");
        assert!(found[0].starts_with("database_url: "), "{found:#?}");
        assert!(found[0].contains(why), "{url}: {found:#?}");
        assert!(!found[0].contains("HUNTER2"), "{found:#?}");
        // Shown anywhere all the same (a Debug of an unchecked URL), every value is masked.
        let printed = format!(
            "{:?} {}",
            DatabaseUrl::new(url),
            DatabaseUrl::new(url).redacted()
        );
        assert!(!printed.contains("HUNTER2"), "{printed}");
    }
    // The same from DATABASE_URL, and through the reader of the store's URL alone.
    let env = env_of(&[("DATABASE_URL", "postgres://u@h/db?sslpassword=HUNTER2")]);
    let err = Config::from_toml("", ConfigOrigin::Defaults, &env).unwrap_err();
    assert!(err.to_string().contains("`sslpassword`"), "{err}");
    assert!(!err.to_string().contains("HUNTER2"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("offboard.toml");
    std::fs::write(&path, "database_url = \"postgres://u@h/db?token=HUNTER2\"").unwrap();
    let err = Config::discover_database_url(Some(&path)).unwrap_err();
    assert!(err.to_string().contains("`token`"), "{err}");
    assert!(!err.to_string().contains("HUNTER2"), "{err}");
    // What the driver reads is taken, its server settings included.
    for url in [
        "postgres://u@h/db?sslmode=verify-full&sslrootcert=/ca.pem&port=5433&user=x&dbname=y",
        "postgres://u@h/db?options[search_path]=s&statement-cache-capacity=10&host=/run/pg",
        "sqlite://offboard.db?mode=rwc",
    ] {
        let config = parse(&format!("database_url = \"{url}\""));
        assert!(config.is_ok(), "{url}: {:?}", config.err());
    }
}

#[test]
fn an_admin_token_needs_sixteen_characters() {
    let found = problems("admin_token = \"fifteen-chars-x\"");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].starts_with("admin_token: must be at least 16 characters"));
    assert!(!found[0].contains("fifteen-chars-x"), "{found:#?}");
    // Characters, not bytes: fifteen of them are too few even in more than sixteen bytes.
    assert_problem("admin_token = \"ééééééééééééééé\"", "at least 16");
    assert!(parse("admin_token = \"sixteen-chars-xx\"").is_ok());
    assert!(parse("admin_token = \"\"").unwrap().admin_token.is_none());

    let short = env_of(&[("OFFBOARD_ADMIN_TOKEN", "short")]);
    let err = Config::from_toml("", ConfigOrigin::Defaults, &short).unwrap_err();
    assert!(
        err.0[0].starts_with("OFFBOARD_ADMIN_TOKEN: must be"),
        "{err}"
    );
    let empty = env_of(&[("OFFBOARD_ADMIN_TOKEN", "")]);
    let config = Config::from_toml("admin_token = \"x\"", ConfigOrigin::Defaults, &empty);
    assert!(config.unwrap().admin_token.is_none());
}

#[test]
fn the_manual_source_names_are_reserved() {
    for name in ["api", "cli", "console"] {
        assert_problem(
            &SOURCE.replace("name = \"hr\"", &format!("name = \"{name}\"")),
            "reserved for jobs enqueued by hand",
        );
    }
}

#[test]
fn check_says_what_an_undo_rule_does() {
    let spec: crate::rules::RuleSpec = toml::from_str(
        "name = \"rehired\"\nemail = \"/email\"\ncancel = true\nundo = true\napproval = true",
    )
    .unwrap();
    assert_eq!(
        super::summary::summarize_rule(&spec),
        "rehired: cancels the person's pending jobs, and gives back what was done (the inverses wait for approval)"
    );
}

#[test]
fn undo_sources_name_configured_or_manual_sources() {
    let rehired = |names: &str| {
        format!(
            "{SOURCE}
  [[sources.rules]]
  name = \"rehired\"
  email = \"/data/email\"
  cancel = true
  undo = true
  undo_sources = {names}

[[sources]]
name = \"jira\"
scheme = \"token\"
secrets = [\"a-long-enough-token\"]
"
        )
    };
    // A later source and the manual ones are known.
    let config = parse(&rehired("[\"api\", \"cli\", \"console\", \"jira\"]")).unwrap();
    assert_eq!(
        config.sources[0].rules[1].undo_sources(),
        ["api", "cli", "console", "jira"]
    );
    let problems = problems(&rehired("[\"api\", \"jria\", \"hr\", \"\"]"));
    let at: Vec<&str> = problems
        .iter()
        .filter(|p| p.contains("undo_sources"))
        .map(String::as_str)
        .collect();
    assert_eq!(at.len(), 2, "{problems:#?}");
    assert!(
        at[0].starts_with("sources[0].rules[1].undo_sources[1]: `jria` is not a source"),
        "{at:?}"
    );
    assert!(
        at[1].starts_with("sources[0].rules[1].undo_sources[3]:"),
        "{at:?}"
    );
    let spec: crate::rules::RuleSpec = toml::from_str(
        "name = \"rehired\"\nemail = \"/email\"\ncancel = true\nundo = true\nundo_sources = [\"api\"]",
    )
    .unwrap();
    assert_eq!(
        super::summary::summarize_rule(&spec),
        "rehired: cancels the person's pending jobs, and gives back what was done, also what api made"
    );
}

#[test]
fn a_rules_ids_are_checked_at_their_key_path() {
    let text = SOURCE.replace(
        "{ action = \"delete_account\", after = \"30d\", allow_content_loss = true }",
        "{ action = \"remove_from_group\", group_id = \"a/b\" }",
    );
    assert_problem(
        &text,
        "sources[0].rules[0]: rule \"contract-ended\": `actions[1].group_id` contains '/'",
    );
}

const ALL_DIRECTORIES_ADMIN: &str =
    "[atlassian]\nadmin_api_key = \"k\"\norg_id = \"o\"\ndirectory_id = \"-\"\n";

#[test]
fn all_directories_is_refused_for_rules_that_write_to_the_directory() {
    // Reported with every other problem, at its key, naming each rule that writes.
    let text = format!(
        "listen = \"nowhere\"\n{ALL_DIRECTORIES_ADMIN}{SOURCE}
  [[sources.rules]]
  name = \"groups\"
  email = \"/email\"
  actions = [{{ action = \"remove_from_group\", group_id = \"g\" }}, \"suspend_access\"]
"
    );
    let found = problems(&text);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].starts_with("listen:"), "{found:#?}");
    assert_eq!(
        found[1],
        "atlassian.directory_id: `-` (all directories) is documented for reads only, but rules \
         write to the directory (source `hr` rule `contract-ended` uses suspend_access; source \
         `hr` rule `groups` uses remove_from_group, suspend_access) — set [atlassian] \
         directory_id to one of the org's directory ids (`offboard doctor` lists them)"
    );
}

#[test]
fn all_directories_is_fine_for_rules_that_only_read_it() {
    let reads = SOURCE.replace("suspend_access", "deactivate_account");
    let config = parse(&format!("{ALL_DIRECTORIES_ADMIN}{reads}")).unwrap();
    assert!(config.directory_is_all());
    assert_eq!(config.directory_refuses(Action::DeactivateAccount), None);
    let why = config.directory_refuses(Action::AddToGroup).unwrap();
    assert!(
        why.starts_with("add_to_group writes to the directory, but directory_id is `-`"),
        "{why}"
    );
    // A real directory id lets every action write.
    let config = parse(&format!(
        "{}{SOURCE}",
        ALL_DIRECTORIES_ADMIN.replace("\"-\"", "\"dir-1\"")
    ))
    .unwrap();
    assert!(!config.directory_is_all());
    assert_eq!(config.directory_refuses(Action::SuspendAccess), None);
}

#[test]
fn the_doctor_loads_what_it_diagnoses_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("offboard.toml");
    std::fs::write(&path, format!("{ALL_DIRECTORIES_ADMIN}{SOURCE}")).unwrap();
    assert!(Config::discover(Some(&path)).is_err());
    let config = Config::discover_to_diagnose(Some(&path)).unwrap();
    assert!(config.directory_is_all());
    // Any other problem still stops it, and is reported with the one it would diagnose.
    std::fs::write(
        &path,
        format!("listen = \"nowhere\"\n{ALL_DIRECTORIES_ADMIN}{SOURCE}"),
    )
    .unwrap();
    let err = Config::discover_to_diagnose(Some(&path)).unwrap_err();
    assert_eq!(err.0.len(), 2, "{err}");
}

#[test]
fn evidence_defaults_and_checks() {
    let config = parse("").unwrap();
    let evidence = &config.evidence;
    assert_eq!(evidence.sla, Duration::from_secs(24 * 3600));
    assert_eq!(evidence.verify_every, Duration::from_secs(5));
    assert_eq!(evidence.recheck_after, Some(Duration::from_secs(24 * 3600)));
    assert!(!evidence.reenqueue_reactivated);
    assert_eq!(
        evidence.pseudonymize_after,
        Duration::from_secs(400 * 24 * 3600)
    );
    assert!(evidence.pseudonym_key.is_none());

    let config = parse(
        "[evidence]\nsla = \"4h\"\nrecheck_after = \"0s\"\nreenqueue_reactivated = true\n\
         pseudonym_key = \"0123456789abcdef0123456789abcdef\"",
    )
    .unwrap();
    assert_eq!(config.evidence.sla, Duration::from_secs(4 * 3600));
    assert_eq!(config.evidence.recheck_after, None, "0s turns rechecks off");
    assert!(config.evidence.reenqueue_reactivated);
    assert!(config.evidence.pseudonym_key.is_some());

    assert_problem("[evidence]\nsla = \"0s\"", "evidence.sla");
    assert_problem("[evidence]\nverify_every = \"0s\"", "evidence.verify_every");
    assert_problem("[evidence]\nsla = \"soon\"", "evidence.sla");
    assert_problem("[evidence]\npseudonym_key = \"short\"", "at least 32 bytes");
    assert_problem("[evidence]\nslo = \"4h\"", "evidence.slo");
    // The key is a secret: no problem repeats it.
    let found = problems("[evidence]\npseudonym_key = \"short-secret-value\"");
    assert!(
        found.iter().all(|p| !p.contains("short-secret-value")),
        "{found:?}"
    );
}

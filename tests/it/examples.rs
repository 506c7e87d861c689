//! Every `examples/*.toml` is a working configuration: it loads with its `env:` references
//! supplied, its sample `examples/*.json` signed as the sender would sign it is accepted with
//! at least one job, and the real binary's `sign` and `check` commands work on it without
//! printing a secret.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use offboard::config::{Config, ConfigOrigin};
use offboard::serve::{Role, Service};
use offboard::store::Store;
use reqwest::StatusCode;
use serde_json::Value;

use crate::both_stores;
use crate::support::app::job_ids;
use crate::support::db::TestDb;

/// The examples the ingestion issue asks for; others may exist and are tested the same way.
const REQUIRED: [&str; 5] = [
    "jira-automation",
    "jira-admin-webhook",
    "bamboohr",
    "hibob",
    "standard-webhooks",
];

struct Example {
    name: String,
    toml_path: PathBuf,
    text: String,
    body: Vec<u8>,
    /// A value for every `env:NAME` the config references.
    env: BTreeMap<String, String>,
}

impl Example {
    /// The single source of the example, which the sample body is meant for.
    fn source_name(&self, config: &Config) -> String {
        assert_eq!(
            config.sources.len(),
            1,
            "{}: an example has exactly one source, matching its sample body",
            self.name
        );
        config.sources[0].name.clone()
    }

    /// The configuration as the service would load it, with the test's store and a free port
    /// given through the documented environment overrides.
    fn config(&self, db: &TestDb) -> Config {
        let env = |name: &str| match name {
            "DATABASE_URL" => Some(db.url.clone()),
            "OFFBOARD_LISTEN" => Some("127.0.0.1:0".to_owned()),
            other => self.env.get(other).cloned(),
        };
        Config::from_toml(&self.text, ConfigOrigin::File(self.toml_path.clone()), &env)
            .unwrap_or_else(|e| panic!("{} does not load: {e}", self.name))
    }

    /// The sample as its sender would send it now: where the source checks a timestamp in
    /// the body (`timestamp_pointer`), that field holds the current time, in epoch
    /// milliseconds as Jira writes it.
    fn fresh_body(&self, config: &Config) -> Vec<u8> {
        let source = config.source(&self.source_name(config)).expect("source");
        let Some(pointer) = &source.timestamp_pointer else {
            return self.body.clone();
        };
        let mut body: Value = serde_json::from_slice(&self.body).expect("sample is JSON");
        let stamp = body
            .pointer_mut(pointer)
            .unwrap_or_else(|| panic!("{}: the sample has no {pointer}", self.name));
        *stamp = Value::from(chrono::Utc::now().timestamp_millis());
        serde_json::to_vec_pretty(&body).expect("JSON")
    }

    fn secret_values(&self) -> Vec<String> {
        self.env
            .values()
            .flat_map(|v| [v.clone(), v.trim_start_matches("whsec_").to_owned()])
            .collect()
    }
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn examples() -> Vec<Example> {
    let mut found: Vec<Example> = std::fs::read_dir(examples_dir())
        .expect("examples/ exists")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .map(|toml_path| {
            let name = toml_path
                .file_stem()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let json_path = toml_path.with_extension("json");
            let text = std::fs::read_to_string(&toml_path).expect("read example config");
            let body = std::fs::read(&json_path)
                .unwrap_or_else(|e| panic!("{name}: no sample body {}: {e}", json_path.display()));
            serde_json::from_slice::<Value>(&body)
                .unwrap_or_else(|e| panic!("{name}.json is not JSON: {e}"));
            let env = referenced_env(&text)
                .into_iter()
                .map(|var| {
                    let value = test_secret(&var);
                    (var, value)
                })
                .collect();
            Example {
                name,
                toml_path,
                text,
                body,
                env,
            }
        })
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    for required in REQUIRED {
        assert!(
            found.iter().any(|e| e.name == required),
            "examples/{required}.toml is missing"
        );
    }
    found
}

/// The `NAME`s of every `"env:NAME"` value in the config (comments are not references).
fn referenced_env(text: &str) -> Vec<String> {
    fn walk(value: &toml::Value, names: &mut Vec<String>) {
        match value {
            toml::Value::String(s) => names.extend(s.strip_prefix("env:").map(str::to_owned)),
            toml::Value::Array(items) => items.iter().for_each(|v| walk(v, names)),
            toml::Value::Table(table) => table.values().for_each(|v| walk(v, names)),
            _ => {}
        }
    }
    let table: toml::Table = toml::from_str(text).expect("example is TOML");
    let mut names = Vec::new();
    table.values().for_each(|v| walk(v, &mut names));
    names.sort();
    names.dedup();
    names
}

/// A distinct value per variable that every scheme accepts as a secret: Standard Webhooks
/// needs `whsec_` + base64, the others take any string.
fn test_secret(var: &str) -> String {
    format!(
        "whsec_{}",
        STANDARD.encode(format!("test value of {var}, 32+ bytes long"))
    )
}

/// The service on a free port over `db`, without the worker: the examples name real
/// Atlassian sites, which a test must never call.
struct Running {
    base_url: String,
    store: Arc<dyn Store>,
    service: Service,
}

async fn start(db: &TestDb, config: Config) -> Running {
    // Test builds link two rustls providers (a dev-dependency brings aws-lc), so rustls
    // cannot pick one by itself.
    offboard::install_tls_provider();
    let store = db.store().await;
    let service = Service::start_with_store(Arc::new(config), store.clone(), Role::Api)
        .await
        .expect("start the service");
    let addr = service.addr;
    Running {
        base_url: format!("http://{addr}"),
        store,
        service,
    }
}

async fn post(base_url: &str, source: &str, body: &[u8], headers: &[(String, String)]) -> Value {
    let mut request = reqwest::Client::new()
        .post(format!("{base_url}/hooks/{source}"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request.send().await.expect("POST /hooks");
    let status = response.status();
    let text = response.text().await.expect("body");
    assert_eq!(status, StatusCode::ACCEPTED, "{source}: {text}");
    serde_json::from_str(&text).expect("JSON answer")
}

async fn every_example_accepts_its_sample(db: TestDb) {
    for example in examples() {
        let config = example.config(&db);
        assert!(
            config.dry_run,
            "{}: examples start in dry run",
            example.name
        );
        let source = example.source_name(&config);
        let body = example.fresh_body(&config);
        let headers = config
            .source(&source)
            .expect("source")
            .verifier
            .sign(&body, chrono::Utc::now());
        let app = start(&db, config).await;
        let answer = post(&app.base_url, &source, &body, &headers).await;
        let ids = job_ids(&answer);
        assert!(
            !ids.is_empty(),
            "{}: no job from its sample: {answer}",
            example.name
        );
        assert_eq!(answer["refused"], serde_json::json!([]), "{}", example.name);
        let stored = app
            .store
            .list_deliveries(Some(&source), 10)
            .await
            .expect("deliveries");
        assert_eq!(stored.len(), 1, "{}", example.name);
        app.service.stop().await.expect("stops");
    }
}
both_stores!(every_example_on, every_example_accepts_its_sample);

fn offboard(args: &[&str], env: &BTreeMap<String, String>) -> Output {
    Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args(args)
        .env_clear()
        .envs(env)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run offboard")
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// `offboard sign` prints `Name: value` lines that, sent as headers, get the sample accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_command_headers_are_accepted() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().expect("temporary folder");
    for example in examples() {
        let config = example.config(&db);
        let source = example.source_name(&config);
        let body = example.fresh_body(&config);
        let body_path = dir.path().join(format!("{}.json", example.name));
        std::fs::write(&body_path, &body).expect("write the sample");
        let output = offboard(
            &[
                "sign",
                "--source",
                &source,
                "--config",
                path_arg(&example.toml_path),
                path_arg(&body_path),
            ],
            &example.env,
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{}: sign failed: {}",
            example.name,
            String::from_utf8_lossy(&output.stderr)
        );
        let headers: Vec<(String, String)> = stdout
            .lines()
            .map(|line| {
                let (name, value) = line
                    .split_once(": ")
                    .unwrap_or_else(|| panic!("{}: not `Name: value`: {line:?}", example.name));
                (name.to_owned(), value.to_owned())
            })
            .collect();
        assert!(
            !headers.is_empty(),
            "{}: sign printed nothing",
            example.name
        );

        let app = start(&db, config).await;
        let answer = post(&app.base_url, &source, &body, &headers).await;
        assert!(!job_ids(&answer).is_empty(), "{}: {answer}", example.name);
        app.service.stop().await.expect("stops");
    }
}

/// `offboard check` accepts every example and never prints a secret it resolved.
#[test]
fn check_command_accepts_examples_without_printing_secrets() {
    for example in examples() {
        let config = path_arg(&example.toml_path);
        let output = offboard(&["check", "--config", config], &example.env);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{}: check failed ({:?}): {stderr}",
            example.name,
            output.status.code()
        );
        assert!(
            stdout.contains("dry run: yes"),
            "{}: {stdout}",
            example.name
        );
        for secret in example.secret_values() {
            assert!(
                !stdout.contains(&secret) && !stderr.contains(&secret),
                "{}: check printed a secret:\n{stdout}{stderr}",
                example.name
            );
        }

        // Without its variables the example is refused with usage status 2, naming them.
        if let Some(var) = example.env.keys().next() {
            let output = offboard(&["check", "--config", config], &BTreeMap::new());
            assert_eq!(output.status.code(), Some(2), "{}", example.name);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains(var.as_str()), "{}: {stderr}", example.name);
        }
    }
}

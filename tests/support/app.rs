//! `spawn_app`: the real service on `127.0.0.1:0` over a real store, with its Atlassian base
//! URLs pointed at the in-process fake.

use offboard::domain::{Job, JobWithEvents};
use std::sync::Arc;
use std::time::Duration;

use offboard::config::{Config, ConfigOrigin};
use offboard::domain::JobState;
use offboard::http::server::Limits;
use offboard::serve::{Role, Service};
use offboard::store::Store;
use serde_json::Value;

use super::db::TestDb;
use super::fake_atlassian::FakeAtlassian;

pub const ADMIN_TOKEN: &str = "test-admin-token";

/// The `[atlassian]` section that points at `fake`.
pub fn atlassian_toml(fake: &FakeAtlassian) -> String {
    fake.atlassian_toml()
}

/// Builds a config: the test's listen address, store and admin token, then `toml` (which may
/// start with more top-level keys, then tables).
pub fn test_config(db: &TestDb, toml: &str) -> Config {
    // The worker's verification reads (README, "Verification and recheck") would add to the
    // requests a test counts: unless a test configures `[evidence]`, they wait an hour, and
    // tests that verify run a pass themselves (`worker::verification::pass`).
    let quiet = if toml.contains("[evidence]") {
        ""
    } else {
        "\n[evidence]\nverify_every = \"1h\"\n"
    };
    let text = format!(
        "listen = \"127.0.0.1:0\"\ndatabase_url = \"{}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n{toml}{quiet}",
        db.url
    );
    Config::from_toml(&text, ConfigOrigin::Defaults, &|_| None)
        .unwrap_or_else(|e| panic!("test config is invalid: {e}\n{text}"))
}

pub struct TestApp {
    pub base_url: String,
    pub store: Arc<dyn Store>,
    pub config: Arc<Config>,
    pub http: reqwest::Client,
    service: Option<Service>,
}

impl TestApp {
    pub async fn spawn(db: &TestDb, toml: &str) -> TestApp {
        Self::spawn_with_role(db, toml, Role::All).await
    }

    pub async fn spawn_with_role(db: &TestDb, toml: &str, role: Role) -> TestApp {
        Self::spawn_with(db, toml, role, None).await
    }

    /// The service with other HTTP time limits than the default ones.
    pub async fn spawn_with_limits(db: &TestDb, toml: &str, limits: Limits) -> TestApp {
        Self::spawn_with(db, toml, Role::All, Some(limits)).await
    }

    async fn spawn_with(db: &TestDb, toml: &str, role: Role, limits: Option<Limits>) -> TestApp {
        // Test builds link two rustls providers (a dev-dependency brings aws-lc), so rustls
        // cannot pick one by itself for the test's own HTTP client.
        offboard::install_tls_provider();
        let config = Arc::new(test_config(db, toml));
        let store = db.store().await;
        let service = match limits {
            Some(limits) => {
                Service::start_with_limits(config.clone(), store.clone(), role, limits).await
            }
            None => Service::start_with_store(config.clone(), store.clone(), role).await,
        }
        .expect("start the service");
        // Live, the service checks its configuration against Atlassian at start; tests that
        // count the fake's requests start counting once that is over.
        if !config.dry_run && config.atlassian.is_some() {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while service.doctor.get().is_none() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let base_url = format!("http://{}", service.addr);
        TestApp {
            base_url,
            store,
            config,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            service: Some(service),
        }
    }

    /// Posts `body` to `/hooks/{source}` with exactly these headers.
    pub async fn post_hook(
        &self,
        source: &str,
        body: impl Into<reqwest::Body>,
        headers: &[(String, String)],
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/hooks/{source}", self.base_url))
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        request.send().await.expect("POST /hooks")
    }

    /// Signs `body` as the source's genuine sender would, then posts it.
    pub async fn send_signed(&self, source: &str, body: &[u8]) -> reqwest::Response {
        let headers = self.sign(source, body);
        self.post_hook(source, body.to_vec(), &headers).await
    }

    pub fn sign(&self, source: &str, body: &[u8]) -> Vec<(String, String)> {
        self.config
            .source(source)
            .unwrap_or_else(|| panic!("no source {source}"))
            .verifier
            .sign(body, chrono::Utc::now())
    }

    /// Sends and expects a 2xx; returns the parsed body.
    pub async fn deliver(&self, source: &str, body: &Value) -> Value {
        let response = self.send_signed(source, body.to_string().as_bytes()).await;
        let status = response.status();
        let text = response.text().await.expect("body");
        assert!(status.is_success(), "delivery answered {status}: {text}");
        serde_json::from_str(&text).expect("JSON body")
    }

    pub async fn job(&self, id: &str) -> JobWithEvents {
        let id = id.parse().expect("job id");
        self.store
            .get_job(id)
            .await
            .expect("get job")
            .expect("job exists")
    }

    /// Waits (polling the store) until the job is in a final state, or panics after `timeout`.
    pub async fn wait_final(&self, id: &str, timeout: Duration) -> JobWithEvents {
        self.wait_for(id, timeout, |job| {
            matches!(
                job.state,
                JobState::Succeeded | JobState::Failed | JobState::Cancelled
            )
        })
        .await
    }

    pub async fn wait_for(
        &self,
        id: &str,
        timeout: Duration,
        done: impl Fn(&Job) -> bool,
    ) -> JobWithEvents {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let job = self.job(id).await;
            if done(&job.job) {
                return job;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("job {id} did not reach the expected state in {timeout:?}: {job:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base_url))
            .bearer_auth(ADMIN_TOKEN)
    }

    /// A second handle on the same running service (for concurrent senders); dropping it
    /// does not stop the service.
    pub fn clone_handle(&self) -> TestApp {
        TestApp {
            base_url: self.base_url.clone(),
            store: self.store.clone(),
            config: self.config.clone(),
            http: self.http.clone(),
            service: None,
        }
    }

    pub async fn stop(mut self) {
        if let Some(service) = self.service.take() {
            service.stop().await.expect("service stops cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(service) = &self.service {
            service.shutdown.cancel();
        }
    }
}

/// The job ids of a 202/200 webhook answer.
pub fn job_ids(body: &Value) -> Vec<String> {
    body["jobs"]
        .as_array()
        .map(|jobs| {
            jobs.iter()
                .map(|j| j["id"].as_str().expect("job id").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

//! `offboard serve`: migrate, open the store, then run the HTTP receiver and/or the worker
//! until a shutdown signal, and drain.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::atlassian::Client;
use crate::config::Config;
use crate::doctor::LatestReport;
use crate::http::server::Limits;
use crate::http::{self, AppState, CustomerSnapshot};
use crate::store::{self, Store, StoreOptions};
use crate::worker;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    All,
    Api,
    Worker,
}

impl Role {
    fn runs_api(self) -> bool {
        matches!(self, Role::All | Role::Api)
    }

    fn runs_worker(self) -> bool {
        matches!(self, Role::All | Role::Worker)
    }
}

/// A started service: the address it listens on (every role serves HTTP) and the task that
/// ends when it has drained after `shutdown` was cancelled.
pub struct Service {
    pub addr: SocketAddr,
    pub store: Arc<dyn Store>,
    pub shutdown: CancellationToken,
    /// The latest doctor report; the check at start sets it when live.
    pub doctor: LatestReport,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Service {
    /// Opens and migrates the store, binds `config.listen` (port 0 picks a free port), and
    /// starts what `role` asks for.
    pub async fn start(config: Config, role: Role) -> anyhow::Result<Service> {
        let config = Arc::new(config);
        let store = store::open_migrated(config.database_url.expose(), &StoreOptions::default())
            .await
            .with_context(|| format!("cannot open the store {}", config.database_url.redacted()))?;
        Self::start_with_store(config, store, role).await
    }

    pub async fn start_with_store(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        role: Role,
    ) -> anyhow::Result<Service> {
        let limits = Limits::new(config.max_connections);
        Self::start_with_limits(config, store, role, limits).await
    }

    /// As `start_with_store`, with other HTTP time limits than the documented ones (for tests).
    pub async fn start_with_limits(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        role: Role,
        limits: Limits,
    ) -> anyhow::Result<Service> {
        let atlassian = atlassian_client(&config, store.as_ref());
        Self::start_with_client(config, store, role, limits, atlassian).await
    }

    /// As `start_with_limits`, with this Atlassian client: the fleet benchmark
    /// (`examples/fleet_bench.rs`) measures replicas that each pace themselves, as before
    /// the fleet's budget, beside replicas that share it.
    pub async fn start_with_client(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        role: Role,
        limits: Limits,
        atlassian: Option<Client>,
    ) -> anyhow::Result<Service> {
        crate::install_tls_provider();
        let shutdown = CancellationToken::new();
        tracing::info!(
            config = %config.origin,
            store = %config.database_url.redacted(),
            dry_run = config.dry_run,
            role = ?role,
            sources = config.sources.len(),
            "starting offboard {}",
            env!("CARGO_PKG_VERSION")
        );
        let worker = role.runs_worker().then(|| {
            worker::spawn(
                config.clone(),
                store.clone(),
                atlassian.clone(),
                shutdown.clone(),
            )
        });
        // Every role listens: a worker-only process still answers /healthz, /readyz and
        // /metrics, so it can be probed and its counters scraped.
        for warning in config.warnings() {
            tracing::warn!("{warning}");
        }
        if role.runs_api() && config.admin_token.is_none() {
            tracing::warn!("no admin_token configured: every /api route answers 401");
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "listening");
        let state = AppState {
            config: config.clone(),
            store: store.clone(),
            doctor: LatestReport::default(),
            atlassian,
            customers: CustomerSnapshot::default(),
            token_guesses: Default::default(),
        };
        let doctor = state.doctor.clone();
        if !config.dry_run {
            tokio::spawn(check_at_start(config.clone(), doctor.clone()));
        }
        let app = if role.runs_api() {
            http::router(state)
        } else {
            http::ops_router(state)
        };
        let stop = shutdown.clone();
        let server = tokio::spawn(http::server::serve(listener, app, limits, stop));
        // The audit trail is sealed, and old cases pseudonymized, wherever the worker runs.
        let evidence = role
            .runs_worker()
            .then(|| crate::evidence::spawn(config.clone(), store.clone(), shutdown.clone()));
        let sealed_store = store.clone();
        let task = tokio::spawn(async move {
            server.await.context("HTTP server task panicked")?;
            if let Some(worker) = worker {
                worker.await.context("worker task panicked")?;
            }
            if let Some(evidence) = evidence {
                evidence.await.context("evidence task panicked")?;
                crate::evidence::seal_at_exit(&*sealed_store).await;
            }
            Ok(())
        });
        Ok(Service {
            addr,
            store,
            shutdown,
            doctor,
            task,
        })
    }

    /// Waits until the service has drained after `shutdown` was cancelled.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("service task panicked")?
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }
}

/// The process's one Atlassian client. The worker and the admin API share it, and with it
/// the pacing buckets: reading the customer inventory slows the worker's calls rather than
/// adding to the rate Atlassian sees.
fn atlassian_client(config: &Config, store: &dyn Store) -> Option<Client> {
    let atlassian = config.atlassian.as_ref()?;
    Client::for_worker(atlassian, &config.worker, store.fleet_budget())
        .inspect_err(|e| tracing::error!(error = %e, "cannot build the Atlassian client"))
        .ok()
}

/// Live, the doctor's checks run once at start: a wrong id or a missing permission is in
/// the log (and the console's header) before the first job meets it. The service keeps
/// running either way.
async fn check_at_start(config: Arc<Config>, latest: LatestReport) {
    let report = crate::doctor::run(&config).await;
    for check in report.failures() {
        tracing::error!(check = %check.name, detail = %check.detail, "doctor check failed");
    }
    if report.ok {
        tracing::info!(checks = report.checks.len(), "doctor checks passed");
    }
    latest.set(report);
}

/// Runs until SIGINT or SIGTERM, then drains.
pub async fn run(config: Config, role: Role) -> anyhow::Result<()> {
    // The signals are taken before the service says it is listening: a signal sent as soon
    // as it says so must drain it, not kill it.
    let signalled = shutdown_signal()?;
    let service = Service::start(config, role).await?;
    let shutdown = service.shutdown.clone();
    tokio::spawn(async move {
        signalled.await;
        tracing::info!("shutdown requested: no new work is taken, in-flight work finishes");
        shutdown.cancel();
    });
    service.wait().await?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGINT or SIGTERM, handled from now on; the future ends when one arrives.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {},
                _ = terminate.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

//! Real databases for tests: a temp-file SQLite, or a fresh Postgres schema per test in the
//! database `TEST_DATABASE_URL` names, dropped afterwards.
//!
//! Without `TEST_DATABASE_URL` the Postgres half of a test prints a notice and passes; with
//! `CI=true` a missing Postgres is a failure, never a skip.

use std::io::Write as _;
use std::sync::{Arc, Once};

use offboard::store::{self, Store, StoreOptions};
use sqlx::{Connection, PgConnection};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    /// Keeps the SQLite file's directory alive.
    _dir: Option<tempfile::TempDir>,
    /// For Postgres: the server URL and what to drop.
    cleanup: Option<(String, String, Dropped)>,
}

/// What a Postgres test database is, and is dropped as.
#[derive(Clone, Copy)]
enum Dropped {
    Schema,
    Database,
}

static SKIP_NOTICE: Once = Once::new();

impl TestDb {
    /// A database someone else owns (e.g. a `PgCluster`); nothing is dropped afterwards.
    pub fn existing(backend: Backend, url: String) -> TestDb {
        TestDb {
            backend,
            url,
            _dir: None,
            cleanup: None,
        }
    }

    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("offboard.db").display());
        TestDb {
            backend: Backend::Sqlite,
            url,
            _dir: Some(dir),
            cleanup: None,
        }
    }

    /// A fresh, empty schema in the database `TEST_DATABASE_URL` names.
    pub async fn postgres() -> Option<TestDb> {
        let server = Self::test_server()?;
        // A schema per test, not a database: CREATE DATABASE takes about a second and queues
        // behind the others, a schema takes milliseconds. The store finds its tables through
        // the connection's search_path.
        let name = format!("offboard_test_{:016x}", rand::random::<u64>());
        on_server(&server, &format!("CREATE SCHEMA {name}")).await;
        let separator = if server.contains('?') { '&' } else { '?' };
        let url = format!("{server}{separator}options=-c%20search_path%3D{name}");
        Some(TestDb {
            backend: Backend::Postgres,
            url,
            _dir: None,
            cleanup: Some((server, name, Dropped::Schema)),
        })
    }

    /// A fresh database of its own on the server `TEST_DATABASE_URL` names, for what a
    /// schema does not keep apart: `NOTIFY` reaches every listener of the database. It takes
    /// about a second to create.
    pub async fn postgres_database() -> Option<TestDb> {
        let server = Self::test_server()?;
        let name = format!("offboard_test_{:016x}", rand::random::<u64>());
        on_server(&server, &format!("CREATE DATABASE {name}")).await;
        let (base, query) = server.split_once('?').unwrap_or((server.as_str(), ""));
        let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
        let url = match query {
            "" => format!("{base}/{name}"),
            query => format!("{base}/{name}?{query}"),
        };
        Some(TestDb {
            backend: Backend::Postgres,
            url,
            _dir: None,
            cleanup: Some((server, name, Dropped::Database)),
        })
    }

    /// The server `TEST_DATABASE_URL` names; `None` (with a notice) where it is not set.
    fn test_server() -> Option<String> {
        let Some(server) = std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "CI=true but TEST_DATABASE_URL is not set: the Postgres store suite must run in CI"
                );
            }
            SKIP_NOTICE.call_once(|| {
                // Written past the test harness's capture so the skip is visible.
                let _ = writeln!(
                    std::io::stderr(),
                    "notice: TEST_DATABASE_URL is not set; skipping the Postgres half of the store tests"
                );
            });
            return None;
        };
        Some(server)
    }

    pub async fn store(&self) -> Arc<dyn Store> {
        store::open_migrated(&self.url, &StoreOptions::default())
            .await
            .expect("open and migrate the test store")
    }
}

/// Runs one statement on the test server, to make what a test works in.
async fn on_server(server: &str, statement: &str) {
    let mut conn = PgConnection::connect(server)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to TEST_DATABASE_URL: {e}"));
    sqlx::query(statement)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
    conn.close().await.ok();
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((server, name, dropped)) = self.cleanup.take() else {
            return;
        };
        // Drop runs outside any runtime guarantee; use a small one of our own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&server).await {
                    let drop = match dropped {
                        Dropped::Schema => format!("DROP SCHEMA IF EXISTS {name} CASCADE"),
                        Dropped::Database => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                    };
                    let _ = sqlx::query(&drop).execute(&mut conn).await;
                }
            });
        })
        .join();
    }
}

/// Runs one async test body against SQLite and against Postgres:
/// `both_stores!(name, body_fn)` where `async fn body_fn(db: TestDb)`.
#[macro_export]
macro_rules! both_stores {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let db = $crate::support::db::TestDb::sqlite();
                super::$body(db).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let Some(db) = $crate::support::db::TestDb::postgres().await else {
                    return;
                };
                super::$body(db).await;
            }
        }
    };
}

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
    /// For Postgres: the server URL and the schema to drop.
    cleanup: Option<(String, String)>,
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
        // A schema per test, not a database: CREATE DATABASE takes about a second and queues
        // behind the others, a schema takes milliseconds. The store finds its tables through
        // the connection's search_path.
        let name = format!("offboard_test_{:016x}", rand::random::<u64>());
        let mut conn = PgConnection::connect(&server)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to TEST_DATABASE_URL: {e}"));
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut conn)
            .await
            .expect("create test schema");
        conn.close().await.ok();
        let separator = if server.contains('?') { '&' } else { '?' };
        let url = format!("{server}{separator}options=-c%20search_path%3D{name}");
        Some(TestDb {
            backend: Backend::Postgres,
            url,
            _dir: None,
            cleanup: Some((server, name)),
        })
    }

    pub async fn store(&self) -> Arc<dyn Store> {
        store::open_migrated(&self.url, &StoreOptions::default())
            .await
            .expect("open and migrate the test store")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((server, name)) = self.cleanup.take() else {
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
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .execute(&mut conn)
                        .await;
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

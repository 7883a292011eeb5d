//! The test harness: a real mandate server on 127.0.0.1:0 against a fresh database.

pub mod callers;
pub mod downstream;
pub mod fixtures;
pub mod idp;
pub mod postgres;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mandate::clock::ManualClock;
use mandate::server::config::{AdminTokenSource, Config, Database};
use mandate::server::secrets::Secret;
use mandate::server::startup::{Options, Server};
use mandate::server::store::{self, SharedStore};
use reqwest::Method;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The real monotonic time, for tests that wait on real processes and connections or time real
/// work. The service's own code asks its injected clock instead (`clippy.toml` bans this
/// elsewhere).
#[expect(
    clippy::disallowed_methods,
    reason = "tests wait on real processes; the service reads its clock"
)]
pub fn real_now() -> std::time::Instant {
    std::time::Instant::now()
}

pub use postgres::TestDb;

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A fresh Postgres database.
    Postgres,
    /// A fresh SQLite file (the embedded default).
    Sqlite,
}

/// The configured (bootstrap) admin token of every test server.
pub const ADMIN_TOKEN: &str = "mnd_adm_test-bootstrap-0123456789abcdefghijklmnopqrstuvwxyz";

/// The instant every test clock starts at.
pub fn test_epoch() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T09:00:00.123456Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// A database (Postgres or SQLite) that lives as long as the value.
pub struct TestDatabase {
    /// The store configuration pointing at it.
    pub database: Database,
    /// Holds the SQLite file or data directory.
    pub dir: tempfile::TempDir,
    _postgres: Option<TestDb>,
}

impl TestDatabase {
    /// A fresh, empty database of the given kind.
    pub async fn new(backend: Backend) -> TestDatabase {
        let dir = tempfile::tempdir().unwrap();
        match backend {
            Backend::Postgres => {
                let db = TestDb::create().await;
                TestDatabase {
                    database: Database::from_url(&db.url).unwrap(),
                    dir,
                    _postgres: Some(db),
                }
            }
            Backend::Sqlite => TestDatabase {
                database: Database::Embedded,
                dir,
                _postgres: None,
            },
        }
    }

    /// A database at `url` that this value does not own (a private cluster's).
    pub fn at(url: &str) -> TestDatabase {
        TestDatabase {
            database: Database::from_url(url).unwrap(),
            dir: tempfile::tempdir().unwrap(),
            _postgres: None,
        }
    }

    /// Opens a store on this database (not yet migrated).
    pub async fn store(&self) -> SharedStore {
        store::connect(&self.database, self.dir.path(), 5)
            .await
            .unwrap()
    }

    /// A URL that opens this database directly, for checks the API does not offer.
    pub fn url(&self) -> String {
        match &self.database {
            Database::Postgres(url) => url.expose().to_owned(),
            sqlite => {
                let path = sqlite.sqlite_path(self.data_dir()).unwrap();
                format!("sqlite://{}", path.display())
            }
        }
    }

    /// The data directory that belongs to this database.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

/// With `TEST_LOG` set (to a filter such as `mandate=debug`, or `1` for `mandate=info`), the
/// servers the tests start log to the test's output: `TEST_LOG=1 cargo test --test api NAME
/// -- --nocapture`. Unset, they log nothing.
fn log_on_demand() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    let Ok(filter) = std::env::var("TEST_LOG") else {
        return;
    };
    ONCE.call_once(|| {
        let filter = if filter == "1" {
            "mandate=info".to_owned()
        } else {
            filter
        };
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    });
}

/// A running mandate server.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// An HTTP client.
    pub client: reqwest::Client,
    /// The server's store, for assertions on what was recorded.
    pub store: SharedStore,
    /// The server's clock; tests move it.
    pub clock: Arc<ManualClock>,
    /// What the server's handlers share, to run its periodic work on demand.
    pub state: mandate::server::state::AppState,
    /// The database and data directory.
    pub db: TestDatabase,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    /// Starts mandate in development mode on a fresh database of the given kind.
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_on(TestDatabase::new(backend).await).await
    }

    /// Starts mandate in development mode on `db`.
    pub async fn spawn_on(db: TestDatabase) -> TestApp {
        Self::spawn_with(db, |_| {}).await
    }

    /// Starts mandate in development mode on `db`, with `configure` applied to its configuration.
    pub async fn spawn_with(db: TestDatabase, configure: impl FnOnce(&mut Config)) -> TestApp {
        log_on_demand();
        let mut config = Config::defaults();
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.database = db.database.clone();
        config.data_dir = db.data_dir().to_path_buf();
        config.database_max_connections = 5;
        config.admin_token = Some(AdminTokenSource::Value(Secret::new(ADMIN_TOKEN.to_owned())));
        configure(&mut config);
        let clock = Arc::new(ManualClock::new(test_epoch()));
        let server = Server::prepare(
            config,
            Options {
                dev: true,
                dev_seed: false,
            },
            clock.clone(),
        )
        .await
        .unwrap();
        let addr = server.local_addr().unwrap();
        let store = server.state().store.clone();
        let state = server.state().clone();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        TestApp {
            base: format!("http://{addr}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            store,
            clock,
            state,
            db,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// Sends `method path` with an optional bearer token and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.unwrap()
    }

    /// Calls as `token` and returns the status and the JSON body (`Null` when empty).
    pub async fn as_token(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let response = self.call(method, path, Some(token), body.as_ref()).await;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, json)
    }

    /// Calls as the bootstrap admin.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.as_token(ADMIN_TOKEN, method, path, body).await
    }

    /// Calls as the bootstrap admin and asserts the status.
    pub async fn admin_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        status: u16,
    ) -> Value {
        let (got, json) = self.admin(method.clone(), path, body).await;
        assert_eq!(got, status, "{method} {path}: {json}");
        json
    }

    /// Creates a token with `role` over the API and returns it.
    pub async fn token_with_role(&self, name: &str, role: &str) -> String {
        let body = serde_json::json!({"name": name, "role": role});
        let json = self
            .admin_ok(Method::POST, "/v1/admin/tokens", Some(body), 201)
            .await;
        json["token"].as_str().unwrap().to_owned()
    }

    /// How many audit events the store holds.
    pub async fn audit_len(&self) -> usize {
        self.store.audit_events(0, 10_000).await.unwrap().len()
    }

    /// Runs `sql`, a query of one number, on the app's database with a pool of its own.
    pub async fn count(&self, sql: &str) -> i64 {
        match &self.db.database {
            mandate::server::config::Database::Postgres(url) => {
                let pool = sqlx::PgPool::connect(url.expose()).await.unwrap();
                let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
                pool.close().await;
                n
            }
            _ => {
                let pool = sqlx::SqlitePool::connect(&self.db.url()).await.unwrap();
                let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
                pool.close().await;
                n
            }
        }
    }

    /// Runs the statement `sql` on the app's database with a pool of its own.
    pub async fn execute(&self, sql: &str) {
        match &self.db.database {
            mandate::server::config::Database::Postgres(url) => {
                let pool = sqlx::PgPool::connect(url.expose()).await.unwrap();
                sqlx::query(sql).execute(&pool).await.unwrap();
                pool.close().await;
            }
            _ => {
                let pool = sqlx::SqlitePool::connect(&self.db.url()).await.unwrap();
                sqlx::query(sql).execute(&pool).await.unwrap();
                pool.close().await;
            }
        }
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Runs one async test body against both stores: `both_stores!(name, |backend| async { … })`
/// expands to `mod name { on_postgres, on_sqlite }`.
#[macro_export]
macro_rules! both_stores {
    ($(#[$meta:meta])* $name:ident, $body:expr) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn on_postgres() {
                ($body)($crate::helpers::Backend::Postgres).await;
            }

            #[tokio::test]
            async fn on_sqlite() {
                ($body)($crate::helpers::Backend::Sqlite).await;
            }
        }
    };
}

/// Asserts that a response is problem+json with the given status, and returns the document.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(body["type"]
        .as_str()
        .unwrap()
        .starts_with("urn:mandate:problem:"));
    assert!(body["title"].is_string());
    body
}

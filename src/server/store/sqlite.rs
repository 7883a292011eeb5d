//! The SQLite store: the embedded default, so mandate runs with nothing installed.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::types::Json;
use sqlx::Row;
use uuid::Uuid;

use super::{
    check_root_key, kid_from_db, root_key_registered, AuditEvent, AuditOutcome, Backend,
    MigrationReport, NewAuditEvent, NewRootKey, RootKeyRecord, Store, StoreError, ACQUIRE_TIMEOUT,
};

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// mandate's records in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path`.
    pub async fn open(path: &Path, max_connections: u32) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a committed issuance survives power loss, as on Postgres.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    /// The connection pool, for tests and tools that inspect the database directly.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

async fn applied_migrations(pool: &SqlitePool) -> usize {
    // Before the first run the bookkeeping table does not exist: nothing is applied.
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await
        .map_or(0, |n| usize::try_from(n).unwrap_or(0))
}

/// Postgres keeps microseconds; SQLite keeps whatever it is given. Truncate so both stores
/// return the same instant.
fn micros(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

fn parse_uuid(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|_| StoreError::Corrupt(format!("uuid `{text}`")))
}

fn root_key_from_row(row: &SqliteRow) -> Result<RootKeyRecord, StoreError> {
    Ok(RootKeyRecord {
        kid: kid_from_db(row.try_get("kid")?)?,
        algorithm: row.try_get("algorithm")?,
        public_key: row.try_get("public_key")?,
        created_at: row.try_get("created_at")?,
    })
}

fn audit_from_row(row: &SqliteRow) -> Result<AuditEvent, StoreError> {
    let Json(details) = row.try_get("details")?;
    Ok(AuditEvent {
        seq: row.try_get("seq")?,
        id: parse_uuid(row.try_get("id")?)?,
        occurred_at: row.try_get("occurred_at")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        outcome: AuditOutcome::parse(row.try_get("outcome")?)?,
        details,
    })
}

const INSERT_AUDIT: &str = "INSERT INTO audit_events \
     (id, occurred_at, actor, action, target, outcome, details) \
     VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *";

async fn insert_audit(
    conn: &mut sqlx::SqliteConnection,
    event: &NewAuditEvent,
) -> Result<AuditEvent, StoreError> {
    let row = sqlx::query(INSERT_AUDIT)
        .bind(event.id.to_string())
        .bind(micros(event.occurred_at))
        .bind(&event.actor)
        .bind(&event.action)
        .bind(&event.target)
        .bind(event.outcome.as_str())
        .bind(Json(&event.details))
        .fetch_one(conn)
        .await?;
    audit_from_row(&row)
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    #[tracing::instrument(skip(self), err)]
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    #[tracing::instrument(skip(self), err)]
    async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        let before = applied_migrations(&self.pool).await;
        MIGRATOR.run(&self.pool).await?;
        let after = applied_migrations(&self.pool).await;
        Ok(MigrationReport {
            applied: after.saturating_sub(before),
            known: MIGRATOR.iter().count(),
        })
    }

    #[tracing::instrument(skip(self, key), fields(kid = key.kid), err)]
    async fn register_root_key(
        &self,
        key: &NewRootKey,
        at: DateTime<Utc>,
    ) -> Result<RootKeyRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO root_keys (kid, algorithm, public_key, created_at) \
             VALUES (?, 'ed25519', ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(i64::from(key.kid))
        .bind(&key.public_key)
        .bind(micros(at))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            insert_audit(&mut tx, &root_key_registered(key, at)).await?;
        }
        let stored = sqlx::query("SELECT * FROM root_keys WHERE kid = ?")
            .bind(i64::from(key.kid))
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(root_key_from_row)
            .transpose()?;
        let record = check_root_key(key, stored)?;
        tx.commit().await?;
        Ok(record)
    }

    #[tracing::instrument(skip(self), err)]
    async fn root_keys(&self) -> Result<Vec<RootKeyRecord>, StoreError> {
        sqlx::query("SELECT * FROM root_keys ORDER BY kid")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(root_key_from_row)
            .collect()
    }

    #[tracing::instrument(skip(self, event), fields(action = %event.action), err)]
    async fn append_audit(&self, event: &NewAuditEvent) -> Result<AuditEvent, StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_audit(&mut conn, event).await
    }

    #[tracing::instrument(skip(self), err)]
    async fn audit_events(&self, after: i64, limit: u32) -> Result<Vec<AuditEvent>, StoreError> {
        sqlx::query("SELECT * FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(audit_from_row)
            .collect()
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

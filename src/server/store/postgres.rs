//! The Postgres store: production, shared by every replica.

use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::Row;

use super::{
    check_root_key, kid_from_db, root_key_registered, AuditEvent, AuditOutcome, Backend,
    MigrationReport, NewAuditEvent, NewRootKey, RootKeyRecord, Store, StoreError, ACQUIRE_TIMEOUT,
};

static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// mandate's records in Postgres.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url`, failing now if the server does not answer.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?.application_name("mandate");
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    /// The connection pool, for tests and tools that inspect the database directly.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// The advisory lock key that serialises migration runs ("mandate" in ASCII).
const MIGRATION_LOCK: i64 = 0x006d_616e_6461_7465;

async fn applied_migrations(conn: &mut sqlx::PgConnection) -> usize {
    // Before the first run the bookkeeping table does not exist: nothing is applied.
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(conn)
        .await
        .map_or(0, |n| usize::try_from(n).unwrap_or(0))
}

fn root_key_from_row(row: &PgRow) -> Result<RootKeyRecord, StoreError> {
    Ok(RootKeyRecord {
        kid: kid_from_db(row.try_get("kid")?)?,
        algorithm: row.try_get("algorithm")?,
        public_key: row.try_get("public_key")?,
        created_at: row.try_get("created_at")?,
    })
}

fn audit_from_row(row: &PgRow) -> Result<AuditEvent, StoreError> {
    let Json(details) = row.try_get("details")?;
    Ok(AuditEvent {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
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
     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *";

async fn insert_audit(
    conn: &mut sqlx::PgConnection,
    event: &NewAuditEvent,
) -> Result<AuditEvent, StoreError> {
    let row = sqlx::query(INSERT_AUDIT)
        .bind(event.id)
        .bind(event.occurred_at)
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
impl Store for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    #[tracing::instrument(skip(self), err)]
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    #[tracing::instrument(skip(self), err)]
    async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        // One session does the whole run under an advisory lock, so replicas starting together
        // apply each migration once and each reports only what it applied itself.
        let mut conn = self.pool.acquire().await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await?;
        let before = applied_migrations(&mut conn).await;
        let run = MIGRATOR.run_direct(&mut *conn).await;
        let after = applied_migrations(&mut conn).await;
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await?;
        run?;
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
             VALUES ($1, 'ed25519', $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(i64::from(key.kid))
        .bind(&key.public_key)
        .bind(at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            insert_audit(&mut tx, &root_key_registered(key, at)).await?;
        }
        let stored = sqlx::query("SELECT * FROM root_keys WHERE kid = $1")
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
        sqlx::query("SELECT * FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2")
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

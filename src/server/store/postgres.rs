//! The Postgres store: production, shared by every replica.

use std::str::FromStr;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::server::model::admin_token::AdminToken;
use crate::server::model::agent::{Agent, AgentKey, AgentSecretInfo};
use crate::server::model::issuer::Issuer;
use crate::server::model::page::PageRequest;
use crate::server::model::policy::{AgentScope, Policy};
use crate::server::model::tool::Tool;
use crate::server::secrets::SecretHash;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::*;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// The advisory lock key that serialises migration runs ("mandate" in ASCII).
const MIGRATION_LOCK: i64 = 0x006d_616e_6461_7465;

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

    /// One session does the whole run under an advisory lock, so replicas starting together
    /// apply each migration once and each reports only what it applied itself.
    async fn run_migrations(&self) -> Result<MigrationReport, StoreError> {
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
}

/// The transaction-scoped advisory lock that orders audit appends ("audit" in ASCII).
const AUDIT_LOCK: i64 = 0x0061_7564_6974;

/// Audit `seq` values come from a sequence, handed out at insert time. Taken before the insert
/// and held to commit, this lock makes commit order equal `seq` order, so a reader paging with
/// `seq > last` never skips an event that commits late (from this or another replica).
async fn serialize_audit(conn: &mut sqlx::PgConnection) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(AUDIT_LOCK)
        .execute(conn)
        .await?;
    Ok(())
}

async fn applied_migrations(conn: &mut sqlx::PgConnection) -> usize {
    // Before the first run the bookkeeping table does not exist: nothing is applied.
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(conn)
        .await
        .map_or(0, |n| usize::try_from(n).unwrap_or(0))
}

type Db = sqlx::Postgres;
type ThisStore = PostgresStore;
const BACKEND: Backend = Backend::Postgres;

include!("sql/core.rs");
include!("sql/admin_tokens.rs");
include!("sql/agents.rs");
include!("sql/catalog.rs");
include!("sql/policies.rs");
include!("sql/mandates.rs");

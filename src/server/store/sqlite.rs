//! The SQLite store: the embedded default, so mandate runs with nothing installed.

use std::path::Path;
use std::time::Duration;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::server::model::admin_token::AdminToken;
use crate::server::model::agent::{Agent, AgentKey, AgentSecretInfo};
use crate::server::model::approval::{
    ApprovalRequest, ApprovalState, Decision, MAX_PENDING_PER_AGENT,
};
use crate::server::model::issuer::Issuer;
use crate::server::model::page::PageRequest;
use crate::server::model::policy::{AgentScope, Policy};
use crate::server::model::reporter::Reporter;
use crate::server::model::tool::Tool;
use crate::server::secrets::SecretHash;
use crate::token::approval::Approver;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::approvals::*;
use super::backend::*;
use super::core_store::*;
use super::error::StoreError;
use super::inventory::*;
use super::mandates::*;
use super::revocations::*;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// mandate's records in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    seal: Seal,
    signal: tokio::sync::broadcast::Sender<()>,
    approvals: tokio::sync::broadcast::Sender<()>,
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
        let (signal, _) = tokio::sync::broadcast::channel(64);
        let (approvals, _) = tokio::sync::broadcast::channel(64);
        Ok(Self {
            pool,
            seal: Seal::default(),
            signal,
            approvals,
        })
    }

    /// The connection pool, for tests and tools that inspect the database directly.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A transaction that takes the write lock at once: one that read first and wrote later
    /// could find its snapshot outdated and fail instead of waiting its turn.
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// Nothing runs in the background for SQLite.
    fn stop_background(&self) {}

    /// SQLite serialises writers itself; the migrator's own lock is enough.
    async fn run_migrations(&self) -> Result<MigrationReport, StoreError> {
        let before = applied_migrations(&self.pool).await;
        MIGRATOR.run(&self.pool).await?;
        let after = applied_migrations(&self.pool).await;
        Ok(MigrationReport {
            applied: after.saturating_sub(before),
            known: MIGRATOR.iter().count(),
        })
    }
}

/// SQLite has one writer at a time: feed entries already commit in `seq` order.
async fn serialize_revocations(_conn: &mut sqlx::SqliteConnection) -> Result<(), StoreError> {
    Ok(())
}

/// SQLite's `BEGIN IMMEDIATE` already holds the write lock: no row lock to take.
const FOR_UPDATE: &str = "";

/// One process owns the file: approval waiters are woken in-process after commit.
async fn notify_approvals(_conn: &mut sqlx::SqliteConnection) -> Result<(), StoreError> {
    Ok(())
}

/// One process owns the file: subscribers are woken in-process after commit.
async fn notify_revocations(_conn: &mut sqlx::SqliteConnection) -> Result<(), StoreError> {
    Ok(())
}

/// SQLite has one writer at a time: audit appends already commit in `seq` order.
async fn serialize_audit(_conn: &mut sqlx::SqliteConnection) -> Result<(), StoreError> {
    Ok(())
}

/// Most rows one batch insert takes: 13 parameters a row stays far below SQLite's limit.
const ROWS_PER_STATEMENT: usize = 200;

/// Inserts `batch`'s issuance rows, 200 a statement; SQLite's one writer at a time already
/// serialises the audit chain (see [`serialize_audit`]).
async fn insert_issuances_then_serialize_audit(
    conn: &mut sqlx::SqliteConnection,
    batch: &[NewMandate],
) -> Result<(), StoreError> {
    for chunk in batch.chunks(ROWS_PER_STATEMENT) {
        let mut query = sqlx::QueryBuilder::<Db>::new(
            "INSERT INTO mandates (id, agent_id, principal_subject, principal_issuer, task_id, \
             task_description, task_digest, scope, root_kid, revocation_id, issued_at, \
             expires_at, request_meta) ",
        );
        query.push_values(chunk, |mut row, NewMandate { issuance, .. }| {
            row.push_bind(issuance.id)
                .push_bind(&issuance.agent_id)
                .push_bind(&issuance.principal_subject)
                .push_bind(&issuance.principal_issuer)
                .push_bind(&issuance.task_id)
                .push_bind(&issuance.task_description)
                .push_bind(&issuance.task_digest)
                .push_bind(sqlx::types::Json(&issuance.scope))
                .push_bind(i64::from(issuance.root_kid))
                .push_bind(&issuance.revocation_id)
                .push_bind(db_time(issuance.issued_at))
                .push_bind(db_time(issuance.expires_at))
                .push_bind(sqlx::types::Json(&issuance.request_meta));
        });
        query.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Inserts chained audit events, 200 a statement, and adds `counts` to the issuance counts.
async fn insert_chained(
    conn: &mut sqlx::SqliteConnection,
    rows: &[Chained],
    counts: &IssuanceCounts<'_>,
) -> Result<(), StoreError> {
    if !counts.is_empty() {
        let mut query = sqlx::QueryBuilder::<Db>::new(
            "INSERT INTO agent_issuance_counts (agent_id, expires_minute, issued) ",
        );
        query.push_values(counts, |mut row, ((agent, minute), issued)| {
            row.push_bind(*agent).push_bind(*minute).push_bind(*issued);
        });
        query.push(
            " ON CONFLICT (agent_id, expires_minute) \
             DO UPDATE SET issued = agent_issuance_counts.issued + excluded.issued",
        );
        query.build().execute(&mut *conn).await?;
    }
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut query = sqlx::QueryBuilder::<Db>::new(
            "INSERT INTO audit_events \
             (seq, id, occurred_at, actor, action, target, outcome, details, prev_hash, hash, \
             mac, mac_kid) ",
        );
        query.push_values(chunk, |mut row, chained| {
            let Chained {
                seq,
                stored,
                prev_hash,
                hash,
                mac,
            } = chained;
            row.push_bind(*seq)
                .push_bind(stored.id)
                .push_bind(stored.occurred_at)
                .push_bind(&stored.actor)
                .push_bind(&stored.action)
                .push_bind(&stored.target)
                .push_bind(stored.outcome.as_str())
                .push_bind(sqlx::types::Json(&stored.details))
                .push_bind(prev_hash)
                .push_bind(hash)
                .push_bind(mac.as_ref().and_then(|m| hex::decode(&m.tag).ok()))
                .push_bind(mac.as_ref().map(|m| i64::from(m.kid)));
        });
        query.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Inserts `receipts`, 200 a statement.
async fn insert_receipts(
    conn: &mut sqlx::SqliteConnection,
    receipts: &[&Receipt],
) -> Result<(), StoreError> {
    for chunk in receipts.chunks(ROWS_PER_STATEMENT) {
        let mut query = sqlx::QueryBuilder::<Db>::new(
            "INSERT INTO receipts (id, mandate_id, revocation_id, hops, tool, operation, \
             resource, outcome, occurred_at, recorded_at, reporter_id, details) ",
        );
        query.push_values(chunk, |mut row, r| {
            row.push_bind(r.id)
                .push_bind(r.mandate_id)
                .push_bind(&r.revocation_id)
                .push_bind(sqlx::types::Json(&r.hops))
                .push_bind(&r.tool)
                .push_bind(&r.operation)
                .push_bind(&r.resource)
                .push_bind(&r.outcome)
                .push_bind(db_time(r.occurred_at))
                .push_bind(db_time(r.recorded_at))
                .push_bind(&r.reporter_id)
                .push_bind(sqlx::types::Json(&r.details));
        });
        query.build().execute(&mut *conn).await?;
    }
    Ok(())
}

async fn applied_migrations(pool: &SqlitePool) -> usize {
    // Before the first run the bookkeeping table does not exist: nothing is applied.
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await
        .map_or(0, |n| usize::try_from(n).unwrap_or(0))
}

type Db = sqlx::Sqlite;
type ThisStore = SqliteStore;
const BACKEND: Backend = Backend::Sqlite;

include!("sql/core.rs");
include!("sql/admin_tokens.rs");
include!("sql/agents.rs");
include!("sql/catalog.rs");
include!("sql/policies.rs");
include!("sql/mandates.rs");
include!("sql/revocations.rs");
include!("sql/reporters.rs");
include!("sql/approvals.rs");

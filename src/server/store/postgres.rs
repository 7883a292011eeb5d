//! The Postgres store: production, shared by every replica.

use std::str::FromStr;
use std::sync::Arc;

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
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::approvals::*;
use super::backend::*;
use super::core_store::*;
use super::error::StoreError;
use super::inventory::*;
use super::mandates::*;
use super::revocations::*;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// The advisory lock key that serialises migration runs ("mandate" in ASCII).
const MIGRATION_LOCK: i64 = 0x006d_616e_6461_7465;

/// The channel on which revocation commits are announced to every replica.
const REVOCATION_CHANNEL: &str = "mandate_revocations";
/// The channel on which approval requests and decisions are announced to every replica.
const APPROVAL_CHANNEL: &str = "mandate_approvals";
/// Locks an approval request's row for the deciding transaction.
const FOR_UPDATE: &str = " FOR UPDATE";
/// The advisory lock that orders revocation feed entries ("revoke" in ASCII).
const REVOCATION_LOCK: i64 = 0x7265_766f_6b65;

/// mandate's records in Postgres.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    seal: Seal,
    signal: tokio::sync::broadcast::Sender<()>,
    approvals: tokio::sync::broadcast::Sender<()>,
    listener: Arc<tokio::task::AbortHandle>,
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
        let (signal, _) = tokio::sync::broadcast::channel(64);
        let (approvals, _) = tokio::sync::broadcast::channel(64);
        let listener = Arc::new(
            listen_for_revocations(pool.clone(), signal.clone(), approvals.clone()).abort_handle(),
        );
        Ok(Self {
            pool,
            seal: Seal::default(),
            signal,
            approvals,
            listener,
        })
    }

    /// The connection pool, for tests and tools that inspect the database directly.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A transaction.
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.pool.begin().await
    }

    /// Stops the revocation listener (on close).
    fn stop_background(&self) {
        self.listener.abort();
    }

    /// One session does the whole run under an advisory lock, so replicas starting together
    /// apply each migration once and each reports only what it applied itself.
    async fn run_migrations(&self) -> Result<MigrationReport, StoreError> {
        let mut conn = self.pool.acquire().await?;
        // Everything applied already: nothing to run. A role that may not create tables (the
        // application role of deploy/postgres/grants.sql) starts here, as sqlx's run would
        // first try to create its bookkeeping table.
        if all_applied(&mut conn).await {
            return Ok(MigrationReport {
                applied: 0,
                known: MIGRATOR.iter().count(),
            });
        }
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

/// Relays every replica's revocation and approval commits (NOTIFY) to this process's
/// subscribers. The listener reconnects by itself when the connection drops.
fn listen_for_revocations(
    pool: PgPool,
    signal: tokio::sync::broadcast::Sender<()>,
    approvals: tokio::sync::broadcast::Sender<()>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for revocations; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            };
            let channels = [REVOCATION_CHANNEL, APPROVAL_CHANNEL];
            if let Err(error) = listener.listen_all(channels).await {
                tracing::warn!(%error, "cannot listen for revocations; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
            // Subscribers re-read the feed after any wake-up, so one after a reconnect covers
            // what was missed meanwhile.
            let _ = signal.send(());
            let _ = approvals.send(());
            while let Ok(notification) = listener.recv().await {
                if notification.channel() == APPROVAL_CHANNEL {
                    let _ = approvals.send(());
                } else {
                    let _ = signal.send(());
                }
            }
        }
    })
}

/// Orders feed entries by commit, as `serialize_audit` does for the audit trail.
async fn serialize_revocations(conn: &mut sqlx::PgConnection) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(REVOCATION_LOCK)
        .execute(conn)
        .await?;
    Ok(())
}

/// Announces an approval change to every replica when the transaction commits.
async fn notify_approvals(conn: &mut sqlx::PgConnection) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(APPROVAL_CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}

/// Announces the revocation to every replica when the transaction commits.
async fn notify_revocations(conn: &mut sqlx::PgConnection) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(REVOCATION_CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
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

// Batch inserts bind one array per column and `UNNEST` them: one prepared statement serves
// every batch size, where a `VALUES` list per size would prepare (and plan) a statement for
// each and churn the connection's statement cache under load.

/// One column of `rows`, as an array parameter.
fn column<'a, R, T>(rows: &'a [R], value: impl Fn(&'a R) -> T) -> Vec<T> {
    rows.iter().map(value).collect()
}

/// Inserts `batch`'s issuance rows, then takes the audit chain's lock (see
/// [`serialize_audit`]), in one statement: the lock is taken once the rows are in, so they are
/// not inserted under it, and what the transaction reads next sees every append committed
/// before it.
async fn insert_issuances_then_serialize_audit(
    conn: &mut sqlx::PgConnection,
    batch: &[NewMandate],
) -> Result<(), StoreError> {
    sqlx::query(
        "WITH inserted AS (\
         INSERT INTO mandates (id, agent_id, principal_subject, principal_issuer, task_id, \
         task_description, task_digest, scope, root_kid, revocation_id, issued_at, expires_at, \
         request_meta) \
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], \
         $6::text[], $7::bytea[], $8::jsonb[], $9::int8[], $10::bytea[], $11::timestamptz[], \
         $12::timestamptz[], $13::jsonb[]) RETURNING 1) \
         SELECT pg_advisory_xact_lock($14) FROM (SELECT count(*) FROM inserted) AS rows",
    )
    .bind(column(batch, |m| m.issuance.id))
    .bind(column(batch, |m| m.issuance.agent_id.as_str()))
    .bind(column(batch, |m| m.issuance.principal_subject.as_str()))
    .bind(column(batch, |m| m.issuance.principal_issuer.as_str()))
    .bind(column(batch, |m| m.issuance.task_id.as_str()))
    .bind(column(batch, |m| m.issuance.task_description.as_str()))
    .bind(column(batch, |m| m.issuance.task_digest.as_slice()))
    .bind(column(batch, |m| sqlx::types::Json(&m.issuance.scope)))
    .bind(column(batch, |m| i64::from(m.issuance.root_kid)))
    .bind(column(batch, |m| m.issuance.revocation_id.as_slice()))
    .bind(column(batch, |m| db_time(m.issuance.issued_at)))
    .bind(column(batch, |m| db_time(m.issuance.expires_at)))
    .bind(column(batch, |m| {
        sqlx::types::Json(&m.issuance.request_meta)
    }))
    .bind(AUDIT_LOCK)
    .execute(conn)
    .await?;
    Ok(())
}

/// Inserts chained audit events, and adds `counts` to the issuance counts, in one statement.
async fn insert_chained(
    conn: &mut sqlx::PgConnection,
    rows: &[Chained],
    counts: &IssuanceCounts<'_>,
) -> Result<(), StoreError> {
    sqlx::query(
        "WITH counted AS (\
         INSERT INTO agent_issuance_counts (agent_id, expires_minute, issued) \
         SELECT * FROM UNNEST($11::text[], $12::int8[], $13::int8[]) \
         ON CONFLICT (agent_id, expires_minute) \
         DO UPDATE SET issued = agent_issuance_counts.issued + excluded.issued) \
         INSERT INTO audit_events \
         (seq, id, occurred_at, actor, action, target, outcome, details, prev_hash, hash, \
         mac, mac_kid) \
         SELECT * FROM UNNEST($1::int8[], $2::uuid[], $3::timestamptz[], $4::text[], \
         $5::text[], $6::text[], $7::text[], $8::jsonb[], $9::bytea[], $10::bytea[], \
         $14::bytea[], $15::int8[])",
    )
    .bind(column(rows, |r| r.seq))
    .bind(column(rows, |r| r.stored.id))
    .bind(column(rows, |r| r.stored.occurred_at))
    .bind(column(rows, |r| r.stored.actor.as_str()))
    .bind(column(rows, |r| r.stored.action.as_str()))
    .bind(column(rows, |r| r.stored.target.as_deref()))
    .bind(column(rows, |r| r.stored.outcome.as_str()))
    .bind(column(rows, |r| sqlx::types::Json(&r.stored.details)))
    .bind(column(rows, |r| r.prev_hash.as_slice()))
    .bind(column(rows, |r| r.hash.as_slice()))
    .bind(counts.keys().map(|(agent, _)| *agent).collect::<Vec<_>>())
    .bind(counts.keys().map(|(_, minute)| *minute).collect::<Vec<_>>())
    .bind(counts.values().copied().collect::<Vec<_>>())
    .bind(column(rows, |r| {
        r.mac.as_ref().and_then(|m| hex::decode(&m.tag).ok())
    }))
    .bind(column(rows, |r| r.mac.as_ref().map(|m| i64::from(m.kid))))
    .execute(conn)
    .await?;
    Ok(())
}

/// Inserts `receipts` in one statement.
async fn insert_receipts(
    conn: &mut sqlx::PgConnection,
    receipts: &[&Receipt],
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO receipts (id, mandate_id, revocation_id, hops, tool, operation, resource, \
         outcome, occurred_at, recorded_at, reporter_id, details) \
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::bytea[], $4::jsonb[], $5::text[], \
         $6::text[], $7::text[], $8::text[], $9::timestamptz[], $10::timestamptz[], $11::text[], \
         $12::jsonb[])",
    )
    .bind(column(receipts, |r| r.id))
    .bind(column(receipts, |r| r.mandate_id))
    .bind(column(receipts, |r| r.revocation_id.as_slice()))
    .bind(column(receipts, |r| sqlx::types::Json(&r.hops)))
    .bind(column(receipts, |r| r.tool.as_str()))
    .bind(column(receipts, |r| r.operation.as_str()))
    .bind(column(receipts, |r| r.resource.as_deref()))
    .bind(column(receipts, |r| r.outcome.as_str()))
    .bind(column(receipts, |r| db_time(r.occurred_at)))
    .bind(column(receipts, |r| db_time(r.recorded_at)))
    .bind(column(receipts, |r| r.reporter_id.as_deref()))
    .bind(column(receipts, |r| sqlx::types::Json(&r.details)))
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether every migration mandate knows is recorded as applied, with the same checksum.
async fn all_applied(conn: &mut sqlx::PgConnection) -> bool {
    let Ok(applied) = sqlx::query_as::<_, (i64, Vec<u8>)>(
        "SELECT version, checksum FROM _sqlx_migrations WHERE success",
    )
    .fetch_all(conn)
    .await
    else {
        return false;
    };
    MIGRATOR.iter().all(|m| {
        applied
            .iter()
            .any(|(version, checksum)| *version == m.version && *checksum == *m.checksum)
    })
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
include!("sql/revocations.rs");
include!("sql/reporters.rs");
include!("sql/approvals.rs");

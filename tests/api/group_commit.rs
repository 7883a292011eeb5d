//! Group commit on Postgres: mints that arrive while the audit chain's lock is held wait
//! together and commit in one transaction, each answered only after its rows are durable, the
//! chain intact.

use std::time::Duration;

use mandate::clock::Clock;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::callers::MANDATES;
use crate::helpers::fixtures::{mint_body, mint_setup};
use crate::helpers::{Backend, TestApp};

/// The advisory lock mandate takes to append to the audit chain ("audit" in ASCII).
const AUDIT_LOCK: i64 = 0x0061_7564_6974;

/// Sends a crm read mint for `jwt` as `secret` on a task of its own.
fn spawn_mint(
    app: &TestApp,
    secret: &str,
    jwt: &str,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let request = app
        .client
        .post(app.url(MANDATES))
        .bearer_auth(secret)
        .json(&mint_body(
            jwt,
            json!([{"tool": "crm", "operations": ["read"]}]),
        ));
    tokio::spawn(async move { request.send().await })
}

/// Takes the audit chain's lock on a connection of its own, as a writer would.
async fn hold_audit_lock(pool: &sqlx::PgPool) -> sqlx::pool::PoolConnection<sqlx::Postgres> {
    let mut holder = pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(AUDIT_LOCK)
        .execute(&mut *holder)
        .await
        .unwrap();
    holder
}

async fn release_audit_lock(holder: &mut sqlx::pool::PoolConnection<sqlx::Postgres>) {
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(AUDIT_LOCK)
        .execute(&mut **holder)
        .await
        .unwrap();
}

/// Returns once some writer waits for the audit chain's lock.
async fn wait_for_a_waiting_writer(pool: &sqlx::PgPool) {
    let deadline = crate::helpers::real_now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        assert!(
            crate::helpers::real_now() < deadline,
            "no writer reached the audit lock"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn mints_waiting_on_the_audit_chain_commit_together_and_each_is_recorded() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let (idp, secret) = mint_setup(&app).await;
    let pool = sqlx::PgPool::connect(&app.db.url()).await.unwrap();
    let audit_before = app.audit_len().await;
    // Hold the chain's lock, as a slow commit elsewhere would.
    let mut holder = hold_audit_lock(&pool).await;
    let jwt = idp.sign("rsa-1", &idp.claims("alice", &["support"], app.clock.now()));
    let mints: Vec<_> = (0..20).map(|_| spawn_mint(&app, &secret, &jwt)).collect();
    // A transaction now waits on the lock; give the other mints time to queue behind it.
    wait_for_a_waiting_writer(&pool).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM mandates")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 0, "nothing is visible before its commit");
    release_audit_lock(&mut holder).await;

    let mut ids = Vec::new();
    for mint in mints {
        let response = mint.await.unwrap().unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        ids.push(body["mandate_id"].as_str().unwrap().to_owned());
    }
    // Each answered mandate has its row and its audit event.
    for id in &ids {
        let recorded: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM mandates m JOIN audit_events a \
             ON a.target = 'mandate:' || m.id::text AND a.action = 'mandate.issued' \
             WHERE m.id = $1::uuid",
        )
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(recorded, 1, "mandate {id} and its audit event");
    }
    assert_eq!(app.audit_len().await, audit_before + 20);
    // Rows written by one transaction share its id (xmin). Each writer took what was queued
    // at its turn and waited for the lock; what queued meanwhile went in one batch after them.
    let transactions: i64 = sqlx::query_scalar("SELECT count(DISTINCT xmin::text) FROM mandates")
        .fetch_one(&pool)
        .await
        .unwrap();
    let most = 2 * i64::try_from(mandate::server::store::batch::WRITERS).unwrap();
    assert!(
        transactions <= most,
        "20 queued mints took {transactions} transactions (at most {most} expected)"
    );
    eprintln!("20 queued mints took {transactions} transactions");
    assert_eq!(
        app.admin_ok(Method::GET, "/v1/admin/audit/verify", None, 200)
            .await["intact"],
        true
    );
    drop(holder);
    pool.close().await;
    app.stop().await;
}

/// A mint evaluated while its agent was active, whose commit comes after the agent was
/// suspended (and the suspension's sweep of live mandates has run), must not issue: it would be
/// a live mandate of a suspended agent that nothing revokes.
#[tokio::test]
async fn a_mint_committing_after_its_agent_was_suspended_issues_nothing() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let (idp, secret) = mint_setup(&app).await;
    let pool = sqlx::PgPool::connect(&app.db.url()).await.unwrap();
    let mut holder = hold_audit_lock(&pool).await;
    let jwt = idp.sign("rsa-1", &idp.claims("alice", &["support"], app.clock.now()));
    let mint = spawn_mint(&app, &secret, &jwt);
    wait_for_a_waiting_writer(&pool).await;
    // The suspension lands while the mint waits to commit.
    sqlx::query("UPDATE agents SET status = 'suspended' WHERE id = 'bot'")
        .execute(&pool)
        .await
        .unwrap();
    release_audit_lock(&mut holder).await;

    let response = mint.await.unwrap().unwrap();
    assert_eq!(response.status(), 409);
    let problem: Value = response.json().await.unwrap();
    assert!(problem.get("token").is_none());
    assert!(
        problem["detail"].as_str().unwrap().contains("agent `bot`"),
        "{problem}"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM mandates")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 0, "nothing was issued");
    let denial: Value = sqlx::query_scalar(
        "SELECT details FROM audit_events WHERE action = 'mandate.denied' ORDER BY seq DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(denial["reason"], "inventory_changed", "{denial}");
}

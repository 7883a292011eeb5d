//! Faults under load: Postgres stopped and crashed while mints, revocations, receipts and feed
//! reads run. Every answer is either a success whose record is committed or a clear 503; nothing
//! is recorded twice; and mandate recovers on its own when the database returns.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mandate::clock::Clock;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::callers::MANDATES;
use crate::helpers::fixtures::{mint_body, mint_read, mint_setup};
use crate::helpers::postgres::Cluster;
use crate::helpers::{TestApp, TestDatabase};

/// How long the load runs.
const LOAD: Duration = Duration::from_secs(60);
/// When Postgres goes down (fast shutdown, then an immediate one: a crash), and for how long.
const OUTAGES: [(Duration, bool); 2] = [
    (Duration::from_secs(12), false),
    (Duration::from_secs(34), true),
];
const DOWN_FOR: Duration = Duration::from_secs(4);

/// What the clients saw.
#[derive(Default)]
struct Seen {
    /// Each minted mandate: id and token, in the order received.
    minted: Vec<(Uuid, String)>,
    /// Mandates whose revocation was answered 200.
    revoked: Vec<Uuid>,
    /// Receipts the service said it recorded.
    receipts_recorded: u64,
    /// Answers that were neither success nor 503, as "METHOD path: status body".
    unexpected: Vec<String>,
    /// 503 answers per kind of request.
    unavailable: u64,
    /// When (since the start) each successful mint was answered.
    mint_times: Vec<Duration>,
}

type Shared = Arc<Mutex<Seen>>;

fn seen(shared: &Shared) -> std::sync::MutexGuard<'_, Seen> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sends a request; returns the status and JSON body, or records a transport failure.
async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let response = app.call(method, path, token, body).await;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Files an answer that is neither `ok` nor 503.
fn judge(shared: &Shared, what: &str, ok: u16, status: u16, body: &Value) -> bool {
    if status == ok {
        return true;
    }
    let mut seen = seen(shared);
    if status == 503 {
        seen.unavailable += 1;
        assert!(
            !body.to_string().contains("\"token\""),
            "a 503 carried a token: {body}"
        );
    } else {
        seen.unexpected.push(format!("{what}: {status} {body}"));
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_token_leaves_without_its_record_while_postgres_restarts_under_mixed_load() {
    let cluster = tokio::task::spawn_blocking(Cluster::create)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let url = cluster.url();
    let app = Arc::new(
        TestApp::spawn_with(TestDatabase::at(&url), |config| {
            config.database_max_connections = 10;
            config.mint_rate_per_agent = 1_000_000;
            config.mint_rate_per_principal = 1_000_000;
            config.max_live_mandates_per_agent = 1_000_000;
        })
        .await,
    );
    let (idp, secret) = mint_setup(&app).await;
    let jwt = idp.sign("rsa-1", &idp.claims("alice", &["support"], app.clock.now()));
    let body = mint_body(&jwt, json!([{"tool": "crm", "operations": ["read"]}]));
    let shared: Shared = Arc::default();
    let start = crate::helpers::real_now();
    let running = move || start.elapsed() < LOAD;

    let mut clients = Vec::new();
    for _ in 0..6 {
        let (app, shared, secret, body) =
            (app.clone(), shared.clone(), secret.clone(), body.clone());
        clients.push(tokio::spawn(async move {
            while running() {
                let (status, answer) =
                    send(&app, Method::POST, MANDATES, Some(&secret), Some(&body)).await;
                if judge(&shared, "POST /v1/mandates", 201, status, &answer) {
                    let id = answer["mandate_id"].as_str().unwrap().parse().unwrap();
                    let token = answer["token"].as_str().unwrap().to_owned();
                    let mut seen = seen(&shared);
                    seen.minted.push((id, token));
                    seen.mint_times.push(start.elapsed());
                }
            }
        }));
    }
    // Revokes every fourth mandate minted so far, one at a time.
    let (revoker_app, revoker_shared, revoker_secret) =
        (app.clone(), shared.clone(), secret.clone());
    clients.push(tokio::spawn(async move {
        let mut next = 0;
        while running() {
            let target = seen(&revoker_shared).minted.get(next).map(|(id, _)| *id);
            let Some(id) = target else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let path = format!("/v1/mandates/{id}/revoke");
            let reason = json!({"reason": "load test"});
            let (status, answer) = send(
                &revoker_app,
                Method::POST,
                &path,
                Some(&revoker_secret),
                Some(&reason),
            )
            .await;
            if judge(&revoker_shared, &path, 200, status, &answer) {
                seen(&revoker_shared).revoked.push(id);
            }
            next += 4;
        }
    }));
    // Reports a receipt for every fourth mandate, offset from the revoked ones.
    let credential = crate::helpers::fixtures::reporter(&app, "crm-api").await;
    let (reporter_app, reporter_shared) = (app.clone(), shared.clone());
    clients.push(tokio::spawn(async move {
        let mut next = 1;
        while running() {
            let token = seen(&reporter_shared)
                .minted
                .get(next)
                .map(|(_, t)| t.clone());
            let Some(token) = token else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let report = json!({"receipts": [{"token": token, "tool": "crm", "operation": "read",
                "outcome": "success", "occurred_at": reporter_app.clock.now()}]});
            let (status, answer) = send(
                &reporter_app,
                Method::POST,
                "/v1/receipts",
                Some(&credential),
                Some(&report),
            )
            .await;
            if judge(&reporter_shared, "POST /v1/receipts", 200, status, &answer) {
                assert_eq!(answer["recorded"], 1, "{answer}");
                seen(&reporter_shared).receipts_recorded += 1;
            }
            next += 4;
        }
    }));
    // Reads the revocation feed.
    let (reader_app, reader_shared) = (app.clone(), shared.clone());
    clients.push(tokio::spawn(async move {
        while running() {
            let (status, answer) =
                send(&reader_app, Method::GET, "/v1/revocations", None, None).await;
            judge(&reader_shared, "GET /v1/revocations", 200, status, &answer);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }));

    // Two outages: a fast shutdown, then a crash.
    let cluster = Arc::new(cluster);
    for (at, crash) in OUTAGES {
        tokio::time::sleep(at.saturating_sub(start.elapsed())).await;
        let down = cluster.clone();
        tokio::task::spawn_blocking(move || if crash { down.crash() } else { down.stop() })
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(DOWN_FOR).await;
        let up = cluster.clone();
        tokio::task::spawn_blocking(move || up.start())
            .await
            .unwrap()
            .unwrap();
    }
    for client in clients {
        client.await.unwrap();
    }

    let seen = std::mem::take(&mut *seen(&shared));
    let last_outage_over = OUTAGES[1].0 + DOWN_FOR;
    eprintln!(
        "faults: {} mandates, {} revocations, {} receipts, {} answered 503",
        seen.minted.len(),
        seen.revoked.len(),
        seen.receipts_recorded,
        seen.unavailable
    );
    assert!(
        seen.unexpected.is_empty(),
        "answers other than success or 503: {:#?}",
        seen.unexpected
    );
    assert!(seen.unavailable > 0, "the outages were seen as 503");
    assert!(
        seen.mint_times.iter().any(|t| *t > last_outage_over),
        "mints succeed again after the second outage, without a restart"
    );

    // Every token a client received has its issuance row and its audit event.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let received: Vec<Uuid> = seen.minted.iter().map(|(id, _)| *id).collect();
    let with_row: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM mandates WHERE id = ANY($1)")
        .bind(&received)
        .fetch_all(&pool)
        .await
        .unwrap();
    let targets: Vec<String> = received.iter().map(|id| format!("mandate:{id}")).collect();
    let with_event: Vec<String> = sqlx::query_scalar(
        "SELECT target FROM audit_events WHERE action = 'mandate.issued' AND target = ANY($1)",
    )
    .bind(&targets)
    .fetch_all(&pool)
    .await
    .unwrap();
    let received_set: HashSet<Uuid> = received.iter().copied().collect();
    assert_eq!(
        received_set.len(),
        received.len(),
        "no mandate id was answered twice"
    );
    assert_eq!(
        with_row.iter().copied().collect::<HashSet<_>>(),
        received_set,
        "every token received has its issuance row"
    );
    assert_eq!(
        with_event.len(),
        received.len(),
        "every token received has exactly one issuance event"
    );

    // Nothing was recorded twice: one issuance event per row, one revocation per mandate.
    let issued = "FROM audit_events WHERE action = 'mandate.issued'";
    let distinct_issued = app
        .count(&format!("SELECT count(DISTINCT target) {issued}"))
        .await;
    assert_eq!(
        app.count("SELECT count(*) FROM mandates").await,
        distinct_issued
    );
    assert_eq!(
        app.count(&format!("SELECT count(*) {issued}")).await,
        distinct_issued
    );
    let revoked: Vec<Uuid> =
        sqlx::query_scalar("SELECT mandate_id FROM revocations WHERE mandate_id = ANY($1)")
            .bind(&seen.revoked)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        revoked.len(),
        seen.revoked.len(),
        "each answered revocation is stored once"
    );
    let receipts = app.count("SELECT count(*) FROM receipts").await;
    assert!(
        receipts >= i64::try_from(seen.receipts_recorded).unwrap(),
        "{receipts} receipts stored, {} answered as recorded",
        seen.receipts_recorded
    );
    pool.close().await;

    // The trail is whole, and the service is ready again without a restart.
    let report = app
        .admin_ok(Method::GET, "/v1/admin/audit/verify", None, 200)
        .await;
    assert_eq!(report["intact"], true, "{report}");
    assert_eq!(app.get("/readyz").await.status(), 200);
}

#[tokio::test]
async fn with_the_issuers_keys_unreachable_cached_keys_serve_for_an_hour_then_mints_answer_503() {
    let app = TestApp::spawn(crate::helpers::Backend::Sqlite).await;
    let (idp, secret) = mint_setup(&app).await;
    assert_eq!(mint_read(&app, &idp, &secret).await.0, 201);

    // Down, and the keys are past their 5-minute freshness: the cached keys still serve.
    idp.fail(true);
    app.clock.advance(chrono::Duration::minutes(6));
    let hits = idp.jwks_hits();
    let (status, body) = mint_read(&app, &idp, &secret).await;
    assert_eq!(status, 201, "{body}");
    assert!(idp.jwks_hits() > hits, "a refetch was tried");

    // Slower than the 5 s fetch timeout is the same as down.
    idp.fail(false);
    idp.slow_down(Duration::from_secs(6));
    app.clock.advance(chrono::Duration::minutes(6));
    let started = crate::helpers::real_now();
    let (status, body) = mint_read(&app, &idp, &secret).await;
    assert_eq!(status, 201, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "the fetch gave up at its timeout"
    );
    idp.slow_down(Duration::ZERO);

    // Past an hour without a successful fetch, the old keys are no longer trusted.
    idp.fail(true);
    app.clock.advance(chrono::Duration::minutes(61));
    let audit = app.audit_len().await;
    let (status, problem) = mint_read(&app, &idp, &secret).await;
    assert_eq!(status, 503, "{problem}");
    assert!(problem.get("token").is_none());
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("issuer's keys"),
        "{problem}"
    );
    assert_eq!(app.audit_len().await, audit + 1, "the refusal is audited");

    // Back up: minting works again at once.
    idp.fail(false);
    let (status, body) = mint_read(&app, &idp, &secret).await;
    assert_eq!(status, 201, "{body}");
}

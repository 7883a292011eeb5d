//! Revocation: of a mandate, of a branch, in bulk; idempotence and who may; the feed and its
//! stream across two replicas; a verifier's copy failing closed when stale; and introspection.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mandate::clock::{Clock, ManualClock, SharedClock};
use mandate::token::attenuate::{attenuate, Attenuation};
use mandate::token::TokenError;
use mandate::verifier::revocations::{RevocationSync, SyncSettings};
use mandate::verifier::{Access, NoRevocations, RevocationCheck, Verifier, VerifierSettings};
use reqwest::Method;
use serde_json::{json, Value};

use crate::both_stores;
use crate::helpers::callers::Mint;
use crate::helpers::fixtures::{mint_body, mint_setup};
use crate::helpers::{assert_problem, Backend, TestApp, TestDatabase};

/// Mints a crm read/write mandate for alice as bot; returns (token, mandate id).
async fn mint(app: &TestApp, idp: &crate::helpers::idp::TestIdp, secret: &str) -> (String, String) {
    let jwt = idp.sign("rsa-1", &idp.claims("alice", &["support"], app.clock.now()));
    let request = Mint::new(&jwt).scope("crm", &["read", "write"]);
    let body = app.mint(secret, &request).await;
    (
        body["token"].as_str().unwrap().to_owned(),
        body["mandate_id"].as_str().unwrap().to_owned(),
    )
}

fn derive(token: &str, agent: &str) -> String {
    attenuate(
        token,
        &Attenuation {
            delegate: Some(agent.into()),
            ..Attenuation::default()
        },
    )
    .unwrap()
}

fn read() -> Access {
    Access {
        tool: "crm".into(),
        operation: "read".into(),
        resource: None,
    }
}

async fn introspect(app: &TestApp, token: &str) -> Value {
    app.administrator().introspect(token).await
}

both_stores!(
    revoking_a_mandate_is_idempotent_audited_and_only_for_its_holder,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (idp, secret) = mint_setup(&app).await;
        let (token, id) = mint(&app, &idp, &secret).await;
        assert_eq!(introspect(&app, &token).await["active"], true);
        let path = format!("/v1/mandates/{id}/revoke");
        let reason = json!({"reason": "task cancelled by alice"});

        // Another orchestrator may not, and gets what an unknown id gets; an auditor may not.
        app.admin_ok(
            Method::POST,
            "/v1/admin/agents",
            Some(json!({"id": "other", "display_name": "O", "kind": "orchestrator", "owner": "o"})),
            201,
        )
        .await;
        let other = app
            .admin_ok(Method::POST, "/v1/admin/agents/other/secret", None, 201)
            .await;
        let response = app
            .call(Method::POST, &path, other["secret"].as_str(), Some(&reason))
            .await;
        let theirs = assert_problem(response, 404).await;
        let auditor = app.token_with_role("reviewer", "auditor").await;
        assert_problem(
            app.call(Method::POST, &path, Some(&auditor), Some(&reason))
                .await,
            403,
        )
        .await;
        let unknown = "/v1/mandates/01900000-0000-7000-8000-00000000dead/revoke";
        let none = assert_problem(
            app.call(Method::POST, unknown, Some(&secret), Some(&reason))
                .await,
            404,
        )
        .await;
        let shape = |p: &Value| (p["title"].clone(), p["reason"].clone(), p["type"].clone());
        assert_eq!(shape(&theirs), shape(&none), "no existence oracle");
        assert_problem(
            app.call(Method::POST, &path, None, Some(&reason)).await,
            401,
        )
        .await;
        assert_problem(
            app.call(
                Method::POST,
                &path,
                Some(&secret),
                Some(&json!({"reason": ""})),
            )
            .await,
            422,
        )
        .await;

        let before = app.audit_len().await;
        let (status, first) = app
            .agent(&secret)
            .revoke(&id, "task cancelled by alice")
            .await;
        assert_eq!(status, 200, "{first}");
        assert_eq!(first["revoked_by"], "agent:bot");
        assert_eq!(first["reason"], "task cancelled by alice");
        let (status, second) = app.administrator().revoke(&id, "again").await;
        assert_eq!(status, 200);
        assert_eq!(second, first, "the first revocation stands");
        assert_eq!(app.audit_len().await, before + 1, "one audit event");
        let event = app
            .store
            .audit_events(0, 10_000)
            .await
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(event.action, "mandate.revoked");
        assert_eq!(event.actor, "agent:bot");
        assert_eq!(event.details["reason"], "task cancelled by alice");
        assert_eq!(introspect(&app, &token).await, json!({"active": false}));
        assert_eq!(
            introspect(&app, &derive(&token, "x")).await["active"],
            false,
            "derived tokens too"
        );
    }
);

both_stores!(completing_a_task_ends_its_authority, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let (idp, secret) = mint_setup(&app).await;
    let (token, id) = mint(&app, &idp, &secret).await;
    let path = format!("/v1/mandates/{id}/complete");
    assert_problem(
        app.call(Method::POST, &path, Some(crate::helpers::ADMIN_TOKEN), None)
            .await,
        403,
    )
    .await;
    let (status, body) = app.as_token(&secret, Method::POST, &path, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reason"], "task completed");
    assert_eq!(introspect(&app, &token).await["active"], false);
    let event = app
        .store
        .audit_events(0, 10_000)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(event.action, "mandate.completed");
});

both_stores!(
    a_holder_revokes_its_own_branch_and_the_parent_keeps_working,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (idp, secret) = mint_setup(&app).await;
        let (token, _) = mint(&app, &idp, &secret).await;
        let child = derive(&token, "helper");
        let grandchild = derive(&child, "deep");
        let body = json!({"token": child, "reason": "done with it"});
        let response = app
            .call(Method::POST, "/v1/revocations", None, Some(&body))
            .await;
        assert_eq!(response.status(), 200);
        let revoked: Value = response.json().await.unwrap();
        assert!(revoked["revocation_id"].is_string());
        assert!(
            revoked.get("revoked_by").is_none(),
            "nothing about who revoked"
        );
        let event = app
            .store
            .audit_events(0, 10_000)
            .await
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(event.action, "mandate.branch_revoked");
        assert_eq!(event.actor, "holder");
        assert_eq!(event.details["selection"]["claimed_holder"], "helper");
        assert_eq!(introspect(&app, &child).await["active"], false);
        assert_eq!(
            introspect(&app, &grandchild).await["active"],
            false,
            "its descendants too"
        );
        assert_eq!(
            introspect(&app, &token).await["active"],
            true,
            "the parent is untouched"
        );
        let again: Value = app
            .call(Method::POST, "/v1/revocations", None, Some(&body))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(again["revocation_id"], revoked["revocation_id"]);
        // The mandate itself is not revoked by whoever holds it, and forgeries are refused.
        for token in [token.as_str(), "not-a-mandate"] {
            let response = app
                .call(
                    Method::POST,
                    "/v1/revocations",
                    None,
                    Some(&json!({"token": token, "reason": "x"})),
                )
                .await;
            assert_problem(response, 401).await;
        }
        // A dead mandate's branches are not worth a row.
        app.clock.advance(chrono::Duration::minutes(11));
        let late = json!({"token": derive(&token, "late"), "reason": "x"});
        assert_problem(
            app.call(Method::POST, "/v1/revocations", None, Some(&late))
                .await,
            409,
        )
        .await;
    }
);

both_stores!(
    suspending_an_agent_or_disabling_a_tool_revokes_live_mandates,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (idp, secret) = mint_setup(&app).await;
        let (first, _) = mint(&app, &idp, &secret).await;
        let response = app
            .call(
                Method::POST,
                "/v1/admin/agents/bot/suspend",
                Some(crate::helpers::ADMIN_TOKEN),
                None,
            )
            .await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-revoked-mandates"], "1");
        assert_eq!(introspect(&app, &first).await["active"], false);
        app.admin_ok(Method::POST, "/v1/admin/agents/bot/resume", None, 200)
            .await;
        let (second, _) = mint(&app, &idp, &secret).await;
        let response = app
            .call(
                Method::POST,
                "/v1/admin/tools/crm/disable",
                Some(crate::helpers::ADMIN_TOKEN),
                None,
            )
            .await;
        assert_eq!(response.headers()["x-revoked-mandates"], "1");
        assert_eq!(introspect(&app, &second).await["active"], false);
        let response = app
            .call(
                Method::POST,
                "/v1/admin/tools/github/disable",
                Some(crate::helpers::ADMIN_TOKEN),
                None,
            )
            .await;
        assert_eq!(response.headers()["x-revoked-mandates"], "0");
    }
);

/// Inserts `count` live mandates for `subject` directly (minting 10,000 over HTTP would test
/// the minting, not the revocation).
async fn insert_mandates(app: &TestApp, backend: Backend, subject: &str, count: usize) {
    let expires = (app.clock.now() + chrono::Duration::minutes(10)).to_rfc3339();
    let issued = app.clock.now().to_rfc3339();
    match backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&app.db.url()).await.unwrap();
            sqlx::query(
                "INSERT INTO mandates (id, agent_id, principal_subject, principal_issuer, task_id, \
                 task_description, task_digest, scope, root_kid, revocation_id, issued_at, expires_at) \
                 SELECT gen_random_uuid(), 'bot', $1, 'https://idp.example.com/', 't' || n, 'd', '\\x00', \
                 '[{\"tool\":\"crm\",\"operation\":\"read\"}]', 1, sha512(n::text::bytea), \
                 $2::timestamptz, $3::timestamptz FROM generate_series(1, $4) AS n",
            )
            .bind(subject)
            .bind(&issued)
            .bind(&expires)
            .bind(count as i64)
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.db.url()).await.unwrap();
            let mut tx = pool.begin().await.unwrap();
            for n in 0..count {
                let issued = app.clock.now();
                let expires = issued + chrono::Duration::minutes(10);
                sqlx::query(
                    "INSERT INTO mandates (id, agent_id, principal_subject, principal_issuer, task_id, \
                     task_description, task_digest, scope, root_kid, revocation_id, issued_at, expires_at) \
                     VALUES ($1, 'bot', $2, 'https://idp.example.com/', $3, 'd', x'00', \
                     '[{\"tool\":\"crm\",\"operation\":\"read\"}]', 1, $4, $5, $6)",
                )
                .bind(uuid::Uuid::new_v4())
                .bind(subject)
                .bind(format!("t{n}"))
                .bind((n as u64).to_be_bytes().to_vec())
                .bind(issued)
                .bind(expires)
                .execute(&mut *tx)
                .await
                .unwrap();
            }
            tx.commit().await.unwrap();
            pool.close().await;
        }
    }
}

both_stores!(
    offboarding_a_principal_with_10000_live_mandates_publishes_every_revocation,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (_idp, _secret) = mint_setup(&app).await;
        insert_mandates(&app, backend, "leaver", 10_000).await;
        let started = crate::helpers::real_now();
        let body = json!({"principal": {"subject": "leaver", "issuer": "https://idp.example.com/"},
                      "reason": "left the company"});
        let result = app
            .admin_ok(Method::POST, "/v1/admin/revocations", Some(body), 200)
            .await;
        assert_eq!(result["revoked"], 10_000);
        eprintln!(
            "bulk revocation of 10,000 mandates: {:?}",
            started.elapsed()
        );
        let again = app
        .admin_ok(Method::POST, "/v1/admin/revocations", Some(json!({"principal": {"subject": "leaver", "issuer": "https://idp.example.com/"}, "reason": "x"})), 200)
        .await;
        assert_eq!(again["revoked"], 0, "nothing left to revoke");
        let (status, _) = app
            .admin(
                Method::POST,
                "/v1/admin/revocations",
                Some(json!({"reason": "everything"})),
            )
            .await;
        assert_eq!(status, 422, "a selector is required");

        // A verifier's copy holds all of them, then lets them go when the mandates expire.
        let clock = Arc::new(ManualClock::new(app.clock.now()));
        let shared: SharedClock = clock.clone();
        let sync = RevocationSync::new(SyncSettings::new(app.base.clone()), shared).unwrap();
        assert_eq!(sync.sync_once().await.unwrap(), 10_000);
        assert_eq!(sync.status().entries, 10_000);
        clock.advance(chrono::Duration::minutes(11));
        app.clock.advance(chrono::Duration::minutes(11));
        sync.sync_once().await.unwrap();
        assert_eq!(sync.status().entries, 0, "expired entries leave");
        let page = app
            .get("/v1/revocations?after=0&limit=10")
            .await
            .json::<Value>()
            .await
            .unwrap();
        assert_eq!(page["items"], json!([]), "the feed omits expired entries");
        let page = app
            .get("/v1/revocations?after=0&limit=10&include_expired=true")
            .await
            .json::<Value>()
            .await
            .unwrap();
        assert_eq!(page["items"].as_array().unwrap().len(), 10);
    }
);

#[tokio::test]
async fn a_revocation_through_one_replica_reaches_a_verifier_following_another_within_2s() {
    let (a, b) = crate::helpers::fixtures::two_replicas().await;
    let (idp, secret) = mint_setup(&a).await;
    let (token, id) = mint(&a, &idp, &secret).await;
    let deep = derive(&derive(&derive(&token, "one"), "two"), "three");

    let clock: SharedClock = a.clock.clone();
    let sync = RevocationSync::new(SyncSettings::new(b.base.clone()), clock.clone()).unwrap();
    let _follower = sync.spawn();
    let verifier =
        Verifier::new(VerifierSettings::new(b.base.clone()), sync.clone(), clock).unwrap();
    let deadline = crate::helpers::real_now() + Duration::from_secs(5);
    while sync.fresh().is_err() {
        assert!(
            crate::helpers::real_now() < deadline,
            "the copy never synced"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    verifier.verify(&deep, &read()).await.unwrap();

    a.admin_ok(
        Method::POST,
        &format!("/v1/mandates/{id}/revoke"),
        Some(json!({"reason": "compromised"})),
        200,
    )
    .await;
    let revoked_at = crate::helpers::real_now();
    loop {
        match verifier.verify(&deep, &read()).await {
            Err(TokenError::Revoked) => break,
            Ok(_) => {}
            Err(other) => panic!("unexpected refusal: {other}"),
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(2),
            "not revoked at the verifier within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "revocation reached the other replica's follower in {:?}",
        revoked_at.elapsed()
    );
    assert!(matches!(
        verifier.verify(&token, &read()).await,
        Err(TokenError::Revoked)
    ));
}

/// A feed that can be cut: forwards `GET /v1/revocations` to `upstream` while up, 503 while
/// down (the stream is never offered, so the copy polls).
async fn cuttable_feed(upstream: String) -> (String, Arc<AtomicBool>) {
    let up = Arc::new(AtomicBool::new(true));
    let state = (upstream, up.clone());
    let app = axum::Router::new()
        .route(
            "/v1/revocations",
            axum::routing::get(
                |axum::extract::State((upstream, up)): axum::extract::State<(
                    String,
                    Arc<AtomicBool>,
                )>,
                 uri: axum::http::Uri| async move {
                    if !up.load(Ordering::SeqCst) {
                        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, String::new());
                    }
                    let query = uri.query().unwrap_or_default();
                    let body = reqwest::get(format!("{upstream}/v1/revocations?{query}"))
                        .await
                        .unwrap()
                        .text()
                        .await
                        .unwrap();
                    (axum::http::StatusCode::OK, body)
                },
            ),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, up)
}

#[tokio::test]
async fn a_verifier_cut_off_from_the_feed_fails_closed_then_recovers() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (idp, secret) = mint_setup(&app).await;
    let (token, _) = mint(&app, &idp, &secret).await;
    let (feed, up) = cuttable_feed(app.base.clone()).await;
    let clock: SharedClock = app.clock.clone();
    let settings = SyncSettings {
        base_url: feed,
        max_staleness: Duration::from_millis(600),
        poll_interval: Duration::from_millis(100),
        credential: None,
    };
    let sync = RevocationSync::new(settings, clock.clone()).unwrap();
    assert!(sync.fresh().is_err(), "never synced: stale");
    let _follower = sync.spawn();
    let verifier =
        Verifier::new(VerifierSettings::new(app.base.clone()), sync.clone(), clock).unwrap();
    // Staleness is measured on the injected clock: while waiting for the copy to go stale,
    // each round moves it a second on (past `max_staleness`), so no test sleeps it stale.
    let wait_until = |ok: bool| {
        let verifier = &verifier;
        let token = &token;
        let clock = &app.clock;
        async move {
            let deadline = crate::helpers::real_now() + Duration::from_secs(5);
            loop {
                if !ok {
                    clock.advance(chrono::Duration::seconds(1));
                }
                let result = verifier.verify(token, &read()).await;
                if result.is_ok() == ok {
                    return result;
                }
                assert!(crate::helpers::real_now() < deadline, "still {result:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    wait_until(true).await.unwrap();
    up.store(false, Ordering::SeqCst);
    let refused = wait_until(false).await.unwrap_err();
    assert!(
        matches!(&refused, TokenError::RevocationsStale(reason) if reason.contains("last synced")),
        "{refused}"
    );
    assert!(sync.status().stale);
    up.store(true, Ordering::SeqCst);
    wait_until(true).await.unwrap();
    assert!(!sync.status().stale);
    // Without a revocation list at all, nothing is stale.
    assert!(NoRevocations.fresh().is_ok());
}

#[tokio::test]
async fn a_policy_removed_through_one_replica_stops_mints_through_another_at_once() {
    let (a, b) = crate::helpers::fixtures::two_replicas().await;
    let (idp, secret) = mint_setup(&a).await;
    let body = mint_body(
        &idp.sign("rsa-1", &idp.claims("alice", &["support"], b.clock.now())),
        json!([{"tool": "crm", "operations": ["read"]}]),
    );
    // B reads (and keeps) the inventory with its first mint.
    let (status, _) = b.agent(&secret).mint_body(body.clone()).await;
    assert_eq!(status, 201);
    a.admin_ok(Method::DELETE, "/v1/admin/policies/support-crm", None, 204)
        .await;
    let (status, problem) = b.agent(&secret).mint_body(body).await;
    assert_eq!(status, 403, "B still granted a removed policy: {problem}");
}

#[tokio::test]
async fn streams_beyond_the_configured_cap_are_sent_to_the_polling_feed() {
    let db = TestDatabase::new(Backend::Sqlite).await;
    let app = TestApp::spawn_with(db, |config| config.max_revocation_streams = 2).await;
    let open = || app.get("/v1/revocations/stream?after=0");
    let first = open().await;
    let second = open().await;
    for stream in [&first, &second] {
        assert_eq!(stream.status(), 200);
        assert!(stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
    }
    let problem = assert_problem(open().await, 503).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("/v1/revocations"),
        "{problem}"
    );
    // The polling feed still answers, and a closed stream frees its place.
    assert_eq!(app.get("/v1/revocations?after=0").await.status(), 200);
    drop(first);
    let deadline = crate::helpers::real_now() + Duration::from_secs(5);
    loop {
        let again = open().await;
        if again.status() == 200 {
            break;
        }
        assert!(
            crate::helpers::real_now() < deadline,
            "the closed stream's place was never freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(second);
}

/// A feed whose page never moves the cursor (here: entries at or before it, with a larger
/// `next_after`) would otherwise be asked for the same page forever.
#[tokio::test]
async fn a_feed_page_that_moves_the_cursor_nowhere_ends_the_sync() {
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = asked.clone();
    let app = axum::Router::new().route(
        "/v1/revocations",
        axum::routing::get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async {
                axum::Json(json!({"items": [{"seq": 0, "revocation_id": "0a",
                    "expires_at": "2099-01-01T00:00:00Z"}], "next_after": 5}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let clock: SharedClock = Arc::new(ManualClock::new(crate::helpers::test_epoch()));
    let sync = RevocationSync::new(SyncSettings::new(base), clock).unwrap();
    let read = tokio::time::timeout(Duration::from_secs(5), sync.sync_once())
        .await
        .unwrap_or_else(|_| panic!("the sync never ended"))
        .unwrap();
    assert_eq!(read, 1);
    assert_eq!(
        asked.load(Ordering::SeqCst),
        1,
        "the page was asked for once"
    );
    assert_eq!(sync.status().entries, 1);
}

#[tokio::test]
async fn a_revoked_mandate_stays_refused_through_the_skew_window_after_its_expiry() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (idp, secret) = mint_setup(&app).await;
    let jwt = idp.sign("rsa-1", &idp.claims("alice", &["support"], app.clock.now()));
    let mut body = mint_body(&jwt, json!([{"tool": "crm", "operations": ["read"]}]));
    body["ttl_seconds"] = json!(5);
    let (status, minted) = app.agent(&secret).mint_body(body).await;
    assert_eq!(status, 201, "{minted}");
    let token = minted["token"].as_str().unwrap();
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(minted["expires_at"].clone()).unwrap();
    let path = format!(
        "/v1/mandates/{}/revoke",
        minted["mandate_id"].as_str().unwrap()
    );
    let response = app
        .call(
            Method::POST,
            &path,
            Some(&secret),
            Some(&json!({"reason": "stolen"})),
        )
        .await;
    assert_eq!(response.status(), 200);

    // 29 s after expiry a verifier with the default 30 s skew still accepts the token's time,
    // so the feed must still list its revocation, and a fresh copy must refuse it.
    app.clock.set(expires + chrono::Duration::seconds(29));
    let page: Value = app.get("/v1/revocations").await.json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["kept_past_expiry_seconds"], 31);
    let clock: SharedClock = app.clock.clone();
    let sync = RevocationSync::new(SyncSettings::new(app.base.clone()), clock.clone()).unwrap();
    sync.sync_once().await.unwrap();
    let verifier =
        Verifier::new(VerifierSettings::new(app.base.clone()), sync.clone(), clock).unwrap();
    assert!(matches!(
        verifier.verify(token, &read()).await,
        Err(TokenError::Revoked)
    ));

    // Expiry is compared in whole seconds after the skew: half a second into the last second,
    // the token's time is still accepted, so the feed still lists the revocation and the copy
    // still holds it.
    app.clock
        .set(expires + chrono::Duration::milliseconds(30_500));
    let page: Value = app.get("/v1/revocations").await.json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    sync.sync_once().await.unwrap();
    assert!(matches!(
        verifier.verify(token, &read()).await,
        Err(TokenError::Revoked)
    ));

    // Past the skew the token is refused as expired anyway, and the entry leaves the feed.
    app.clock.set(expires + chrono::Duration::seconds(32));
    let page: Value = app.get("/v1/revocations").await.json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 0, "{page}");
    sync.sync_once().await.unwrap();
    assert!(matches!(
        verifier.verify(token, &read()).await,
        Err(TokenError::Expired)
    ));
}

#[tokio::test]
async fn a_holder_can_always_end_its_branch_even_after_others_spent_the_branch_cap() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (idp, secret) = mint_setup(&app).await;
    let (token, _) = mint(&app, &idp, &secret).await;
    let revoke = |branch: String| {
        let app = &app;
        async move {
            let body = json!({"token": branch, "reason": "spent"});
            let response = app
                .call(Method::POST, "/v1/revocations", None, Some(&body))
                .await;
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    // Anyone holding the mandate can mint branches and revoke them, up to the cap.
    for i in 0..64 {
        let answer = revoke(derive(&token, &format!("spam-{i}"))).await;
        assert_eq!(answer["whole_mandate"], false);
    }
    // The legitimate holder's branch is still ended: with the whole mandate, and it says so.
    let mine = derive(&token, "research");
    let answer = revoke(mine.clone()).await;
    assert_eq!(answer["whole_mandate"], true, "{answer}");
    assert_eq!(introspect(&app, &mine).await["active"], false);
    assert_eq!(introspect(&app, &token).await["active"], false);
    let rows = app.count("SELECT count(*) FROM revocations").await;
    assert_eq!(
        rows, 65,
        "the cap bounds the rows: 64 branches and the mandate"
    );
}

#[tokio::test]
async fn one_caller_cannot_take_every_revocation_stream() {
    let db = TestDatabase::new(Backend::Sqlite).await;
    let app = TestApp::spawn_with(db, |config| config.max_revocation_streams = 16).await;
    let credential = crate::helpers::fixtures::reporter(&app, "crm-api").await;
    let open = |bearer: Option<&str>| {
        let mut request = app.client.get(app.url("/v1/revocations/stream?after=0"));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send()
    };
    // From one address, without a credential: four, then 503 naming the polling feed.
    let mut held = Vec::new();
    for _ in 0..mandate::server::streams::STREAMS_PER_CALLER {
        let stream = open(None).await.unwrap();
        assert_eq!(stream.status(), 200);
        held.push(stream);
    }
    let problem = assert_problem(open(None).await.unwrap(), 503).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("this caller"),
        "{problem}"
    );
    // A registered reporter is its own caller, with its own four.
    for _ in 0..mandate::server::streams::STREAMS_PER_CALLER {
        let stream = open(Some(&credential)).await.unwrap();
        assert_eq!(stream.status(), 200);
        held.push(stream);
    }
    assert_problem(open(Some(&credential)).await.unwrap(), 503).await;
    // A credential that is not a reporter's is refused, not counted as an address.
    assert_problem(open(Some("mnd_rep_forged")).await.unwrap(), 401).await;
}

#[tokio::test]
async fn introspection_without_credentials_says_which_ones_it_takes() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let response = app
        .call(
            Method::POST,
            "/v1/introspect",
            None,
            Some(&json!({"token": "x"})),
        )
        .await;
    let problem = assert_problem(response, 401).await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("agent secret") && detail.contains("admin token"),
        "{problem}"
    );
}

#[tokio::test]
async fn introspection_takes_rfc_7662_form_bodies_and_says_what_is_wrong_with_bad_ones() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (idp, secret) = mint_setup(&app).await;
    let (token, id) = mint(&app, &idp, &secret).await;
    let form = |body: String| {
        app.client
            .post(format!("{}/v1/introspect", app.base))
            .bearer_auth(crate::helpers::ADMIN_TOKEN)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    // As RFC 7662 sends it: `token`, and a `token_type_hint` that changes nothing.
    let answer: Value = form(format!("token={token}&token_type_hint=access_token"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["mandate_id"], id);
    assert_eq!(
        answer,
        introspect(&app, &token).await,
        "form and JSON agree"
    );
    // A named call the mandate does not grant is inactive, as in JSON.
    let answer: Value = form(format!("token={token}&tool=crm&operation=delete"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["active"], false);
    // Bad forms: each answered with a problem naming what is wrong.
    let problem = assert_problem(form("token_type_hint=x".into()).await.unwrap(), 422).await;
    assert_eq!(problem["errors"][0]["field"], "token", "{problem}");
    let problem = assert_problem(form(format!("token={token}&scope=x")).await.unwrap(), 422).await;
    assert_eq!(problem["errors"][0]["field"], "scope", "{problem}");
    let problem = assert_problem(form(format!("token={token}&token=x")).await.unwrap(), 400).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("twice"),
        "{problem}"
    );
    let problem = assert_problem(form(format!("token={token}&tool=crm")).await.unwrap(), 422).await;
    assert_eq!(problem["errors"][0]["field"], "operation", "{problem}");
    // Neither JSON nor a form: 415, naming both.
    let response = app
        .client
        .post(format!("{}/v1/introspect", app.base))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .header("content-type", "text/plain")
        .body(token)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 415).await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("application/json") && detail.contains("x-www-form-urlencoded"),
        "{problem}"
    );
}

/// A feed whose poll answers `page` and whose stream sends `events`, once.
async fn fake_feed(page: Value, events: &'static str) -> String {
    let app = axum::Router::new()
        .route(
            "/v1/revocations",
            axum::routing::get(move || {
                let page = page.clone();
                async move { axum::Json(page) }
            }),
        )
        .route(
            "/v1/revocations/stream",
            axum::routing::get(
                move || async move { ([("content-type", "text/event-stream")], events) },
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

#[tokio::test]
async fn an_unreadable_feed_entry_is_a_failed_sync_and_the_cursor_stays_before_it() {
    let clock: SharedClock = Arc::new(ManualClock::new(crate::helpers::test_epoch()));
    // A page with an entry whose id is not hex: refused whole, nothing applied.
    let bad_page = json!({"items": [
        {"seq": 1, "revocation_id": "0a", "expires_at": "2099-01-01T00:00:00Z"},
        {"seq": 2, "revocation_id": "not hex", "expires_at": "2099-01-01T00:00:00Z"}],
        "next_after": 2, "kept_past_expiry_seconds": 31});
    let base = fake_feed(bad_page, "").await;
    let sync = RevocationSync::new(SyncSettings::new(base), clock.clone()).unwrap();
    assert!(sync.sync_once().await.is_err());
    let status = sync.status();
    assert_eq!((status.cursor, status.entries), (0, 0));
    assert!(status.stale, "a failed sync is not a sync");

    // A stream event that is not a feed entry ends the stream before the entries after it
    // are applied: the cursor stays at the last entry read, so the next poll reads them.
    let events = "event: revocation\ndata: {\"seq\": 1, \"revocation_id\": \"0a\", \
                  \"expires_at\": \"2099-01-01T00:00:00Z\"}\n\n\
                  event: revocation\ndata: {\"seq\": 2, \"revocation\n\n\
                  event: revocation\ndata: {\"seq\": 3, \"revocation_id\": \"0c\", \
                  \"expires_at\": \"2099-01-01T00:00:00Z\"}\n\n";
    let base = fake_feed(json!({"items": [], "next_after": 0}), events).await;
    let sync = RevocationSync::new(SyncSettings::new(base), clock).unwrap();
    let error = sync.follow().await.unwrap_err().to_string();
    assert!(error.contains("not a feed entry"), "{error}");
    let status = sync.status();
    assert_eq!((status.cursor, status.entries), (1, 1), "{status:?}");
    assert!(sync.is_revoked(&[0x0a]) && !sync.is_revoked(&[0x0c]));
}

//! Minting: a human's token from a real identity provider over HTTP, exchanged by an
//! orchestrator for a mandate that verifies offline and grants exactly what policy allows.

use chrono::Duration;
use mandate::clock::Clock;
use mandate::token::keys::KeysDocument;
use mandate::token::verify::{verify, AccessRequest};
use reqwest::Method;
use serde_json::{json, Value};

use crate::both_stores;
use crate::helpers::callers::MANDATES;
use crate::helpers::fixtures::{agent_secret, mint_body, mint_setup};
use crate::helpers::idp::{sign_hs256_with_public_key, sign_with, unsigned};
use crate::helpers::{assert_problem, TestApp};

/// How many audit events `keep` selects.
async fn audited(
    app: &TestApp,
    keep: impl Fn(&mandate::server::store::AuditEvent) -> bool,
) -> usize {
    app.store
        .audit_events(0, 10_000)
        .await
        .unwrap()
        .iter()
        .filter(|e| keep(e))
        .count()
}

async fn issued_count(app: &TestApp) -> usize {
    audited(app, |e| e.action == "mandate.issued").await
}

async fn key_set(app: &TestApp) -> mandate::token::keys::KeySet {
    let doc: KeysDocument = app
        .get("/.well-known/mandate-keys")
        .await
        .json()
        .await
        .unwrap();
    doc.key_set().unwrap()
}

fn access(tool: &str, operation: &str, now: chrono::DateTime<chrono::Utc>) -> AccessRequest {
    AccessRequest {
        tool: tool.into(),
        operation: operation.into(),
        now,
    }
}

both_stores!(
    a_valid_mint_returns_a_recorded_mandate_that_verifies_offline,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (idp, secret) = mint_setup(&app).await;
        let now = app.clock.now();
        let jwt = idp.sign("rsa-1", &idp.claims("alice", &["support"], now));
        let (status, body) = app
            .agent(&secret)
            .mint_body(mint_body(
                &jwt,
                json!([{"tool": "crm", "operations": ["read"]}]),
            ))
            .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["scope"], json!([{"tool": "crm", "operation": "read"}]));
        // TTL = min(default 900, policy 600, agent 900, cap 3600).
        let expires_at: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(body["expires_at"].clone()).unwrap();
        assert_eq!(expires_at, now + Duration::seconds(600));

        let token = body["token"].as_str().unwrap();
        let keys = key_set(&app).await;
        let authority = verify(token, &keys, &access("crm", "read", now)).unwrap();
        assert_eq!(authority.principal_subject, "alice");
        assert_eq!(authority.principal_issuer, idp.issuer);
        assert_eq!(authority.agent_id, "bot");
        assert_eq!(authority.mandate_id, body["mandate_id"].as_str().unwrap());
        assert!(authority.task_id.starts_with("task-"));
        assert!(verify(token, &keys, &access("crm", "read", expires_at)).is_ok());
        assert!(verify(
            token,
            &keys,
            &access("crm", "read", expires_at + Duration::seconds(1))
        )
        .is_err());
        assert!(
            verify(token, &keys, &access("crm", "write", now)).is_err(),
            "not requested"
        );
        assert!(verify(token, &keys, &access("crm", "delete", now)).is_err());

        let id: uuid::Uuid = body["mandate_id"].as_str().unwrap().parse().unwrap();
        let issuance = app.store.mandate(id).await.unwrap().unwrap();
        assert_eq!(issuance.agent_id, "bot");
        assert_eq!(issuance.principal_subject, "alice");
        assert_eq!(issuance.task_description, "Summarise ACME tickets");
        assert_eq!(issuance.root_kid, 1);
        assert_eq!(
            hex::encode(&issuance.revocation_id),
            body["revocation_id"].as_str().unwrap()
        );
        assert_eq!(issuance.expires_at, expires_at);
        assert_eq!(issued_count(&app).await, 1);
    }
);

both_stores!(
    every_bad_subject_token_is_401_with_its_reason_and_audited,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (idp, secret) = mint_setup(&app).await;
        let now = app.clock.now();
        let good = idp.claims("alice", &["support"], now);
        let with = |key: &str, value: Value| {
            let mut claims = good.clone();
            claims[key] = value;
            claims
        };
        let without = |key: &str| {
            let mut claims = good.clone();
            claims.as_object_mut().unwrap().remove(key);
            claims
        };
        let cases: Vec<(&str, String, &str)> = vec![
            (
                "bad signature",
                sign_with("rsa-1", "rsa-2", &good),
                "bad_signature",
            ),
            (
                "wrong iss",
                idp.sign("rsa-1", &with("iss", json!("https://evil.example.com"))),
                "untrusted_issuer",
            ),
            (
                "wrong aud",
                idp.sign("rsa-1", &with("aud", json!("someone-else"))),
                "wrong_audience",
            ),
            (
                "no aud",
                idp.sign("rsa-1", &without("aud")),
                "wrong_audience",
            ),
            (
                "expired",
                idp.sign("rsa-1", &with("exp", json!(now.timestamp() - 120))),
                "expired",
            ),
            ("no exp", idp.sign("rsa-1", &without("exp")), "expired"),
            (
                "an exp that would never pass",
                idp.sign("rsa-1", &with("exp", json!(1e300))),
                "malformed_token",
            ),
            (
                "nbf in the future",
                idp.sign("rsa-1", &with("nbf", json!(now.timestamp() + 600))),
                "not_yet_valid",
            ),
            ("alg none", unsigned(&good), "algorithm_not_allowed"),
            (
                "HS256 with the public key",
                sign_hs256_with_public_key(&good),
                "algorithm_not_allowed",
            ),
            (
                "unknown kid",
                sign_with("nope", "rsa-1", &good),
                "unknown_key",
            ),
            (
                "no subject",
                idp.sign("rsa-1", &without("sub")),
                "missing_subject",
            ),
            (
                "not a JWT",
                "definitely-not-a-jwt".to_owned(),
                "malformed_token",
            ),
        ];
        for (name, jwt, reason) in cases {
            let body = mint_body(&jwt, json!([{"tool": "crm", "operations": ["read"]}]));
            let response = app.agent(&secret).mint_response(&body).await;
            let problem = assert_problem(response, 401).await;
            assert_eq!(problem["reason"], reason, "{name}: {problem}");
            assert!(problem.get("token").is_none());
        }
        assert_eq!(issued_count(&app).await, 0);
        let denials = audited(&app, |e| e.action == "mandate.denied").await;
        assert_eq!(denials, 13, "every refusal is audited");
        // Within the leeway the clock skew is tolerated.
        let skewed = idp.sign("rsa-1", &with("nbf", json!(now.timestamp() + 30)));
        let (status, body) = app
            .agent(&secret)
            .mint_body(mint_body(
                &skewed,
                json!([{"tool": "crm", "operations": ["read"]}]),
            ))
            .await;
        assert_eq!(status, 201, "{body}");
    }
);

both_stores!(
    rotated_issuer_keys_are_fetched_once_per_unknown_kid,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (idp, secret) = mint_setup(&app).await;
        let now = app.clock.now();
        let claims = idp.claims("alice", &["support"], now);
        let scope = json!([{"tool": "crm", "operations": ["read"]}]);
        let (status, _) = app
            .agent(&secret)
            .mint_body(mint_body(&idp.sign("rsa-1", &claims), scope.clone()))
            .await;
        assert_eq!(status, 201);
        let (status, body) = app
            .agent(&secret)
            .mint_body(mint_body(&idp.sign("ec-1", &claims), scope.clone()))
            .await;
        assert_eq!(status, 201, "EC keys work too: {body}");
        assert_eq!(idp.jwks_hits(), 1, "the keys were cached");

        // The provider rotates: rsa-1 and ec-1 are withdrawn, rsa-2 appears.
        idp.publish(&["rsa-2"]);
        let (status, body) = app
            .agent(&secret)
            .mint_body(mint_body(&idp.sign("rsa-2", &claims), scope.clone()))
            .await;
        assert_eq!(status, 201, "an unknown kid refetches the keys: {body}");
        assert_eq!(idp.jwks_hits(), 2);
        let (status, body) = app
            .agent(&secret)
            .mint_body(mint_body(&idp.sign("rsa-1", &claims), scope.clone()))
            .await;
        assert_eq!(
            (status, body["reason"].as_str()),
            (401, Some("unknown_key"))
        );
        assert_eq!(idp.jwks_hits(), 2, "at most one refetch per interval");
        // After the interval an unknown kid may refetch again.
        idp.publish(&["rsa-1", "rsa-2"]);
        app.clock.advance(Duration::seconds(31));
        let later = idp.claims("alice", &["support"], app.clock.now());
        let (status, body) = app
            .agent(&secret)
            .mint_body(mint_body(&idp.sign("rsa-1", &later), scope))
            .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(idp.jwks_hits(), 3);
    }
);

#[tokio::test]
async fn a_subject_token_verified_before_is_checked_again_against_the_issuer_and_the_clock() {
    let app = TestApp::spawn(crate::helpers::Backend::Sqlite).await;
    let (idp, secret) = mint_setup(&app).await;
    let token = idp.sign("rsa-1", &idp.claims("alice", &["support"], app.clock.now()));
    let body = mint_body(&token, json!([{"tool": "crm", "operations": ["read"]}]));
    for _ in 0..3 {
        let (status, body) = app.agent(&secret).mint_body(body.clone()).await;
        assert_eq!(status, 201, "the same token mints again: {body}");
    }
    // Its signature was verified with the issuer's settings of the time; new settings apply.
    app.admin_ok(
        Method::PATCH,
        "/v1/admin/issuers/test-idp",
        Some(json!({"audiences": ["another-service"]})),
        200,
    )
    .await;
    let (status, answer) = app.agent(&secret).mint_body(body.clone()).await;
    assert_eq!(
        (status, answer["reason"].as_str()),
        (401, Some("wrong_audience")),
        "{answer}"
    );
    app.admin_ok(
        Method::PATCH,
        "/v1/admin/issuers/test-idp",
        Some(json!({"audiences": ["mandate"]})),
        200,
    )
    .await;
    let (status, answer) = app.agent(&secret).mint_body(body.clone()).await;
    assert_eq!(status, 201, "{answer}");
    // A key the issuer withdrew verifies nothing, remembered or not.
    idp.publish(&["rsa-2"]);
    app.clock.advance(Duration::minutes(6));
    let (status, answer) = app.agent(&secret).mint_body(body.clone()).await;
    assert_eq!(
        (status, answer["reason"].as_str()),
        (401, Some("unknown_key")),
        "{answer}"
    );
    // Expiry is checked on every use: the token's `exp` is 10 minutes after it was signed,
    // with 60 s of leeway.
    idp.publish(&["rsa-1"]);
    app.clock.advance(Duration::seconds(31));
    let (status, answer) = app.agent(&secret).mint_body(body.clone()).await;
    assert_eq!(status, 201, "{answer}");
    app.clock.advance(Duration::minutes(5));
    let (status, answer) = app.agent(&secret).mint_body(body.clone()).await;
    assert_eq!(
        (status, answer["reason"].as_str()),
        (401, Some("expired")),
        "{answer}"
    );
}

/// A replica decides on the inventory it keeps in memory; a change committed through another
/// replica reaches it at the latest when its mint commits, and the mint is decided again.
#[tokio::test]
async fn changes_made_through_another_replica_apply_to_the_next_mint() {
    let (a, b) = crate::helpers::fixtures::two_replicas().await;
    let (idp, secret) = mint_setup(&a).await;
    let token = idp.sign("rsa-1", &idp.claims("alice", &["support"], b.clock.now()));
    let read = mint_body(&token, json!([{"tool": "crm", "operations": ["read"]}]));
    let write = mint_body(&token, json!([{"tool": "crm", "operations": ["write"]}]));
    let (status, answer) = b.agent(&secret).mint_body(write.clone()).await;
    assert_eq!(status, 201, "B keeps the inventory it read: {answer}");
    let grants =
        |operations: &[&str]| json!({"grants": [{"tool": "crm", "operations": operations}]});

    // A narrows the policy: B's kept inventory still allows writing, its commit does not.
    a.admin_ok(
        Method::PATCH,
        "/v1/admin/policies/support-crm",
        Some(grants(&["read"])),
        200,
    )
    .await;
    let (status, answer) = b.agent(&secret).mint_body(write.clone()).await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["denied"][0]["operation"], "write", "{answer}");
    // A widens it again: B's kept inventory now refuses writing; the refusal is confirmed
    // first, finds the change, and the mint is decided again.
    a.admin_ok(
        Method::PATCH,
        "/v1/admin/policies/support-crm",
        Some(grants(&["read", "write"])),
        200,
    )
    .await;
    let (status, answer) = b.agent(&secret).mint_body(write.clone()).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(issued_count(&b).await, 2);
    let denials = audited(&b, |e| e.action == "mandate.denied").await;
    assert_eq!(denials, 1, "only the refusal that stood is audited");

    // A rotates the agent's secret: the old one stops working on B too.
    let rotated = agent_secret(&a, "/v1/admin/agents/bot/secret/rotate").await;
    let (status, answer) = b.agent(&secret).mint_body(read.clone()).await;
    assert_eq!(
        status, 409,
        "decided before B knew, refused at commit: {answer}"
    );
    assert_eq!(
        b.agent(&secret).mint_body(read.clone()).await.0,
        401,
        "then unknown"
    );
    let (status, answer) = b.agent(&rotated).mint_body(read.clone()).await;
    assert_eq!(status, 201, "{answer}");

    // A suspends the agent: nothing more is issued through B, and B answers a bad request
    // from it only once it has confirmed who is asking.
    a.admin_ok(Method::POST, "/v1/admin/agents/bot/suspend", None, 200)
        .await;
    let mut empty = read.clone();
    empty["scope"] = json!([]);
    assert_eq!(
        b.agent(&rotated).mint_body(empty.clone()).await.0,
        401,
        "not 422"
    );
    assert_eq!(b.agent(&rotated).mint_body(read.clone()).await.0, 401);
    assert_eq!(
        issued_count(&b).await,
        3,
        "nothing issued after a change refused it"
    );
    let changed = audited(&b, |e| {
        e.action == "mandate.denied" && e.details["reason"] == "inventory_changed"
    })
    .await;
    assert_eq!(changed, 1, "the mint refused at commit is audited");
}

#[tokio::test]
async fn concurrent_mints_with_cold_issuer_keys_fetch_them_once() {
    let app = TestApp::spawn(crate::helpers::Backend::Sqlite).await;
    let (idp, secret) = mint_setup(&app).await;
    let body = mint_body(
        &idp.sign("rsa-1", &idp.claims("alice", &["support"], app.clock.now())),
        json!([{"tool": "crm", "operations": ["read"]}]),
    );
    let mints: Vec<_> = (0..16)
        .map(|_| {
            let request = app
                .client
                .post(app.url(MANDATES))
                .bearer_auth(&secret)
                .json(&body);
            tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    for mint in mints {
        assert_eq!(mint.await.unwrap().unwrap(), 201);
    }
    assert_eq!(idp.jwks_hits(), 1, "one fetch served every waiting mint");
}

#[tokio::test]
async fn an_issuer_whose_keys_are_slow_does_not_hold_up_another_issuers_mints() {
    let app = TestApp::spawn(crate::helpers::Backend::Sqlite).await;
    let (idp, secret) = mint_setup(&app).await;
    let slow = crate::helpers::idp::TestIdp::start().await;
    crate::helpers::fixtures::trust_issuer(&app, "slow-idp", &slow, &["read"], 300).await;
    slow.slow_down(std::time::Duration::from_secs(2));
    let scope = json!([{"tool": "crm", "operations": ["read"]}]);
    let claims = slow.claims("alice", &["support"], app.clock.now());
    let waiting = app
        .client
        .post(app.url(MANDATES))
        .bearer_auth(&secret)
        .json(&mint_body(&slow.sign("rsa-1", &claims), scope.clone()));
    let waiting = tokio::spawn(async move { waiting.send().await.map(|r| r.status().as_u16()) });
    while slow.jwks_hits() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // While the slow issuer's keys are being fetched, the other issuer's mint goes through.
    let started = crate::helpers::real_now();
    let claims = idp.claims("alice", &["support"], app.clock.now());
    let (status, body) = app
        .agent(&secret)
        .mint_body(mint_body(&idp.sign("rsa-1", &claims), scope))
        .await;
    assert_eq!(status, 201, "{body}");
    assert!(
        started.elapsed() < std::time::Duration::from_millis(1500),
        "waited {:?} for another issuer's fetch",
        started.elapsed()
    );
    assert_eq!(
        waiting.await.unwrap().unwrap(),
        201,
        "the slow issuer's mint completes too"
    );
}

both_stores!(
    only_an_active_orchestrator_with_its_secret_mints,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (idp, secret) = mint_setup(&app).await;
        let jwt = idp.sign("rsa-1", &idp.claims("alice", &["support"], app.clock.now()));
        let body = mint_body(&jwt, json!([{"tool": "crm", "operations": ["read"]}]));
        let response = app.call(Method::POST, MANDATES, None, Some(&body)).await;
        assert_problem(response, 401).await;
        let wrong = "mnd_agt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let response = app.agent(wrong).mint_response(&body).await;
        assert_problem(response, 401).await;
        let response = app
            .agent(crate::helpers::ADMIN_TOKEN)
            .mint_response(&body)
            .await;
        assert_problem(response, 401).await;
        // A sub-agent with a valid secret may not start tasks.
        let helper = app
            .admin_ok(Method::POST, "/v1/admin/agents/helper/secret", None, 201)
            .await;
        let response = app
            .call(
                Method::POST,
                MANDATES,
                helper["secret"].as_str(),
                Some(&body),
            )
            .await;
        assert_problem(response, 403).await;
        // Suspended: its secret stops working; resumed: it works again.
        app.admin_ok(Method::POST, "/v1/admin/agents/bot/suspend", None, 200)
            .await;
        let response = app.agent(&secret).mint_response(&body).await;
        assert_problem(response, 401).await;
        app.admin_ok(Method::POST, "/v1/admin/agents/bot/resume", None, 200)
            .await;
        let (status, _) = app.agent(&secret).mint_body(body.clone()).await;
        assert_eq!(status, 201);
        assert_eq!(issued_count(&app).await, 1);
    }
);

both_stores!(
    each_denied_operation_is_listed_with_its_reason,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (idp, secret) = mint_setup(&app).await;
        let now = app.clock.now();
        let alice = idp.sign("rsa-1", &idp.claims("alice", &["support"], now));
        let scope = json!([
            {"tool": "crm", "operations": ["read", "delete", "purge"]},
            {"tool": "github", "operations": ["issues.read"]},
            {"tool": "ghost", "operations": ["haunt"]},
        ]);
        let response = app
            .agent(&secret)
            .mint_response(&mint_body(&alice, scope))
            .await;
        let problem = assert_problem(response, 403).await;
        assert_eq!(
            problem["denied"],
            json!([
                {"tool": "crm", "operation": "delete", "reason": "outside_agent_ceiling"},
                {"tool": "crm", "operation": "purge", "reason": "unknown_operation"},
                {"tool": "github", "operation": "issues.read", "reason": "outside_agent_ceiling"},
                {"tool": "ghost", "operation": "haunt", "reason": "unknown_tool"},
            ])
        );
        // Someone outside the support group: no policy covers them.
        let bob = idp.sign("rsa-1", &idp.claims("bob", &["sales"], now));
        let (status, body) = app
            .agent(&secret)
            .mint_body(mint_body(
                &bob,
                json!([{"tool": "crm", "operations": ["read"]}]),
            ))
            .await;
        assert_eq!(status, 403);
        assert_eq!(body["denied"][0]["reason"], "no_policy");
        // A disabled tool.
        app.admin_ok(Method::POST, "/v1/admin/tools/crm/disable", None, 200)
            .await;
        let (status, body) = app
            .agent(&secret)
            .mint_body(mint_body(
                &alice,
                json!([{"tool": "crm", "operations": ["read"]}]),
            ))
            .await;
        assert_eq!(status, 403);
        assert_eq!(body["denied"][0]["reason"], "tool_inactive");
        assert_eq!(issued_count(&app).await, 0);
        let denied: Vec<_> = app
            .store
            .audit_events(0, 10_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "mandate.denied")
            .collect();
        assert_eq!(denied.len(), 3);
        assert_eq!(denied[0].details["denied"].as_array().unwrap().len(), 4);
        assert_eq!(denied[0].details["principal"]["subject"], "alice");
    }
);

both_stores!(
    the_ttl_is_the_least_of_request_policy_agent_and_cap,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (idp, secret) = mint_setup(&app).await;
        let now = app.clock.now();
        let jwt = idp.sign("rsa-1", &idp.claims("alice", &["support"], now));
        for (asked, expected) in [(Some(120), 120), (Some(3000), 600), (None, 600)] {
            let mut body = mint_body(&jwt, json!([{"tool": "crm", "operations": ["read"]}]));
            if let Some(ttl) = asked {
                body["ttl_seconds"] = json!(ttl);
            }
            let (status, body) = app.agent(&secret).mint_body(body.clone()).await;
            assert_eq!(status, 201, "{body}");
            let expires: chrono::DateTime<chrono::Utc> =
                serde_json::from_value(body["expires_at"].clone()).unwrap();
            assert_eq!(
                expires,
                now + Duration::seconds(expected),
                "asked {asked:?}"
            );
        }
        app.admin_ok(
            Method::PATCH,
            "/v1/admin/agents/bot",
            Some(json!({"max_ttl_seconds": 60})),
            200,
        )
        .await;
        let (_, body) = app
            .agent(&secret)
            .mint_body(mint_body(
                &jwt,
                json!([{"tool": "crm", "operations": ["read"]}]),
            ))
            .await;
        let expires: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(body["expires_at"].clone()).unwrap();
        assert_eq!(expires, now + Duration::seconds(60), "the agent's maximum");
        for bad in [json!(0), json!(-1), json!(3601), json!("soon")] {
            let mut body = mint_body(&jwt, json!([{"tool": "crm", "operations": ["read"]}]));
            body["ttl_seconds"] = bad.clone();
            let (status, problem) = app.agent(&secret).mint_body(body.clone()).await;
            assert_eq!(status, 422, "{bad}: {problem}");
            assert_eq!(problem["errors"][0]["field"], "ttl_seconds");
        }
    }
);

both_stores!(bad_mint_requests_name_their_field, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let (idp, secret) = mint_setup(&app).await;
    let jwt = idp.sign("rsa-1", &idp.claims("alice", &["support"], app.clock.now()));
    let base = mint_body(&jwt, json!([{"tool": "crm", "operations": ["read"]}]));
    let with = |path: &[&str], value: Value| {
        let mut body = base.clone();
        let mut at = &mut body;
        for key in &path[..path.len() - 1] {
            at = &mut at[*key];
        }
        at[path[path.len() - 1]] = value;
        body
    };
    for (body, field) in [
        (with(&["scope"], json!([])), "scope"),
        (
            with(&["scope"], json!([{"tool": "crm", "operations": []}])),
            "scope[0].operations",
        ),
        (
            with(&["task", "description"], json!("")),
            "task.description",
        ),
        (
            with(&["task", "description"], json!("é".repeat(2049))),
            "task.description",
        ),
        (
            with(&["task", "description"], json!("nul\u{0}")),
            "task.description",
        ),
        (with(&["task", "ref"], json!("x".repeat(129))), "task.ref"),
        (with(&["subject_token"], json!("")), "subject_token"),
        (with(&["extra"], json!(1)), "extra"),
    ] {
        let (status, problem) = app.agent(&secret).mint_body(body.clone()).await;
        assert_eq!(status, 422, "{field}: {problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    assert_eq!(issued_count(&app).await, 0);
});

both_stores!(
    datalog_in_a_task_subject_or_group_is_stored_verbatim_and_grants_nothing,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (idp, secret) = mint_setup(&app).await;
        let hostile_subject = "alice\"), right(\"crm\", \"delete\"); check if false; //\n";
        // Policies may not name a subject with a newline; the principal is matched by this group.
        let hostile_group = "support\"); right(\"crm\",\"delete\"); //";
        app.admin_ok(
            Method::POST,
            "/v1/admin/policies",
            Some(json!({"id": "hostile", "issuer": "test-idp",
                    "groups": [hostile_group], "agents": ["bot"],
                    "grants": [{"tool": "crm", "operations": ["read"]}], "max_ttl_seconds": 300})),
            201,
        )
        .await;
        let now = app.clock.now();
        let jwt = idp.sign("rsa-1", &idp.claims(hostile_subject, &[hostile_group], now));
        // 4 KiB of unicode, with Datalog, quotes and newlines.
        let mut description =
            String::from("right(\"crm\", \"delete\");\n\"quoted\" 'single' $var {param}\n");
        while description.len() + 'é'.len_utf8() <= 4096 {
            description.push('é');
        }
        let body = json!({"subject_token": jwt, "task": {"description": description, "ref": "t\"); right(\"x\",\"y\")"},
                      "scope": [{"tool": "crm", "operations": ["read"]}]});
        let (status, issued) = app.agent(&secret).mint_body(body.clone()).await;
        assert_eq!(status, 201, "{issued}");
        let token = issued["token"].as_str().unwrap();
        let keys = key_set(&app).await;
        let authority = verify(token, &keys, &access("crm", "read", now)).unwrap();
        assert_eq!(authority.principal_subject, hostile_subject);
        assert_eq!(authority.task_id, "t\"); right(\"x\",\"y\")");
        assert_eq!(authority.rights.len(), 1);
        for (tool, op) in [("crm", "delete"), ("x", "y"), ("crm", "write")] {
            assert!(
                verify(token, &keys, &access(tool, op, now)).is_err(),
                "{tool}:{op}"
            );
        }
        let id: uuid::Uuid = issued["mandate_id"].as_str().unwrap().parse().unwrap();
        let stored = app.store.mandate(id).await.unwrap().unwrap();
        assert_eq!(stored.task_description, description);
        assert_eq!(stored.principal_subject, hostile_subject);
        assert_eq!(
            hex::encode(&stored.task_digest),
            hex::encode(ring::digest::digest(
                &ring::digest::SHA256,
                description.as_bytes()
            ))
        );
    }
);

both_stores!(
    an_issuer_found_by_discovery_is_trusted_too,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (_, secret) = mint_setup(&app).await;
        let other = crate::helpers::idp::TestIdp::start().await;
        app.admin_ok(
            Method::POST,
            "/v1/admin/issuers",
            Some(
                json!({"id": "discovered", "issuer_url": other.issuer, "audiences": ["mandate"],
                    "discovery": true, "allowed_algorithms": ["ES256"], "groups_claim": "groups"}),
            ),
            201,
        )
        .await;
        app.admin_ok(
            Method::POST,
            "/v1/admin/policies",
            Some(
                json!({"id": "discovered-crm", "issuer": "discovered", "subjects": ["carol"],
                    "agents": "*", "grants": [{"tool": "crm", "operations": ["read"]}],
                    "max_ttl_seconds": 300}),
            ),
            201,
        )
        .await;
        let claims = other.claims("carol", &[], app.clock.now());
        let (status, body) = app
            .agent(&secret)
            .mint_body(mint_body(
                &other.sign("ec-1", &claims),
                json!([{"tool": "crm", "operations": ["read"]}]),
            ))
            .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(
            other.jwks_hits(),
            1,
            "the JWKS named by the discovery document was fetched"
        );
        // RS256 is not in this issuer's allowlist, although its key is published.
        let (status, body) = app
            .agent(&secret)
            .mint_body(mint_body(
                &other.sign("rsa-1", &claims),
                json!([{"tool": "crm", "operations": ["read"]}]),
            ))
            .await;
        assert_eq!(
            (status, body["reason"].as_str()),
            (401, Some("algorithm_not_allowed"))
        );
    }
);

#[tokio::test]
async fn orchestrators_and_principals_are_held_to_their_mint_rates() {
    let db = crate::helpers::TestDatabase::new(crate::helpers::Backend::Sqlite).await;
    let app = TestApp::spawn_with(db, |config| {
        config.mint_rate_per_agent = 4;
        config.mint_rate_per_principal = 2;
    })
    .await;
    let (idp, secret) = mint_setup(&app).await;
    let scope = json!([{"tool": "crm", "operations": ["read"]}]);
    let as_alice = mint_body(
        &idp.sign("rsa-1", &idp.claims("alice", &["support"], app.clock.now())),
        scope.clone(),
    );
    let as_bob = mint_body(
        &idp.sign("rsa-1", &idp.claims("bob", &["support"], app.clock.now())),
        scope,
    );
    for _ in 0..2 {
        assert_eq!(app.agent(&secret).mint_body(as_alice.clone()).await.0, 201);
    }
    let audited = app.audit_len().await;
    // alice has used her two a minute; bob has not.
    let response = app
        .client
        .post(app.url(MANDATES))
        .bearer_auth(&secret)
        .json(&as_alice)
        .send()
        .await
        .unwrap();
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    let problem = assert_problem(response, 429).await;
    assert_eq!(problem["type"], "urn:mandate:problem:rate-limited");
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("principal alice"));
    // That attempt still counted against bot: bob's first mint is bot's fourth and last.
    assert_eq!(app.agent(&secret).mint_body(as_bob.clone()).await.0, 201);
    let (status, problem) = app.agent(&secret).mint_body(as_bob.clone()).await;
    assert_eq!(status, 429);
    assert!(
        problem["detail"].as_str().unwrap().contains("agent bot"),
        "{problem}"
    );
    assert_eq!(
        app.audit_len().await,
        audited + 1,
        "throttled mints leave no audit rows; bob's issuance does"
    );
    let count: i64 = {
        let pool = sqlx::SqlitePool::connect(&app.db.url()).await.unwrap();
        sqlx::query_scalar("SELECT count(*) FROM mandates")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert_eq!(count, 3, "three issued, nothing for the throttled ones");
}

both_stores!(
    an_orchestrator_holds_at_most_its_cap_of_live_mandates,
    |backend| async move {
        let db = crate::helpers::TestDatabase::new(backend).await;
        let app = TestApp::spawn_with(db, |config| config.max_live_mandates_per_agent = 2).await;
        let (idp, secret) = mint_setup(&app).await;
        let body = mint_body(
            &idp.sign("rsa-1", &idp.claims("alice", &["support"], app.clock.now())),
            json!([{"tool": "crm", "operations": ["read"]}]),
        );
        let (_, first) = app.agent(&secret).mint_body(body.clone()).await;
        assert_eq!(app.agent(&secret).mint_body(body.clone()).await.0, 201);
        let (status, problem) = app.agent(&secret).mint_body(body.clone()).await;
        assert_eq!(status, 409, "{problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("2 live mandates"),
            "{problem}"
        );
        assert_eq!(issued_count(&app).await, 2, "nothing issued beyond the cap");
        let denials = audited(&app, |e| {
            e.action == "mandate.denied" && e.details["reason"] == "live_mandate_limit"
        })
        .await;
        assert_eq!(denials, 1, "the refusal is audited");
        // Completing a task frees its place.
        let id = first["mandate_id"].as_str().unwrap();
        app.admin_ok(
            Method::POST,
            &format!("/v1/mandates/{id}/revoke"),
            Some(json!({"reason": "done"})),
            200,
        )
        .await;
        assert_eq!(app.agent(&secret).mint_body(body.clone()).await.0, 201);
        // Expired mandates do not count either.
        app.clock.advance(Duration::seconds(601));
        let later = mint_body(
            &idp.sign("rsa-1", &idp.claims("alice", &["support"], app.clock.now())),
            json!([{"tool": "crm", "operations": ["read"]}]),
        );
        assert_eq!(app.agent(&secret).mint_body(later.clone()).await.0, 201);
        assert_eq!(app.agent(&secret).mint_body(later.clone()).await.0, 201);
    }
);

both_stores!(
    the_live_cap_stays_exact_across_expiry_minutes_and_pruning,
    |backend| async move {
        let db = crate::helpers::TestDatabase::new(backend).await;
        let app = TestApp::spawn_with(db, |config| config.max_live_mandates_per_agent = 3).await;
        let (idp, secret) = mint_setup(&app).await;
        let token = idp.sign("rsa-1", &idp.claims("alice", &["support"], app.clock.now()));
        let body = |ttl: u32| {
            let mut body = mint_body(&token, json!([{"tool": "crm", "operations": ["read"]}]));
            body["ttl_seconds"] = json!(ttl);
            body
        };
        // Three mandates expiring in three different minutes fill the cap.
        for ttl in [60, 480, 540] {
            let (status, answer) = app.agent(&secret).mint_body(body(ttl).clone()).await;
            assert_eq!(status, 201, "{answer}");
        }
        assert_eq!(app.agent(&secret).mint_body(body(300).clone()).await.0, 409);
        // The first has expired: its place is free at once, and its count is forgotten once its
        // minute is five minutes past; the others still count.
        app.clock.advance(Duration::seconds(121));
        assert_eq!(app.agent(&secret).mint_body(body(300).clone()).await.0, 201);
        assert_eq!(app.agent(&secret).mint_body(body(300).clone()).await.0, 409);
        let early = app
            .store
            .prune_issuance_counts(app.clock.now())
            .await
            .unwrap();
        assert_eq!(early, 0, "a lagging replica's clock may still count it");
        // Later the fourth has expired too, leaving two live.
        app.clock.advance(Duration::seconds(310));
        let pruned = app
            .store
            .prune_issuance_counts(app.clock.now())
            .await
            .unwrap();
        assert_eq!(pruned, 1, "only the first's minute is long enough past");
        assert_eq!(app.agent(&secret).mint_body(body(60).clone()).await.0, 201);
        let (status, problem) = app.agent(&secret).mint_body(body(60).clone()).await;
        assert_eq!(status, 409, "three are live again: {problem}");
        assert_eq!(issued_count(&app).await, 5);
    }
);

both_stores!(
    argument_constraints_are_minted_into_the_mandate_and_looser_requests_are_denied,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (idp, secret) = mint_setup(&app).await;
        // The policy lets bot write only tickets of queue `support`.
        app.admin_ok(
            Method::PATCH,
            "/v1/admin/policies/support-crm",
            Some(
                json!({"grants": [{"tool": "crm", "operations": ["read", "write"],
                                    "constraints": {"queue": {"equals": "support"}}}]}),
            ),
            200,
        )
        .await;
        let jwt = idp.sign("rsa-1", &idp.claims("alice", &["support"], app.clock.now()));
        let ask = |constraints: Value| {
            mint_body(
                &jwt,
                json!([{"tool": "crm", "operations": ["write"], "constraints": constraints}]),
            )
        };
        let (status, minted) = app.agent(&secret).mint_body(ask(json!({}))).await;
        assert_eq!(status, 201, "{minted}");
        assert_eq!(
            minted["constraints"],
            json!([{"tool": "crm", "operation": "write", "argument": "queue",
                    "constraint": {"equals": "support"}}])
        );
        let verifier = app.verifier();
        let token = minted["token"].as_str().unwrap();
        let access = |op: &str| mandate::verifier::Access {
            tool: "crm".into(),
            operation: op.into(),
            resource: None,
        };
        assert!(verifier
            .verify_call(token, &access("write"), Some(&json!({"queue": "support"})))
            .await
            .is_ok());
        assert!(matches!(
            verifier
                .verify_call(token, &access("write"), Some(&json!({"queue": "sales"})))
                .await,
            Err(mandate::token::TokenError::ArgumentNotAllowed { .. })
        ));

        // Asking for more than the policy allows is denied, naming the argument.
        let (status, denied) = app
            .agent(&secret)
            .mint_body(ask(json!({"queue": {"one_of": ["support", "sales"]}})))
            .await;
        assert_eq!(status, 403, "{denied}");
        assert_eq!(
            denied["denied"][0]["reason"],
            "arguments_looser_than_policy"
        );
        assert_eq!(denied["denied"][0]["argument"]["name"], "queue");
        assert_eq!(
            denied["denied"][0]["argument"]["allowed"],
            json!({"equals": "support"})
        );

        // Malformed constraints are refused before anything is evaluated, each field named.
        let (status, invalid) = app
            .agent(&secret)
            .mint_body(ask(
                json!({"queue": {"glob": "a[b"}, "bad path": {"prefix": "x"},
                                  "n": {"range": {"min": 5, "max": 1}}}),
            ))
            .await;
        assert_eq!(status, 422, "{invalid}");
        let fields: Vec<&str> = invalid["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert_eq!(
            fields,
            [
                "scope[0].constraints.bad path",
                "scope[0].constraints.n",
                "scope[0].constraints.queue"
            ],
            "{invalid}"
        );
        let (status, unknown) = app
            .agent(&secret)
            .mint_body(ask(json!({"queue": {"regex": ".*"}})))
            .await;
        assert_eq!(status, 422, "{unknown}");
        assert_eq!(unknown["errors"][0]["field"], "scope[0].constraints.queue");
        let message = unknown["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("`one_of`, `prefix`, `glob`"),
            "names the kinds: {message}"
        );
    }
);

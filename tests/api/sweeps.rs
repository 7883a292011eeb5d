//! A status that revokes (an agent suspended or retired, a tool disabled or retired, an issuer
//! disabled) commits before its sweep of live mandates. When the sweep fails, the status holds,
//! repeating the request finishes the sweep, and the reconciler finishes it in any case.

use mandate::clock::Clock;
use reqwest::Method;

use crate::both_stores;
use crate::helpers::fixtures::{mint_read, mint_setup};
use crate::helpers::{Backend, TestApp};

/// Each action that revokes, and what it leaves the resource as.
const ACTIONS: [(&str, &str, &str); 5] = [
    (
        "/v1/admin/agents/bot/suspend",
        "/v1/admin/agents/bot",
        "suspended",
    ),
    (
        "/v1/admin/agents/bot/retire?force=true",
        "/v1/admin/agents/bot",
        "retired",
    ),
    (
        "/v1/admin/tools/crm/disable",
        "/v1/admin/tools/crm",
        "disabled",
    ),
    (
        "/v1/admin/tools/crm/retire?force=true",
        "/v1/admin/tools/crm",
        "retired",
    ),
    (
        "/v1/admin/issuers/test-idp/disable",
        "/v1/admin/issuers/test-idp",
        "disabled",
    ),
];

/// Makes every revocation insert fail, or lets them through again.
async fn refuse_revocations(app: &TestApp, backend: Backend, refuse: bool) {
    let statements: &[&str] = match (backend, refuse) {
        (Backend::Postgres, true) => &[
            "CREATE FUNCTION refuse_revocations() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN RAISE EXCEPTION 'disk full'; END $$",
            "CREATE TRIGGER refuse_revocations BEFORE INSERT ON revocations FOR EACH ROW \
             EXECUTE FUNCTION refuse_revocations()",
        ],
        (Backend::Postgres, false) => &[
            "DROP TRIGGER refuse_revocations ON revocations",
            "DROP FUNCTION refuse_revocations()",
        ],
        (Backend::Sqlite, true) => &[
            "CREATE TRIGGER refuse_revocations BEFORE INSERT ON revocations \
             BEGIN SELECT RAISE(ABORT, 'disk full'); END",
        ],
        (Backend::Sqlite, false) => &["DROP TRIGGER refuse_revocations"],
    };
    for statement in statements {
        app.execute(statement).await;
    }
}

async fn live(app: &TestApp) -> i64 {
    app.count(
        "SELECT count(*) FROM mandates m WHERE NOT EXISTS \
         (SELECT 1 FROM revocations r WHERE r.revocation_id = m.revocation_id)",
    )
    .await
}

/// Three live mandates, then `action` with its sweep failing: a 500, the status changed, the
/// mandates still live.
async fn failed_sweep(backend: Backend, action: &str, resource: &str, status: &str) -> TestApp {
    let app = TestApp::spawn(backend).await;
    let (idp, secret) = mint_setup(&app).await;
    for _ in 0..3 {
        assert_eq!(mint_read(&app, &idp, &secret).await.0, 201);
    }
    refuse_revocations(&app, backend, true).await;
    let (code, problem) = app.admin(Method::POST, action, None).await;
    assert_eq!(code, 500, "{action}: {problem}");
    assert!(!problem.to_string().contains("disk full"), "{problem}");
    let after = app.admin_ok(Method::GET, resource, None, 200).await;
    assert_eq!(after["status"], status, "{action}");
    assert_eq!(live(&app).await, 3, "{action}: the sweep rolled back whole");
    refuse_revocations(&app, backend, false).await;
    app
}

both_stores!(
    repeating_a_status_change_whose_sweep_failed_finishes_the_sweep,
    |backend| async move {
        for (action, resource, status) in ACTIONS {
            let app = failed_sweep(backend, action, resource, status).await;
            let version = app.admin_ok(Method::GET, resource, None, 200).await["version"].clone();
            let response = app
                .client
                .post(app.url(action))
                .bearer_auth(crate::helpers::ADMIN_TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{action}");
            assert_eq!(response.headers()["x-revoked-mandates"], "3", "{action}");
            assert_eq!(live(&app).await, 0, "{action}");
            let again = app.admin_ok(Method::GET, resource, None, 200).await;
            assert_eq!(
                again["version"], version,
                "{action}: the status did not change twice"
            );
        }
    }
);

both_stores!(
    the_reconciler_finishes_a_sweep_that_failed,
    |backend| async move {
        for (action, resource, status) in ACTIONS {
            let app = failed_sweep(backend, action, resource, status).await;
            let revoked = mandate::server::revoke::reconcile(&app.state)
                .await
                .unwrap();
            assert_eq!(revoked, 3, "{action}");
            assert_eq!(live(&app).await, 0, "{action}");
            let recorded = app
                .count("SELECT count(*) FROM audit_events WHERE actor = 'reconciler'")
                .await;
            assert_eq!(
                recorded, 1,
                "{action}: one audit event names the reconciler"
            );
            assert_eq!(
                mandate::server::revoke::reconcile(&app.state)
                    .await
                    .unwrap(),
                0
            );
        }
    }
);

both_stores!(
    disabling_or_deleting_a_policy_revokes_the_mandates_no_other_policy_grants,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (idp, secret) = mint_setup(&app).await;
        // A second policy grants crm read (not write) to the same principals.
        app.admin_ok(
            Method::POST,
            "/v1/admin/policies",
            Some(
                serde_json::json!({"id": "support-read", "issuer": "test-idp",
                "groups": ["support"], "agents": ["bot"],
                "grants": [{"tool": "crm", "operations": ["read"]}], "max_ttl_seconds": 600}),
            ),
            201,
        )
        .await;
        let jwt = idp.sign("rsa-1", &idp.claims("alice", &["support"], app.clock.now()));
        let write = crate::helpers::fixtures::mint_body(
            &jwt,
            serde_json::json!([{"tool": "crm", "operations": ["write"]}]),
        );
        let (status, _) = app.agent(&secret).mint_body(write).await;
        assert_eq!(status, 201);
        assert_eq!(mint_read(&app, &idp, &secret).await.0, 201);
        assert_eq!(live(&app).await, 2);

        // Disabling support-crm: the write mandate had no other policy; the read one has.
        let response = app
            .client
            .patch(app.url("/v1/admin/policies/support-crm"))
            .bearer_auth(crate::helpers::ADMIN_TOKEN)
            .json(&serde_json::json!({"enabled": false}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-revoked-mandates"], "1");
        assert_eq!(live(&app).await, 1);

        // Deleting the other one leaves the read mandate without a policy.
        let response = app
            .client
            .delete(app.url("/v1/admin/policies/support-read"))
            .bearer_auth(crate::helpers::ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
        assert_eq!(response.headers()["x-revoked-mandates"], "1");
        assert_eq!(live(&app).await, 0);
        let revoked = app
            .count("SELECT count(*) FROM audit_events WHERE action = 'mandates.revoked'")
            .await;
        assert_eq!(revoked, 2, "each sweep is audited");
    }
);

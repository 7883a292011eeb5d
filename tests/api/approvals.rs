//! Human approvals end to end: a mint asking for an operation a policy gates behind approval
//! waits (202), approvers decide with their own IdP tokens, the orchestrator collects a
//! mandate carrying the approval, and every step is in the audit trail. What each bad input
//! gets is said where it is sent.

use std::time::Duration;

use base64::Engine as _;
use mandate::clock::Clock;
use mandate::verifier::Access;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::fixtures::{mint_body, mint_setup};
use crate::helpers::idp::TestIdp;
use crate::helpers::{Backend, TestApp, TestDatabase};

/// The inventory of `mint_setup`, bot's ceiling widened to crm delete, and policy `crm-delete`
/// letting group support delegate crm delete to bot under `approval`.
async fn gated(app: &TestApp, approval: Value) -> (TestIdp, String) {
    let (idp, secret) = mint_setup(app).await;
    app.admin_ok(
        Method::PATCH,
        "/v1/admin/agents/bot",
        Some(json!({"ceiling": [{"tool": "crm", "operations": ["read", "write", "delete"]}]})),
        200,
    )
    .await;
    app.admin_ok(
        Method::POST,
        "/v1/admin/policies",
        Some(
            json!({"id": "crm-delete", "issuer": "test-idp", "groups": ["support"],
                    "agents": ["bot"], "max_ttl_seconds": 600,
                    "grants": [{"tool": "crm", "operations": ["delete"], "approval": approval}]}),
        ),
        201,
    )
    .await;
    (idp, secret)
}

/// bob approves, alone.
fn bob_approves() -> Value {
    json!({"approvers": {"subjects": ["bob"]}, "valid_seconds": 300})
}

/// A token of `subject` in `groups`, issued now by the app's clock.
fn token(app: &TestApp, idp: &TestIdp, subject: &str, groups: &[&str]) -> String {
    idp.sign("rsa-1", &idp.claims(subject, groups, app.clock.now()))
}

/// An approver's token, issued a second later than anything before it (a decision needs a
/// token issued after the request's second).
fn approver(app: &TestApp, idp: &TestIdp, subject: &str, groups: &[&str]) -> String {
    app.clock.advance(chrono::Duration::seconds(1));
    token(app, idp, subject, groups)
}

/// alice (group support) asks, as bot, for crm read and `delete` (`arguments` for it when
/// given), for `task`.
async fn ask(
    app: &TestApp,
    idp: &TestIdp,
    secret: &str,
    task: &str,
    arguments: Option<Value>,
) -> (u16, Value) {
    let mut delete = json!({"tool": "crm", "operations": ["delete"]});
    if let Some(arguments) = arguments {
        delete["arguments"] = arguments;
    }
    let mut body = mint_body(
        &token(app, idp, "alice", &["support"]),
        json!([{"tool": "crm", "operations": ["read"]}, delete]),
    );
    body["task"]["description"] = json!(task);
    app.agent(secret).mint_body(body).await
}

/// `verb` (`approve` or `deny`) on request `id` as the holder of `jwt`, for `reason`.
async fn decide(app: &TestApp, jwt: &str, id: &str, verb: &str, reason: &str) -> (u16, Value) {
    let path = format!("/v1/approvals/{id}/{verb}");
    app.as_token(jwt, Method::POST, &path, Some(json!({ "reason": reason })))
        .await
}

/// The orchestrator collects request `id`'s mandate.
async fn collect(app: &TestApp, secret: &str, id: &str) -> (u16, Value) {
    let path = format!("/v1/approvals/{id}/mandate");
    app.as_token(secret, Method::POST, &path, None).await
}

fn actions(events: &[mandate::server::store::AuditEvent]) -> Vec<&str> {
    events.iter().map(|e| e.action.as_str()).collect()
}

#[tokio::test]
async fn a_gated_mint_waits_for_bob_then_carries_his_approval_to_every_verifier() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (idp, secret) = gated(&app, bob_approves()).await;
    let response = app
        .call(
            Method::POST,
            "/v1/mandates",
            Some(&secret),
            Some(&{
                let mut body = mint_body(
                    &token(&app, &idp, "alice", &["support"]),
                    json!([{"tool": "crm", "operations": ["read", "delete"]}]),
                );
                body["task"]["description"] = json!("Delete the duplicate ACME record");
                body
            }),
        )
        .await;
    assert_eq!(response.status().as_u16(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(response.headers()["retry-after"], "5");
    let pending: Value = response.json().await.unwrap();
    let id = pending["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/approvals/{id}"));
    assert_eq!(pending["state"], "pending");
    assert_eq!(
        pending["binding_message"],
        "bot asks to crm delete for alice, for the task \"Delete the duplicate ACME record\""
    );
    assert_eq!(pending["gated"][0]["policy"], "crm-delete");
    assert_eq!(pending["poll"], location);
    assert!(pending.get("token").is_none(), "nothing is minted yet");
    assert_eq!(app.count("SELECT count(*) FROM mandates").await, 0);

    // Until bob decides, there is no mandate to collect, and the poll says pending.
    let (status, early) = collect(&app, &secret, &id).await;
    assert_eq!(status, 409, "{early}");
    assert!(early["detail"].as_str().unwrap().contains("pending"));
    let (status, polled) = app.as_token(&secret, Method::GET, &location, None).await;
    assert_eq!((status, polled["state"].clone()), (200, json!("pending")));

    // bob sees it waiting for him, and approves.
    let bob = approver(&app, &idp, "bob", &["crm-admins"]);
    let (status, waiting) = app.as_token(&bob, Method::GET, "/v1/approvals", None).await;
    assert_eq!(status, 200, "{waiting}");
    assert_eq!(waiting["approvals"][0]["id"], id.as_str());
    app.clock.advance(chrono::Duration::seconds(42));
    let (status, approved) = decide(&app, &bob, &id, "approve", "checked with the owner").await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["state"], "approved");
    assert_eq!(approved["decisions"][0]["approver"]["subject"], "bob");
    let (_, waiting) = app.as_token(&bob, Method::GET, "/v1/approvals", None).await;
    assert_eq!(waiting["approvals"], json!([]), "nothing waits for bob now");

    // The mandate arrives, once, carrying who approved and when.
    let (status, issued) = collect(&app, &secret, &id).await;
    assert_eq!(status, 201, "{issued}");
    assert_eq!(issued["approvals"][0]["approvers"][0]["subject"], "bob");
    assert_eq!(issued["approvals"][0]["operation"], "delete");
    let approved_at = app
        .clock
        .now()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(issued["approvals"][0]["approved_at"], approved_at.as_str());
    let (status, again) = collect(&app, &secret, &id).await;
    assert_eq!(status, 409, "{again}");
    assert!(again["detail"].as_str().unwrap().contains("issued already"));

    // Any verifier shows the approval offline.
    let verifier = app.verifier();
    let delete = Access {
        tool: "crm".into(),
        operation: "delete".into(),
        resource: None,
    };
    let verified = verifier
        .verify(issued["token"].as_str().unwrap(), &delete)
        .await
        .unwrap();
    assert_eq!(verified.approvals[0].approvers[0].subject, "bob");
    assert_eq!(verified.approvals[0].id, id);

    // The request, the decision and the mint are in the chain, in order, and it verifies.
    let events = app.store.audit_events(0, 1000).await.unwrap();
    let all = actions(&events);
    let tail: Vec<&str> = all[all.len() - 3..].to_vec();
    assert_eq!(
        tail,
        ["approval.requested", "approval.approved", "mandate.issued"]
    );
    let issued_event = events.last().unwrap();
    assert_eq!(
        issued_event.details["approvals"][0]["approvers"][0]["subject"],
        "bob"
    );
    let (status, verified) = app.admin(Method::GET, "/v1/admin/audit/verify", None).await;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["intact"], true, "{verified}");
}

#[tokio::test]
async fn a_denial_gives_no_mandate_and_says_who_denied_and_why() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (idp, secret) = gated(&app, bob_approves()).await;
    let (status, pending) = ask(&app, &idp, &secret, "Delete a record", None).await;
    assert_eq!(status, 202, "{pending}");
    let id = pending["id"].as_str().unwrap();
    let bob = approver(&app, &idp, "bob", &[]);
    // A decision needs a reason: 422 naming it, nothing recorded.
    let (status, invalid) = decide(&app, &bob, id, "deny", " ").await;
    assert_eq!(status, 422, "{invalid}");
    assert_eq!(invalid["errors"][0]["field"], "reason");
    let (status, denied) = decide(&app, &bob, id, "deny", "not this quarter").await;
    assert_eq!((status, denied["state"].clone()), (200, json!("denied")));
    let (status, refused) = collect(&app, &secret, id).await;
    assert_eq!(status, 403, "{refused}");
    assert!(refused["detail"]
        .as_str()
        .unwrap()
        .contains("denied by bob: not this quarter"));
    // Decided: a later decision is 409.
    let (status, late) = decide(&app, &bob, id, "approve", "changed my mind").await;
    assert_eq!(status, 409, "{late}");
    assert_eq!(app.count("SELECT count(*) FROM mandates").await, 0);
    let events = app.store.audit_events(0, 1000).await.unwrap();
    assert_eq!(events.last().unwrap().action, "approval.denied");
}

#[tokio::test]
async fn an_undecided_request_expires_and_then_takes_no_decision() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (idp, secret) = gated(&app, bob_approves()).await;
    let (_, pending) = ask(&app, &idp, &secret, "Delete a record", None).await;
    let id = pending["id"].as_str().unwrap();
    app.clock.advance(chrono::Duration::seconds(301));
    let bob = approver(&app, &idp, "bob", &[]);
    let (status, late) = decide(&app, &bob, id, "approve", "sorry, late").await;
    assert_eq!(status, 409, "{late}");
    assert!(late["detail"].as_str().unwrap().contains("expired"));
    let (status, polled) = app
        .as_token(&secret, Method::GET, &format!("/v1/approvals/{id}"), None)
        .await;
    assert_eq!((status, polled["state"].clone()), (200, json!("expired")));
    let (status, refused) = collect(&app, &secret, id).await;
    assert_eq!(status, 409, "{refused}");
    let (_, waiting) = app.as_token(&bob, Method::GET, "/v1/approvals", None).await;
    assert_eq!(waiting["approvals"], json!([]));
}

#[tokio::test]
async fn only_eligible_approvers_decide_and_the_principal_never_approves_their_own() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let rule = json!({"approvers": {"groups": ["crm-admins"]}, "valid_seconds": 300});
    let (idp, secret) = gated(&app, rule).await;
    let (_, pending) = ask(&app, &idp, &secret, "Delete a record", None).await;
    let id = pending["id"].as_str().unwrap();
    // carol is in no named group: 403, and nothing waits for her.
    let carol = approver(&app, &idp, "carol", &["sales"]);
    let (status, refused) = decide(&app, &carol, id, "approve", "sure").await;
    assert_eq!(status, 403, "{refused}");
    assert!(refused["detail"]
        .as_str()
        .unwrap()
        .contains("does not name carol"));
    let (_, waiting) = app
        .as_token(&carol, Method::GET, "/v1/approvals", None)
        .await;
    assert_eq!(waiting["approvals"], json!([]));
    // alice is a crm admin too, but she is the principal: 403.
    let alice = approver(&app, &idp, "alice", &["support", "crm-admins"]);
    let (status, refused) = decide(&app, &alice, id, "approve", "mine").await;
    assert_eq!(status, 403, "{refused}");
    assert!(refused["detail"]
        .as_str()
        .unwrap()
        .contains("does not let the principal approve their own"));
    // No token, an agent secret, or a forged token: 401.
    for bad in [None, Some(secret.as_str()), Some("a.b.c")] {
        let path = format!("/v1/approvals/{id}/approve");
        let body = json!({"reason": "x"});
        let response = app.call(Method::POST, &path, bad, Some(&body)).await;
        assert_eq!(response.status().as_u16(), 401, "{bad:?}");
    }
    // An unknown request: 404.
    let dave = approver(&app, &idp, "dave", &["crm-admins"]);
    let unknown = "01900000-0000-7000-8000-000000000000";
    let (status, _) = decide(&app, &dave, unknown, "approve", "x").await;
    assert_eq!(status, 404);
    // A token the orchestrator could have held since before the request: 403.
    let old = idp.sign(
        "rsa-1",
        &idp.claims(
            "dave",
            &["crm-admins"],
            app.clock.now() - chrono::Duration::seconds(10),
        ),
    );
    let (status, stale) = decide(&app, &old, id, "approve", "x").await;
    assert_eq!(status, 403, "{stale}");
    assert!(stale["detail"]
        .as_str()
        .unwrap()
        .contains("issued after the request"));
    // dave, a crm admin with a fresh token, approves; nothing was recorded before him.
    let (status, approved) = decide(&app, &dave, id, "approve", "ok").await;
    assert_eq!(
        (status, approved["state"].clone()),
        (200, json!("approved"))
    );
    assert_eq!(approved["decisions"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn where_the_policy_says_so_the_principal_approves_as_one_of_two() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let rule = json!({"approvers": {"subjects": ["alice", "bob", "carol"]}, "required": 2,
                      "principal_counts": true});
    let (idp, secret) = gated(&app, rule).await;
    let (_, pending) = ask(&app, &idp, &secret, "Delete a record", None).await;
    let id = pending["id"].as_str().unwrap();
    let alice = approver(&app, &idp, "alice", &[]);
    let (status, once) = decide(&app, &alice, id, "approve", "mine, and I mean it").await;
    assert_eq!((status, once["state"].clone()), (200, json!("pending")));
    // The same approver twice counts once: 409, still pending.
    let (status, twice) = decide(&app, &alice, id, "approve", "again").await;
    assert_eq!(status, 409, "{twice}");
    assert!(twice["detail"]
        .as_str()
        .unwrap()
        .contains("already decided"));
    let bob = approver(&app, &idp, "bob", &[]);
    let (status, approved) = decide(&app, &bob, id, "approve", "agreed").await;
    assert_eq!(
        (status, approved["state"].clone()),
        (200, json!("approved"))
    );
    let (status, issued) = collect(&app, &secret, id).await;
    assert_eq!(status, 201, "{issued}");
    let approvers: Vec<&str> = issued["approvals"][0]["approvers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["subject"].as_str().unwrap())
        .collect();
    assert_eq!(approvers, ["alice", "bob"]);
}

#[tokio::test]
async fn a_principal_rule_is_the_principals_own_fresh_approval() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (idp, secret) = gated(&app, json!({"approvers": "principal"})).await;
    // The subject token the orchestrator minted with is one it holds: it cannot approve.
    let subject_token = token(&app, &idp, "alice", &["support"]);
    let mut body = mint_body(
        &subject_token,
        json!([{"tool": "crm", "operations": ["delete"]}]),
    );
    body["task"]["description"] = json!("Delete a record");
    let (status, pending) = app.agent(&secret).mint_body(body).await;
    assert_eq!(status, 202, "{pending}");
    let id = pending["id"].as_str().unwrap();
    let (status, refused) = decide(&app, &subject_token, id, "approve", "the agent says so").await;
    assert_eq!(status, 403, "{refused}");
    assert!(refused["detail"]
        .as_str()
        .unwrap()
        .contains("issued after the request"));
    let bob = approver(&app, &idp, "bob", &[]);
    let (status, _) = decide(&app, &bob, id, "approve", "not mine to approve").await;
    assert_eq!(status, 403);
    let alice = approver(&app, &idp, "alice", &[]);
    let (status, approved) = decide(&app, &alice, id, "approve", "yes, delete it").await;
    assert_eq!(
        (status, approved["state"].clone()),
        (200, json!("approved"))
    );
}

#[tokio::test]
async fn an_approval_bound_to_arguments_is_for_that_call_and_that_request_only() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let rule = json!({"approvers": {"subjects": ["bob"]}, "bind_arguments": true});
    let (idp, secret) = gated(&app, rule).await;
    // Bound: the request must name the arguments (422), and only for that operation (422).
    let (status, missing) = ask(&app, &idp, &secret, "Delete a record", None).await;
    assert_eq!(status, 422, "{missing}");
    assert_eq!(missing["errors"][0]["field"], "scope[1].arguments");
    let mut body = mint_body(
        &token(&app, &idp, "alice", &["support"]),
        json!([{"tool": "crm", "operations": ["read"], "arguments": {"id": 1}}]),
    );
    let (status, stray) = app.agent(&secret).mint_body(body.clone()).await;
    assert_eq!(status, 422, "{stray}");
    assert_eq!(stray["errors"][0]["field"], "scope[0].arguments");
    body["scope"] = json!([{"tool": "crm", "operations": ["delete"], "arguments": [1]}]);
    let (status, not_object) = app.agent(&secret).mint_body(body).await;
    assert_eq!(status, 422, "{not_object}");

    let arguments = json!({"id": "cust-42", "hard": false});
    let (status, pending) = ask(&app, &idp, &secret, "Delete cust-42", Some(arguments)).await;
    assert_eq!(status, 202, "{pending}");
    let id = pending["id"].as_str().unwrap().to_owned();
    assert!(pending["binding_message"]
        .as_str()
        .unwrap()
        .contains(r#"crm delete {"hard":false,"id":"cust-42"}"#));
    let bob = approver(&app, &idp, "bob", &[]);
    decide(&app, &bob, &id, "approve", "that one record").await;
    let (_, issued) = collect(&app, &secret, &id).await;
    let mandate = issued["token"].as_str().unwrap();
    let digest = issued["approvals"][0]["arguments_sha256"].as_str().unwrap();
    assert_eq!(
        digest,
        mandate::token::canonical::arguments_digest(Some(&json!({"id": "cust-42", "hard": false})))
    );

    // The mandate allows exactly those arguments (in any member order), nothing else.
    let verifier = app.verifier();
    let delete = Access {
        tool: "crm".into(),
        operation: "delete".into(),
        resource: None,
    };
    let same = json!({"hard": false, "id": "cust-42"});
    assert!(verifier
        .verify_call(mandate, &delete, Some(&same))
        .await
        .is_ok());
    for other in [
        json!({"id": "cust-43", "hard": false}),
        json!({"id": "cust-42"}),
    ] {
        let refused = verifier
            .verify_call(mandate, &delete, Some(&other))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), "arguments_not_approved", "{other}");
    }
    let refused = verifier
        .verify_call(mandate, &delete, None)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "arguments_not_approved");

    // Another task cannot ride on it: asking again makes a new request, pending.
    let (status, again) = ask(
        &app,
        &idp,
        &secret,
        "Delete cust-42 again",
        Some(json!({"id": "cust-42", "hard": false})),
    )
    .await;
    assert_eq!((status, again["state"].clone()), (202, json!("pending")));
    assert_ne!(again["id"], id.as_str());

    // The gateway-side record of its one call: once, and only with the approved digest.
    let reporter = crate::helpers::fixtures::reporter(&app, "crm-gw").await;
    let use_body = |digest: &str| json!({"token": mandate, "tool": "crm", "operation": "delete", "arguments_sha256": digest});
    let (status, wrong) = app
        .as_token(
            &reporter,
            Method::POST,
            "/v1/approvals/uses",
            Some(use_body(&"0".repeat(64))),
        )
        .await;
    assert_eq!(status, 422, "{wrong}");
    let (status, used) = app
        .as_token(
            &reporter,
            Method::POST,
            "/v1/approvals/uses",
            Some(use_body(digest)),
        )
        .await;
    assert_eq!(status, 200, "{used}");
    let (status, twice) = app
        .as_token(
            &reporter,
            Method::POST,
            "/v1/approvals/uses",
            Some(use_body(digest)),
        )
        .await;
    assert_eq!(status, 409, "{twice}");
    let (status, _) = app
        .as_token(
            &secret,
            Method::POST,
            "/v1/approvals/uses",
            Some(use_body(digest)),
        )
        .await;
    assert_eq!(status, 401, "an agent secret is no reporter's credential");
    let events = app.store.audit_events(0, 1000).await.unwrap();
    assert_eq!(
        actions(&events)
            .iter()
            .filter(|a| **a == "approval.used")
            .count(),
        1
    );
}

#[tokio::test]
async fn approval_rules_are_checked_when_policies_are_written() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    crate::helpers::fixtures::seed(&app).await;
    let policy = |grants: Value| {
        json!({"id": "gated", "issuer": "idp", "groups": ["support"], "agents": ["bot"],
               "max_ttl_seconds": 600, "grants": grants})
    };
    let cases = [
        (
            json!([{"tool": "crm", "operations": ["delete"],
                    "approval": {"approvers": {"subjects": []}}}]),
            "grants[0].approval.approvers",
        ),
        (
            json!([{"tool": "crm", "operations": ["delete"],
                    "approval": {"approvers": {"subjects": ["bob"]}, "required": 0}}]),
            "grants[0].approval.required",
        ),
        (
            json!([{"tool": "crm", "operations": ["delete"],
                    "approval": {"approvers": {"subjects": ["bob"]}, "required": 2}}]),
            "grants[0].approval.required",
        ),
        (
            json!([{"tool": "crm", "operations": ["delete"],
                    "approval": {"approvers": {"subjects": ["bob"]}, "valid_seconds": 10}}]),
            "grants[0].approval.valid_seconds",
        ),
        (
            json!([{"tool": "crm", "operations": ["delete"],
                    "approval": {"approvers": "principal", "required": 2}}]),
            "grants[0].approval.required",
        ),
        (
            json!([{"tool": "crm", "operations": ["delete"],
                    "approval": {"approvers": {"subjects": ["bob"]},
                                 "webhook": "http://hooks.example.com/a"}}]),
            "grants[0].approval.webhook",
        ),
        (
            json!([{"tool": "crm", "operations": ["delete"], "arguments": {"id": 1}}]),
            "grants[0].arguments",
        ),
        (
            json!([{"tool": "crm", "operations": ["read"]},
                   {"tool": "crm", "operations": ["read"]}]),
            "grants[1].operations",
        ),
    ];
    for (grants, field) in cases {
        let (status, body) = app
            .admin(
                Method::POST,
                "/v1/admin/policies",
                Some(policy(grants.clone())),
            )
            .await;
        assert_eq!(status, 422, "{grants}: {body}");
        let fields: Vec<&str> = body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&field), "{grants}: {fields:?}");
    }
    // A ceiling requires no approval; a tool may appear twice with other operations.
    let (status, body) = app
        .admin(
            Method::PATCH,
            "/v1/admin/agents/bot",
            Some(json!({"ceiling": [{"tool": "crm", "operations": ["read"],
                                     "approval": {"approvers": "principal"}}]})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "ceiling[0].approval");
    let split = json!([{"tool": "crm", "operations": ["read"]},
                       {"tool": "crm", "operations": ["delete"],
                        "approval": {"approvers": {"subjects": ["bob"]},
                                     "webhook": "http://127.0.0.1:9/hook"}}]);
    let (status, body) = app
        .admin(Method::POST, "/v1/admin/policies", Some(policy(split)))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["grants"][1]["approval"]["required"], 1);
    assert_eq!(body["grants"][1]["approval"]["valid_seconds"], 900);
}

#[tokio::test]
async fn a_policy_granting_without_approval_needs_none() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (idp, secret) = gated(&app, bob_approves()).await;
    app.admin_ok(
        Method::POST,
        "/v1/admin/policies",
        Some(
            json!({"id": "crm-delete-open", "issuer": "test-idp", "subjects": ["alice"],
                    "agents": ["bot"], "max_ttl_seconds": 600,
                    "grants": [{"tool": "crm", "operations": ["delete"]}]}),
        ),
        201,
    )
    .await;
    let (status, issued) = ask(&app, &idp, &secret, "Delete a record", None).await;
    assert_eq!(status, 201, "{issued}");
    assert!(issued.get("approvals").is_none());
}

#[tokio::test]
async fn the_token_endpoint_answers_as_ciba_polling_does() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (idp, secret) = gated(&app, bob_approves()).await;
    let form = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencoding(v)))
            .collect::<Vec<_>>()
            .join("&")
    };
    let post = |body: String| {
        app.client
            .post(app.url("/oauth2/token"))
            .basic_auth("bot", Some(&secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let subject = token(&app, &idp, "alice", &["support"]);
    let exchange = form(&[
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("subject_token", &subject),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ("scope", "crm:read crm:delete"),
        ("task_description", "Delete a record"),
    ]);
    let answer = post(exchange).await.unwrap();
    assert_eq!(answer.status().as_u16(), 400);
    let pending: Value = answer.json().await.unwrap();
    assert_eq!(pending["error"], "authorization_pending", "{pending}");
    assert_eq!(pending["interval"], 5);
    assert_eq!(pending["expires_in"], 300);
    assert!(pending["binding_message"]
        .as_str()
        .unwrap()
        .contains("crm delete"));
    let id = pending["auth_req_id"].as_str().unwrap().to_owned();
    let poll = || {
        form(&[
            ("grant_type", "urn:openid:params:grant-type:ciba"),
            ("auth_req_id", &id),
        ])
    };
    let error = |body: Value| body["error"].as_str().unwrap_or_default().to_owned();

    let first: Value = post(poll()).await.unwrap().json().await.unwrap();
    assert_eq!(error(first), "authorization_pending");
    let soon: Value = post(poll()).await.unwrap().json().await.unwrap();
    assert_eq!(error(soon), "slow_down");
    app.clock.advance(chrono::Duration::seconds(5));
    let later: Value = post(poll()).await.unwrap().json().await.unwrap();
    assert_eq!(error(later), "authorization_pending");
    let unknown = form(&[
        ("grant_type", "urn:openid:params:grant-type:ciba"),
        ("auth_req_id", "01900000-0000-7000-8000-000000000000"),
    ]);
    let unknown: Value = post(unknown).await.unwrap().json().await.unwrap();
    assert_eq!(error(unknown), "invalid_grant");

    let bob = approver(&app, &idp, "bob", &[]);
    let (status, _) = decide(&app, &bob, &id, "approve", "fine").await;
    assert_eq!(status, 200);
    app.clock.advance(chrono::Duration::seconds(5));
    let answer = post(poll()).await.unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let issued: Value = answer.json().await.unwrap();
    assert_eq!(issued["scope"], "crm:delete crm:read");
    assert_eq!(issued["token_type"], "Bearer");
    app.clock.advance(chrono::Duration::seconds(5));
    let again: Value = post(poll()).await.unwrap().json().await.unwrap();
    assert_eq!(error(again), "invalid_grant");

    // Denied and expired requests, in CIBA's words.
    let (_, denied) = ask(&app, &idp, &secret, "Delete another", None).await;
    let denied_id = denied["id"].as_str().unwrap().to_owned();
    let bob = approver(&app, &idp, "bob", &[]);
    let (status, _) = decide(&app, &bob, &denied_id, "deny", "no").await;
    assert_eq!(status, 200);
    let poll_of = |id: &str| {
        form(&[
            ("grant_type", "urn:openid:params:grant-type:ciba"),
            ("auth_req_id", id),
        ])
    };
    let answer: Value = post(poll_of(&denied_id))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(error(answer), "access_denied");
    let (_, lapsed) = ask(&app, &idp, &secret, "Delete a third", None).await;
    let lapsed_id = lapsed["id"].as_str().unwrap().to_owned();
    app.clock.advance(chrono::Duration::seconds(301));
    let answer: Value = post(poll_of(&lapsed_id))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(error(answer), "expired_token");
}

fn urlencoding(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn webhooks_announce_requests_and_decisions_signed_with_the_published_root_key() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (received, hook) = receiver().await;
    let rule = json!({"approvers": {"subjects": ["bob"]}, "webhook": hook});
    let (idp, secret) = gated(&app, rule).await;
    let (_, pending) = ask(&app, &idp, &secret, "Delete a record", None).await;
    let id = pending["id"].as_str().unwrap().to_owned();
    let bob = approver(&app, &idp, "bob", &[]);
    decide(&app, &bob, &id, "approve", "ok").await;
    let deliveries = wait_for(&received, 2).await;
    let root = app.state.keys.active().keypair().public().to_bytes();
    let mut types = Vec::new();
    for (signature, body) in &deliveries {
        let parts: std::collections::HashMap<&str, &str> = signature
            .split(", ")
            .filter_map(|p| p.split_once('='))
            .collect();
        let t: i64 = parts["t"].parse().unwrap();
        assert_eq!(parts["kid"], app.state.keys.active().kid.to_string());
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts["ed25519"])
            .unwrap();
        let message = mandate::server::approvals::webhook::signed_message(t, body);
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &root)
            .verify(&message, &sig)
            .unwrap_or_else(|_| panic!("the webhook's signature does not verify"));
        let json: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(json["approval"]["id"], id.as_str());
        types.push(json["type"].as_str().unwrap().to_owned());
        // A tampered body does not verify.
        let mut tampered = body.clone();
        tampered.push(b' ');
        let message = mandate::server::approvals::webhook::signed_message(t, &tampered);
        assert!(
            ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &root)
                .verify(&message, &sig)
                .is_err()
        );
    }
    types.sort();
    assert_eq!(types, ["approval.approved", "approval.requested"]);
}

type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

/// A webhook receiver on loopback: what it got (signature header and body), and its URL.
async fn receiver() -> (Received, String) {
    let received: Received = Default::default();
    let kept = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let kept = kept.clone();
                async move {
                    let signature = headers
                        .get("mandate-signature")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    kept.lock().unwrap().push((signature, body.to_vec()));
                    axum::http::StatusCode::NO_CONTENT
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (received, format!("http://{address}/hook"))
}

async fn wait_for(received: &Received, n: usize) -> Vec<(String, Vec<u8>)> {
    for _ in 0..100 {
        let got = received.lock().unwrap().clone();
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{n} webhooks did not arrive");
}

/// The policy and the data a Postgres test shares across replicas or restarts.
async fn shared_key(owner: &TestDatabase) -> impl Fn(&mut mandate::server::config::Config) + Clone {
    let key = owner.data_dir().join("root-1.pem");
    mandate::server::keys::generate_key_file(&key).unwrap();
    move |config: &mut mandate::server::config::Config| {
        config.root_keys = vec![mandate::server::config::RootKeyFile {
            kid: 1,
            path: key.clone(),
        }];
    }
}

#[tokio::test]
async fn a_pending_request_survives_a_restart() {
    let owner = TestDatabase::new(Backend::Postgres).await;
    let url = owner.url();
    let key = shared_key(&owner).await;
    let first = TestApp::spawn_with(TestDatabase::at(&url), key.clone()).await;
    let (idp, secret) = gated(&first, bob_approves()).await;
    let (status, pending) = ask(&first, &idp, &secret, "Delete a record", None).await;
    assert_eq!(status, 202, "{pending}");
    let id = pending["id"].as_str().unwrap().to_owned();
    first.stop().await;

    let second = TestApp::spawn_with(TestDatabase::at(&url), key).await;
    let bob = approver(&second, &idp, "bob", &[]);
    let (_, waiting) = second
        .as_token(&bob, Method::GET, "/v1/approvals", None)
        .await;
    assert_eq!(
        waiting["approvals"][0]["id"],
        id.as_str(),
        "nothing was lost"
    );
    let (status, _) = decide(&second, &bob, &id, "approve", "after the restart").await;
    assert_eq!(status, 200);
    let (status, issued) = collect(&second, &secret, &id).await;
    assert_eq!(status, 201, "{issued}");
    assert_eq!(issued["approvals"][0]["approvers"][0]["subject"], "bob");
}

#[tokio::test]
async fn a_decision_on_one_replica_reaches_a_waiter_on_the_other() {
    let (a, b) = crate::helpers::fixtures::two_replicas().await;
    let (idp, secret) = gated(&a, bob_approves()).await;
    let (_, pending) = ask(&a, &idp, &secret, "Delete a record", None).await;
    let id = pending["id"].as_str().unwrap().to_owned();
    // The orchestrator streams on replica a.
    let mut stream = a
        .client
        .get(a.url(&format!("/v1/approvals/{id}/events")))
        .bearer_auth(&secret)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    let mut seen = String::new();
    while !seen.contains("\"state\":\"pending\"") {
        let chunk = stream
            .chunk()
            .await
            .unwrap()
            .expect("the stream ended early");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    // The stream re-reads on its own 5 s after this event; a wake-up must come sooner.
    let first_event = crate::helpers::real_now();
    // bob approves on replica b, on the same clock as a.
    b.clock.set(a.clock.now());
    let bob = approver(&b, &idp, "bob", &[]);
    a.clock.set(b.clock.now());
    let (status, _) = decide(&b, &bob, &id, "approve", "from the other replica").await;
    assert_eq!(status, 200);
    while !seen.contains("\"state\":\"approved\"") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
            .await
            .expect("the approval did not reach the waiter")
            .unwrap();
        match chunk {
            Some(chunk) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            None => break,
        }
    }
    assert!(seen.contains("\"state\":\"approved\""), "{seen}");
    // Woken by the other replica's NOTIFY, not by its own 5 s re-read.
    let waited = first_event.elapsed();
    assert!(waited < Duration::from_secs(4), "{waited:?}");
    let (status, _) = collect(&a, &secret, &id).await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn a_second_call_on_a_one_call_approval_is_refused_by_the_gateway() {
    use crate::gateway::{client, gateway, inventory, require_sdk, Upstream};
    require_sdk();
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (idp, _) = mint_setup(&app).await;
    let (secret, credential) = inventory(&app).await;
    // whoami only once bob approves the one call.
    app.admin_ok(
        Method::PATCH,
        "/v1/admin/policies/tracker-rest",
        Some(
            json!({"grants": [{"tool": "tracker", "operations": ["issues.read", "secrets.leak"]}]}),
        ),
        200,
    )
    .await;
    app.admin_ok(
        Method::POST,
        "/v1/admin/policies",
        Some(
            json!({"id": "tracker-whoami", "issuer": "test-idp", "groups": ["support"],
                    "agents": ["mcp-bot"], "max_ttl_seconds": 600,
                    "grants": [{"tool": "tracker", "operations": ["whoami"],
                                "approval": {"approvers": {"subjects": ["bob"]},
                                             "bind_arguments": true}}]}),
        ),
        201,
    )
    .await;
    let mut body = mint_body(
        &token(&app, &idp, "alice", &["support"]),
        json!([{"tool": "tracker", "operations": ["whoami"], "arguments": {}}]),
    );
    body["task"]["description"] = json!("Say who calls, once");
    let (status, pending) = app.agent(&secret).mint_body(body).await;
    assert_eq!(status, 202, "{pending}");
    let id = pending["id"].as_str().unwrap();
    let bob = approver(&app, &idp, "bob", &[]);
    let (status, _) = decide(&app, &bob, id, "approve", "once is fine").await;
    assert_eq!(status, 200);
    let (status, issued) = collect(&app, &secret, id).await;
    assert_eq!(status, 201, "{issued}");
    let mandate = issued["token"].as_str().unwrap();

    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let routes = format!(
        "[[route]]\npath = \"/mcp/tracker\"\ntool = \"tracker\"\nupstream = \"http://127.0.0.1:{}/mcp\"\n",
        upstream.port
    );
    let base = gateway(&app, &credential, &routes, dir.path()).await;
    let url = format!("{base}/mcp/tracker");
    // Other arguments than the approved ones: refused, and the approval stays unused.
    let other = client(
        &url,
        Some(mandate),
        json!([{"op": "call", "name": "whoami", "arguments": {"as": "root"}}]),
    )
    .await;
    assert_eq!(other["results"][0]["status"], 403, "{other}");
    // The approved call goes through once; the second is refused.
    let run = client(
        &url,
        Some(mandate),
        json!([{"op": "call", "name": "whoami", "arguments": {}},
               {"op": "call", "name": "whoami", "arguments": {}}]),
    )
    .await;
    assert!(run["results"][0]["content"].is_array(), "{run}");
    assert_eq!(run["results"][1]["status"], 403, "{run}");
    assert!(run["results"][1]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("was for one call, made already"));
    let executed = upstream
        .calls()
        .iter()
        .filter(|c| c["tool"] == "whoami")
        .count();
    assert_eq!(executed, 1, "the upstream ran the approved call once");
    let events = app.store.audit_events(0, 1000).await.unwrap();
    let used: Vec<_> = events
        .iter()
        .filter(|e| e.action == "approval.used")
        .collect();
    assert_eq!(used.len(), 1);
    assert_eq!(used[0].actor, "reporter:edge-gw");

    // Attribution shows who approved the call that went through (and the refused ones).
    let mut actions = Vec::new();
    let started = crate::helpers::real_now();
    while actions.len() < 3 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (_, found) = app
            .admin(Method::GET, "/v1/admin/attribution?principal=alice", None)
            .await;
        actions = found.as_array().cloned().unwrap_or_default();
    }
    assert_eq!(actions.len(), 3, "{actions:?}");
    let done: Vec<&Value> = actions
        .iter()
        .filter(|a| a["outcome"] == "success")
        .collect();
    assert_eq!(done.len(), 1, "{actions:?}");
    assert_eq!(done[0]["operation"], "whoami");
    assert_eq!(done[0]["approval"]["approvers"][0]["subject"], "bob");
    assert_eq!(done[0]["approval"]["id"], id);
}

#[tokio::test]
async fn each_gated_operation_carries_the_approvers_who_counted_toward_it() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (idp, secret) = gated(&app, bob_approves()).await;
    // writes too are gated now, by carol.
    app.admin_ok(
        Method::PATCH,
        "/v1/admin/policies/support-crm",
        Some(json!({"grants": [{"tool": "crm", "operations": ["read"]}]})),
        200,
    )
    .await;
    app.admin_ok(
        Method::POST,
        "/v1/admin/policies",
        Some(
            json!({"id": "crm-write", "issuer": "test-idp", "groups": ["support"],
                    "agents": ["bot"], "max_ttl_seconds": 600,
                    "grants": [{"tool": "crm", "operations": ["write"],
                                "approval": {"approvers": {"subjects": ["carol"]}}}]}),
        ),
        201,
    )
    .await;
    let mut body = mint_body(
        &token(&app, &idp, "alice", &["support"]),
        json!([{"tool": "crm", "operations": ["read", "write", "delete"]}]),
    );
    body["task"]["description"] = json!("Clean up the ACME records");
    let (status, pending) = app.agent(&secret).mint_body(body).await;
    assert_eq!(status, 202, "{pending}");
    let id = pending["id"].as_str().unwrap();
    let gated: Vec<&str> = pending["gated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["operation"].as_str().unwrap())
        .collect();
    assert_eq!(gated, ["delete", "write"]);
    let bob = approver(&app, &idp, "bob", &[]);
    let (_, half) = decide(&app, &bob, id, "approve", "the deletion").await;
    assert_eq!(
        half["state"], "pending",
        "carol has not approved the writes"
    );
    let carol = approver(&app, &idp, "carol", &[]);
    let (_, approved) = decide(&app, &carol, id, "approve", "the writes").await;
    assert_eq!(approved["state"], "approved");
    let (status, issued) = collect(&app, &secret, id).await;
    assert_eq!(status, 201, "{issued}");
    let verified = app
        .verifier()
        .verify(
            issued["token"].as_str().unwrap(),
            &Access {
                tool: "crm".into(),
                operation: "write".into(),
                resource: None,
            },
        )
        .await
        .unwrap();
    let by: Vec<(String, String)> = verified
        .approvals
        .iter()
        .map(|a| (a.operation.clone(), a.approvers[0].subject.clone()))
        .collect();
    assert_eq!(
        by,
        [
            ("delete".into(), "bob".into()),
            ("write".into(), "carol".into())
        ]
    );
    assert!(verified.approvals.iter().all(|a| a.approvers.len() == 1));
}

#[tokio::test]
async fn a_rule_changed_or_a_principal_revoked_since_the_request_gives_no_mandate() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (idp, secret) = gated(&app, bob_approves()).await;
    let (_, first) = ask(&app, &idp, &secret, "Delete a record", None).await;
    let first = first["id"].as_str().unwrap().to_owned();
    let (_, second) = ask(&app, &idp, &secret, "Delete another", None).await;
    let second = second["id"].as_str().unwrap().to_owned();
    let bob = approver(&app, &idp, "bob", &[]);
    for id in [&first, &second] {
        let (status, _) = decide(&app, &bob, id, "approve", "fine").await;
        assert_eq!(status, 200);
    }
    // The rule now wants two approvers: the approval given under the old one no longer counts.
    app.admin_ok(
        Method::PATCH,
        "/v1/admin/policies/crm-delete",
        Some(json!({"grants": [{"tool": "crm", "operations": ["delete"],
                                "approval": {"approvers": {"subjects": ["bob", "carol"]},
                                             "required": 2}}]})),
        200,
    )
    .await;
    let (status, refused) = collect(&app, &secret, &first).await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused["detail"].as_str().unwrap().contains("rule changed"));
    // Back to bob alone, but alice was offboarded after the request: 403.
    app.admin_ok(
        Method::PATCH,
        "/v1/admin/policies/crm-delete",
        Some(json!({"grants": [{"tool": "crm", "operations": ["delete"],
                                "approval": bob_approves()}]})),
        200,
    )
    .await;
    let (status, body) = app
        .admin(
            Method::POST,
            "/v1/admin/revocations",
            Some(
                json!({"principal": {"subject": "alice", "issuer": idp.issuer},
                        "reason": "offboarded"}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, refused) = collect(&app, &secret, &second).await;
    assert_eq!(status, 403, "{refused}");
    assert!(refused["detail"]
        .as_str()
        .unwrap()
        .contains("revoked after"));
    assert_eq!(app.count("SELECT count(*) FROM mandates").await, 0);
}

#[tokio::test]
async fn a_proxy_check_lets_a_one_call_approval_through_only_when_it_sees_the_whole_call() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let rule = json!({"approvers": {"subjects": ["bob"]}, "bind_arguments": true});
    let (idp, secret) = gated(&app, rule).await;
    let (_, pending) = ask(
        &app,
        &idp,
        &secret,
        "Delete cust-42",
        Some(json!({"id": "cust-42"})),
    )
    .await;
    let id = pending["id"].as_str().unwrap();
    let bob = approver(&app, &idp, "bob", &[]);
    decide(&app, &bob, id, "approve", "that one").await;
    let (_, issued) = collect(&app, &secret, id).await;
    let mandate = issued["token"].as_str().unwrap().to_owned();
    let credential = app
        .admin_ok(
            Method::POST,
            "/v1/admin/reporters",
            Some(
                json!({"id": "crm-gw", "display_name": "CRM gateway", "kind": "gateway",
                        "owner": "ops@example.com"}),
            ),
            201,
        )
        .await["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let routes =
        "[[check]]\nprefix = \"/crm\"\ntool = \"crm\"\noperations = { DELETE = \"delete\" }\n";
    let base = crate::gateway::gateway(&app, &credential, routes, dir.path()).await;
    let call = |path: &str, nginx: bool, body: Option<Value>| {
        let mut request = if nginx {
            app.client
                .get(format!("{base}/check/nginx"))
                .header("x-original-method", "DELETE")
                .header("x-original-uri", path)
        } else {
            app.client.delete(format!("{base}/check/envoy{path}"))
        };
        request = request.bearer_auth(&mandate);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send()
    };
    // What the gateway cannot see whole is refused, and leaves the approval unused.
    for (path, nginx, body) in [
        ("/crm?id=cust-42", true, None),
        ("/crm/records/cust-99?id=cust-42", false, None),
        ("/crm?id=cust-99", false, Some(json!({"id": "cust-42"}))),
    ] {
        let answer = call(path, nginx, body.clone()).await.unwrap();
        assert_eq!(answer.status().as_u16(), 403, "{path} {nginx} {body:?}");
        let problem: Value = answer.json().await.unwrap();
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("for one exact call"),
            "{problem}"
        );
    }
    // Seen whole, once: then refused.
    let first = call("/crm?id=cust-42", false, None).await.unwrap();
    assert_eq!(first.status().as_u16(), 200);
    assert!(first.headers().contains_key("mandate-assertion"));
    let second = call("/crm?id=cust-42", false, None).await.unwrap();
    assert_eq!(second.status().as_u16(), 403);
}

//! What a human's subject token can still do once presented: offboarding a principal refuses
//! later mints on the tokens they already hold, on every replica; an issuer can bind its tokens
//! to the orchestrator they were issued to, and make each mint once.

use mandate::clock::Clock;
use reqwest::Method;
use serde_json::json;

use crate::helpers::assert_problem;
use crate::helpers::fixtures::{mint_body, mint_setup};

#[tokio::test]
async fn revoking_a_principal_refuses_mints_on_the_tokens_issued_before_it() {
    let (a, b) = crate::helpers::fixtures::two_replicas().await;
    let (idp, secret) = mint_setup(&a).await;
    let issued = a.clock.now();
    let jwt = idp.sign("rsa-1", &idp.claims("alice", &["support"], issued));
    let body = mint_body(&jwt, json!([{"tool": "crm", "operations": ["read"]}]));
    for app in [&a, &b] {
        let (status, minted) = app.agent(&secret).mint_body(body.clone()).await;
        assert_eq!(status, 201, "{minted}");
    }
    // Revoking one tool of hers is not offboarding: her tokens still mint.
    let partial = json!({"principal": {"subject": "alice", "issuer": idp.issuer}, "tool": "mail",
        "reason": "mail access withdrawn"});
    a.admin_ok(Method::POST, "/v1/admin/revocations", Some(partial), 200)
        .await;
    let (status, _) = b.agent(&secret).mint_body(body.clone()).await;
    assert_eq!(status, 201);

    a.clock.advance(chrono::Duration::seconds(1));
    b.clock.advance(chrono::Duration::seconds(1));
    let offboard = json!({"principal": {"subject": "alice", "issuer": idp.issuer},
        "reason": "left the company"});
    let result = a
        .admin_ok(Method::POST, "/v1/admin/revocations", Some(offboard), 200)
        .await;
    assert_eq!(result["revoked"], 3, "{result}");

    // The same still-valid JWT mints nothing more, through either replica.
    for app in [&a, &b] {
        let response = app.agent(&secret).mint_response(&body).await;
        let problem = assert_problem(response, 401).await;
        assert_eq!(problem["reason"], "principal_revoked", "{problem}");
    }
    // Neither does one that states no issue time.
    let mut claims = idp.claims("alice", &["support"], a.clock.now());
    claims.as_object_mut().unwrap().remove("iat");
    let undated = mint_body(
        &idp.sign("rsa-1", &claims),
        json!([{"tool": "crm", "operations": ["read"]}]),
    );
    let response = a.agent(&secret).mint_response(&undated).await;
    assert_eq!(
        assert_problem(response, 401).await["reason"],
        "principal_revoked"
    );
    // A new sign-in mints again; other principals were never affected.
    a.clock.advance(chrono::Duration::seconds(1));
    let fresh = idp.sign("rsa-1", &idp.claims("alice", &["support"], a.clock.now()));
    let (status, minted) = a
        .agent(&secret)
        .mint_body(mint_body(
            &fresh,
            json!([{"tool": "crm", "operations": ["read"]}]),
        ))
        .await;
    assert_eq!(status, 201, "{minted}");
    let bob = idp.sign("rsa-1", &idp.claims("bob", &["support"], issued));
    let (status, _) = a
        .agent(&secret)
        .mint_body(mint_body(
            &bob,
            json!([{"tool": "crm", "operations": ["read"]}]),
        ))
        .await;
    assert_eq!(status, 201);
    let recorded = a
        .count("SELECT count(*) FROM audit_events WHERE action = 'principal.cut_off'")
        .await;
    assert_eq!(recorded, 1);
}

#[tokio::test]
async fn an_issuer_binds_its_tokens_to_their_client_and_makes_each_mint_once() {
    let app = crate::helpers::TestApp::spawn(crate::helpers::Backend::Sqlite).await;
    let (idp, secret) = mint_setup(&app).await;
    app.admin_ok(
        Method::PATCH,
        "/v1/admin/issuers/test-idp",
        Some(json!({"client_claim": "azp", "single_use_tokens": true})),
        200,
    )
    .await;
    let scope = json!([{"tool": "crm", "operations": ["read"]}]);
    let token = |azp: Option<&str>, jti: Option<&str>| {
        let mut claims = idp.claims("alice", &["support"], app.clock.now());
        if let Some(azp) = azp {
            claims["azp"] = json!(azp);
        }
        if let Some(jti) = jti {
            claims["jti"] = json!(jti);
        }
        mint_body(&idp.sign("rsa-1", &claims), scope.clone())
    };
    let refused = |body: serde_json::Value| {
        let app = &app;
        let secret = &secret;
        async move {
            let response = app.agent(secret).mint_response(&body).await;
            assert_problem(response, 401).await["reason"].clone()
        }
    };
    // Issued to another client, or to none: refused whoever presents it.
    assert_eq!(
        refused(token(Some("other-agent"), Some("j1"))).await,
        "wrong_client"
    );
    assert_eq!(refused(token(None, Some("j2"))).await, "wrong_client");
    // Without a jti it cannot be used once only.
    assert_eq!(refused(token(Some("bot"), None)).await, "malformed_token");
    // Issued to bot: mints once, and only once.
    let once = token(Some("bot"), Some("j3"));
    let (status, minted) = app.agent(&secret).mint_body(once.clone()).await;
    assert_eq!(status, 201, "{minted}");
    assert_eq!(refused(once).await, "token_replayed");
    let (status, _) = app
        .agent(&secret)
        .mint_body(token(Some("bot"), Some("j4")))
        .await;
    assert_eq!(status, 201);
    let replays = app
        .count("SELECT count(*) FROM audit_events WHERE action = 'mandate.denied'")
        .await;
    assert!(replays >= 4, "every refusal is audited ({replays})");
}

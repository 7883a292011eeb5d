//! Offboarding a principal: revoking every mandate on their behalf also refuses later mints on
//! the subject tokens they already hold, on every replica, until they sign in again.

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
        let (status, minted) = app
            .as_token(&secret, Method::POST, "/v1/mandates", Some(body.clone()))
            .await;
        assert_eq!(status, 201, "{minted}");
    }
    // Revoking one tool of hers is not offboarding: her tokens still mint.
    let partial = json!({"principal": {"subject": "alice", "issuer": idp.issuer}, "tool": "mail",
        "reason": "mail access withdrawn"});
    a.admin_ok(Method::POST, "/v1/admin/revocations", Some(partial), 200)
        .await;
    let (status, _) = b
        .as_token(&secret, Method::POST, "/v1/mandates", Some(body.clone()))
        .await;
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
        let response = app
            .call(Method::POST, "/v1/mandates", Some(&secret), Some(&body))
            .await;
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
    let response = a
        .call(Method::POST, "/v1/mandates", Some(&secret), Some(&undated))
        .await;
    assert_eq!(
        assert_problem(response, 401).await["reason"],
        "principal_revoked"
    );
    // A new sign-in mints again; other principals were never affected.
    a.clock.advance(chrono::Duration::seconds(1));
    let fresh = idp.sign("rsa-1", &idp.claims("alice", &["support"], a.clock.now()));
    let (status, minted) = a
        .as_token(
            &secret,
            Method::POST,
            "/v1/mandates",
            Some(mint_body(
                &fresh,
                json!([{"tool": "crm", "operations": ["read"]}]),
            )),
        )
        .await;
    assert_eq!(status, 201, "{minted}");
    let bob = idp.sign("rsa-1", &idp.claims("bob", &["support"], issued));
    let (status, _) = a
        .as_token(
            &secret,
            Method::POST,
            "/v1/mandates",
            Some(mint_body(
                &bob,
                json!([{"tool": "crm", "operations": ["read"]}]),
            )),
        )
        .await;
    assert_eq!(status, 201);
    let recorded = a
        .count("SELECT count(*) FROM audit_events WHERE action = 'principal.cut_off'")
        .await;
    assert_eq!(recorded, 1);
}

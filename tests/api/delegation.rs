//! Offline delegation end to end: an orchestrator's mandate narrowed and handed to a sub-agent
//! that attests its hop, then to another that only is named; the example downstream service
//! verifies it through the tower layer over HTTP, and keeps doing so with mandate stopped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use biscuit_auth::KeyPair;
use mandate::clock::Clock;
use mandate::token::attenuate::{attenuate, Attenuation};
use mandate::token::attest::attest;
use mandate::token::keys::format_public_key;
use mandate::token::Right;
use mandate::verifier::{NoRevocations, Verifier, VerifierSettings};
use reqwest::Method;
use serde_json::{json, Value};

use crate::both_stores;
use crate::helpers::downstream::start_downstream;
use crate::helpers::fixtures::{mint_body, mint_setup};
use crate::helpers::TestApp;

async fn call(base: &str, method: Method, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

both_stores!(
    a_delegated_mandate_is_verified_by_the_downstream_layer_even_offline,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (idp, secret) = mint_setup(&app).await;
        // A sub-agent with a registered key.
        let research_key = crate::helpers::fixtures::register_sub_agent(&app, "research").await;
        let jwt = idp.sign("rsa-1", &idp.claims("alice", &["support"], app.clock.now()));
        let (status, minted) = app
            .agent(&secret)
            .mint_body(mint_body(
                &jwt,
                json!([{"tool": "crm", "operations": ["read", "write"]}]),
            ))
            .await;
        assert_eq!(status, 201, "{minted}");
        let token = minted["token"].as_str().unwrap();

        // bot → research (attested), read only → summariser (claimed).
        let to_research = attenuate(
            token,
            &Attenuation {
                rights: Some(vec![Right {
                    tool: "crm".into(),
                    operation: "read".into(),
                }]),
                delegate: Some("research".into()),
                ..Attenuation::default()
            },
        )
        .unwrap();
        let attested = attest(&to_research, "research", &research_key).unwrap();
        let to_summariser = attenuate(
            &attested,
            &Attenuation {
                delegate: Some("summariser".into()),
                ..Attenuation::default()
            },
        )
        .unwrap();

        let verifier = Arc::new(app.verifier());
        let downstream = start_downstream(Arc::clone(&verifier), None).await;

        let (status, body) = call(&downstream, Method::GET, "/tickets", Some(&to_summariser)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["principal"], "alice");
        assert_eq!(body["orchestrator"], "bot");
        assert_eq!(
            body["hops"],
            json!([{"agent": "research", "attested": true}, {"agent": "summariser", "attested": false}])
        );
        // The orchestrator's own token may write; the narrowed one may not.
        let (status, _) = call(&downstream, Method::POST, "/tickets", Some(token)).await;
        assert_eq!(status, 200);
        let (status, problem) =
            call(&downstream, Method::POST, "/tickets", Some(&to_summariser)).await;
        assert_eq!(
            (status, problem["reason"].as_str()),
            (403, Some("not_authorized"))
        );
        let (status, problem) = call(&downstream, Method::GET, "/tickets", None).await;
        assert_eq!(
            (status, problem["reason"].as_str()),
            (401, Some("missing_mandate"))
        );
        let (status, problem) =
            call(&downstream, Method::GET, "/tickets", Some("not-a-mandate")).await;
        assert_eq!(
            (status, problem["reason"].as_str()),
            (401, Some("malformed"))
        );
        let (status, _) = call(&downstream, Method::DELETE, "/tickets", Some(token)).await;
        assert_eq!(status, 403, "a request no mandate can grant");

        // An impostor claiming to be research with another key is refused.
        let impostor = attest(&to_research, "research", &KeyPair::new()).unwrap();
        let (status, problem) = call(&downstream, Method::GET, "/tickets", Some(&impostor)).await;
        assert_eq!(
            (status, problem["reason"].as_str()),
            (401, Some("forged_attestation"))
        );

        // mandate stops: the keys are cached, verification goes on.
        app.stop().await;
        let (status, body) = call(
            &downstream,
            Method::GET,
            "/tickets/acct-7",
            Some(&to_summariser),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["resource"], "acct-7");
    }
);

/// Registers a new key for agent `helper`; returns `token` delegated to helper and attested
/// with that key, and the key's record.
async fn attested_by_helper(app: &TestApp, token: &str) -> (String, Value) {
    let key = KeyPair::new();
    let registered = app
        .admin_ok(
            Method::POST,
            "/v1/admin/agents/helper/keys",
            Some(json!({"public_key": format_public_key(&key.public())})),
            201,
        )
        .await;
    let to_helper = attenuate(
        token,
        &Attenuation {
            delegate: Some("helper".into()),
            ..Attenuation::default()
        },
    )
    .unwrap();
    (attest(&to_helper, "helper", &key).unwrap(), registered)
}

#[tokio::test]
async fn a_verifier_learns_an_agent_key_registered_after_it_fetched() {
    let app = TestApp::spawn(crate::helpers::Backend::Sqlite).await;
    let (idp, secret) = mint_setup(&app).await;
    let jwt = idp.sign("rsa-1", &idp.claims("alice", &["support"], app.clock.now()));
    let (_, minted) = app
        .agent(&secret)
        .mint_body(mint_body(
            &jwt,
            json!([{"tool": "crm", "operations": ["read"]}]),
        ))
        .await;
    let token = minted["token"].as_str().unwrap();
    let clock: mandate::clock::SharedClock = app.clock.clone();
    let mut settings = VerifierSettings::new(app.base.clone());
    settings.refetch_interval = std::time::Duration::ZERO;
    let verifier = Verifier::new(settings, Arc::new(NoRevocations), clock).unwrap();
    let access = mandate::verifier::Access {
        tool: "crm".into(),
        operation: "read".into(),
        resource: None,
    };
    verifier.verify(token, &access).await.unwrap();

    // helper's key is registered only now, after the verifier cached the keys.
    let (attested, _) = attested_by_helper(&app, token).await;
    let verified = verifier.verify(&attested, &access).await.unwrap();
    assert_eq!(
        verified.hops,
        vec![mandate::token::verify::Hop {
            agent: "helper".into(),
            attested: true
        }]
    );
}

/// A mandate for alice's orchestrator to read the CRM for `ttl` seconds.
async fn crm_reader(app: &TestApp, ttl: i64) -> String {
    let (idp, secret) = mint_setup(app).await;
    let jwt = idp.sign("rsa-1", &idp.claims("alice", &["support"], app.clock.now()));
    let request = crate::helpers::callers::Mint::new(&jwt)
        .scope("crm", &["read"])
        .ttl(ttl);
    let minted = app.mint(&secret, &request).await;
    minted["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_remembered_token_is_still_authorized_per_call_expires_and_is_rechecked_with_new_keys() {
    let app = TestApp::spawn(crate::helpers::Backend::Sqlite).await;
    let token = &crm_reader(&app, 120).await;
    let (attested, registered) = attested_by_helper(&app, token).await;

    let clock: mandate::clock::SharedClock = app.clock.clone();
    let mut settings = VerifierSettings::new(app.base.clone());
    settings.key_ttl = std::time::Duration::from_secs(60);
    let verifier = Verifier::new(settings, Arc::new(NoRevocations), clock).unwrap();
    let access = |operation: &str| mandate::verifier::Access {
        tool: "crm".into(),
        operation: operation.into(),
        resource: None,
    };
    for _ in 0..3 {
        let verified = verifier.verify(&attested, &access("read")).await.unwrap();
        assert!(verified.hops[0].attested);
    }
    assert_eq!(verifier.cached_tokens(), 1, "checked once, remembered");
    // Remembered is not authorized: each call runs the authorizer for its own operation.
    assert!(matches!(
        verifier.verify(&attested, &access("write")).await,
        Err(mandate::token::TokenError::NotAuthorized(_))
    ));

    // Once the keys are refetched, the token is checked again: the attesting key is gone.
    let key_id = registered["id"].as_str().unwrap();
    app.admin_ok(
        Method::DELETE,
        &format!("/v1/admin/agents/helper/keys/{key_id}"),
        None,
        204,
    )
    .await;
    // The verifier ages its keys by the injected clock: no sleeping.
    app.clock.advance(chrono::Duration::seconds(61));
    assert!(matches!(
        verifier.verify(&attested, &access("read")).await,
        Err(mandate::token::TokenError::ForgedAttestation(_))
    ));

    // A remembered token expires with its mandate.
    verifier.verify(token, &access("read")).await.unwrap();
    app.clock.advance(chrono::Duration::seconds(121 + 30));
    assert!(matches!(
        verifier.verify(token, &access("read")).await,
        Err(mandate::token::TokenError::Expired)
    ));
}

#[tokio::test]
async fn a_suspended_sub_agents_key_is_withdrawn_and_its_attestations_no_longer_verify() {
    let app = TestApp::spawn(crate::helpers::Backend::Sqlite).await;
    let (idp, secret) = mint_setup(&app).await;
    let research_key = crate::helpers::fixtures::register_sub_agent(&app, "research").await;
    let (_, minted) = crate::helpers::fixtures::mint_read(&app, &idp, &secret).await;
    let delegated = attenuate(
        minted["token"].as_str().unwrap(),
        &Attenuation {
            delegate: Some("research".into()),
            ..Attenuation::default()
        },
    )
    .unwrap();
    let attested = attest(&delegated, "research", &research_key).unwrap();
    let verifier = || app.verifier();
    let read = mandate::verifier::Access {
        tool: "crm".into(),
        operation: "read".into(),
        resource: None,
    };
    let verified = verifier().verify(&attested, &read).await.unwrap();
    assert!(verified.hops[0].attested);

    app.admin_ok(Method::POST, "/v1/admin/agents/research/suspend", None, 200)
        .await;
    let published: Value = app
        .get("/.well-known/mandate-agent-keys")
        .await
        .json()
        .await
        .unwrap();
    let publishes = |agent: &str| {
        published["agents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["agent"] == agent)
    };
    assert!(!publishes("research"), "{published}");
    assert!(
        publishes("helper"),
        "other agents' keys stay published: {published}"
    );
    assert!(matches!(
        verifier().verify(&attested, &read).await,
        Err(mandate::token::TokenError::ForgedAttestation(_))
    ));
    let introspected = app
        .admin_ok(
            Method::POST,
            "/v1/introspect",
            Some(json!({"token": attested})),
            200,
        )
        .await;
    assert_eq!(introspected["active"], false);
}

#[tokio::test]
async fn keys_not_refreshed_for_longer_than_their_maximum_age_are_refused_on_every_call() {
    let app = TestApp::spawn(crate::helpers::Backend::Sqlite).await;
    let token = crm_reader(&app, 900).await;
    let clock = app.clock.clone();
    let shared: mandate::clock::SharedClock = clock.clone();
    let mut settings = VerifierSettings::new(app.base.clone());
    settings.key_ttl = std::time::Duration::from_secs(60);
    settings.max_key_age = std::time::Duration::from_secs(300);
    let verifier = Verifier::new(settings, Arc::new(NoRevocations), shared).unwrap();
    let access = mandate::verifier::Access {
        tool: "crm".into(),
        operation: "read".into(),
        resource: None,
    };
    verifier.verify(&token, &access).await.unwrap();
    // mandate becomes unreachable: the keys age past every refresh attempt.
    app.stop().await;
    clock.advance(chrono::Duration::seconds(61));
    verifier.verify(&token, &access).await.unwrap();
    clock.advance(chrono::Duration::seconds(240));
    assert!(matches!(
        verifier.verify(&token, &access).await,
        Err(mandate::token::TokenError::UnknownKey)
    ));
    // The refused call counted as a fetch attempt, so the next ones are not due to fetch; they
    // are refused all the same.
    for _ in 0..3 {
        clock.advance(chrono::Duration::seconds(5));
        assert!(matches!(
            verifier.verify(&token, &access).await,
            Err(mandate::token::TokenError::UnknownKey)
        ));
    }
}

#[tokio::test]
async fn keys_too_old_to_trust_are_asked_for_again_within_the_refetch_interval() {
    let app = TestApp::spawn(crate::helpers::Backend::Sqlite).await;
    let token = crm_reader(&app, 900).await;
    // The verifier reaches mandate through a relay that can be cut.
    let (relay, up) = relay(app.base.clone()).await;
    let clock = app.clock.clone();
    let shared: mandate::clock::SharedClock = clock.clone();
    let mut settings = VerifierSettings::new(relay);
    settings.key_ttl = std::time::Duration::from_secs(120);
    settings.max_key_age = std::time::Duration::from_secs(150);
    let verifier = Verifier::new(settings, Arc::new(NoRevocations), shared).unwrap();
    let access = mandate::verifier::Access {
        tool: "crm".into(),
        operation: "read".into(),
        resource: None,
    };
    verifier.verify(&token, &access).await.unwrap();
    up.store(false, Ordering::SeqCst);
    clock.advance(chrono::Duration::seconds(151));
    assert!(verifier.verify(&token, &access).await.is_err());
    // mandate is back: within the 30 s refetch interval, not the 2 minute key TTL.
    up.store(true, Ordering::SeqCst);
    clock.advance(chrono::Duration::seconds(31));
    verifier.verify(&token, &access).await.unwrap();
}

/// Forwards every GET to `upstream` while `up` holds, and answers 503 otherwise.
async fn relay(upstream: String) -> (String, Arc<AtomicBool>) {
    let up = Arc::new(AtomicBool::new(true));
    let open = up.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let (upstream, open) = (upstream.clone(), open.clone());
        async move {
            if !open.load(Ordering::SeqCst) {
                return (axum::http::StatusCode::SERVICE_UNAVAILABLE, String::new());
            }
            let body = reqwest::get(format!("{upstream}{uri}"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            (axum::http::StatusCode::OK, body)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, up)
}

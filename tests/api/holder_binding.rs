//! Proof of possession end to end: mandates bound to their holder's key at mint (`POST
//! /v1/mandates` with a JWK, `/oauth2/token` with a DPoP proof), used at a tool behind the
//! tower layer only with a fresh proof from the current holder, and handed to a sub-agent by a
//! rebinding the holder signs.

use std::sync::Arc;

use mandate::clock::Clock;
use mandate::token::attenuate::{attenuate, Attenuation};
use mandate::token::attest::{attest, rebind};
use mandate::token::pop::proof::create;
use mandate::token::pop::HolderSecret;
use mandate::token::Right;
use reqwest::Method;
use serde_json::{json, Value};

use crate::both_stores;
use crate::helpers::callers::Mint;
use crate::helpers::downstream::start_downstream;
use crate::helpers::fixtures::{mint_setup, register_sub_agent};
use crate::helpers::idp::TestIdp;
use crate::helpers::{Backend, TestApp};

fn jwt(app: &TestApp, idp: &TestIdp) -> String {
    idp.sign("rsa-1", &idp.claims("alice", &["support"], app.clock.now()))
}

/// A call of the example CRM service: `GET url`, with `authorization` and an optional proof.
async fn call(
    app: &TestApp,
    url: &str,
    authorization: &str,
    proof: Option<&str>,
) -> (u16, String, Value) {
    let mut request = app.client.get(url).header("authorization", authorization);
    if let Some(proof) = proof {
        request = request.header("dpop", proof);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, challenge, response.json().await.unwrap_or_default())
}

/// Asserts a 401 DPoP challenge naming `invalid_dpop_proof`, with `detail` in the problem.
fn refused(answer: (u16, String, Value), detail: &str) {
    let (status, challenge, body) = answer;
    assert_eq!(status, 401, "{body}");
    assert!(
        challenge.starts_with("DPoP error=\"invalid_dpop_proof\""),
        "{challenge}"
    );
    assert_eq!(body["reason"], "invalid_dpop_proof", "{body}");
    let said = body["detail"].as_str().unwrap_or_default();
    assert!(said.contains(detail), "{said} should say {detail}");
}

#[tokio::test]
async fn a_bound_mandate_is_used_only_with_a_fresh_proof_from_its_holder() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (idp, secret) = mint_setup(&app).await;
    let holder = HolderSecret::generate("EdDSA").unwrap();
    let minted = app
        .mint(
            &secret,
            &Mint::new(&jwt(&app, &idp))
                .scope("crm", &["read"])
                .bound_to(&holder),
        )
        .await;
    let jkt = holder.public().thumbprint();
    assert_eq!(minted["holder_key"], jkt.as_str());
    let token = minted["token"].as_str().unwrap();
    let base = start_downstream(Arc::new(app.verifier()), None).await;
    let url = format!("{base}/tickets");
    let now = app.clock.now();
    let proof = |key: &HolderSecret, method: &str, url: &str, token: &str, at| {
        create(key, method, url, Some(token), None, at)
    };
    let dpop = format!("DPoP {token}");

    // Without a proof: as Bearer, or as DPoP with no DPoP header.
    refused(
        call(&app, &url, &format!("Bearer {token}"), None).await,
        "bound to a key",
    );
    refused(call(&app, &url, &dpop, None).await, "bound to a key");
    // A thief's own key.
    let thief = HolderSecret::generate("EdDSA").unwrap();
    let stolen = proof(&thief, "GET", &url, token, now);
    refused(
        call(&app, &url, &dpop, Some(&stolen)).await,
        "other than the mandate's holder",
    );
    // Made for another method, another URL, too long ago, or another token.
    let post = proof(&holder, "POST", &url, token, now);
    refused(call(&app, &url, &dpop, Some(&post)).await, "another method");
    let elsewhere = proof(&holder, "GET", &format!("{base}/other"), token, now);
    refused(
        call(&app, &url, &dpop, Some(&elsewhere)).await,
        "another URL",
    );
    let stale = proof(
        &holder,
        "GET",
        &url,
        token,
        now - chrono::Duration::seconds(120),
    );
    refused(call(&app, &url, &dpop, Some(&stale)).await, "iat");
    let other_token = proof(&holder, "GET", &url, "another-token", now);
    refused(call(&app, &url, &dpop, Some(&other_token)).await, "ath");

    // The holder's fresh proof: accepted once.
    let good = proof(&holder, "GET", &url, token, now);
    let (status, _, body) = call(&app, &url, &dpop, Some(&good)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["holder_key"], jkt.as_str());
    assert_eq!(body["principal"], "alice");
    refused(call(&app, &url, &dpop, Some(&good)).await, "already used");

    // Only the holder ends a branch of it: a copy's branch is not revocable without a proof.
    let branch = attenuate(
        token,
        &Attenuation {
            delegate: Some("helper".into()),
            ..Attenuation::default()
        },
    )
    .unwrap();
    let revocations = app.url("/v1/revocations");
    let revoke = |proof: Option<String>| {
        let mut request = app
            .client
            .post(&revocations)
            .json(&json!({"token": branch, "reason": "done with it"}));
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        request.send()
    };
    let unproven = revoke(None).await.unwrap();
    assert_eq!(unproven.status(), 401);
    let problem: Value = unproven.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("invalid_dpop_proof"),
        "{problem}"
    );
    let by_thief = create(&thief, "POST", &revocations, Some(&branch), None, now);
    assert_eq!(revoke(Some(by_thief)).await.unwrap().status(), 401);
    let by_holder = create(&holder, "POST", &revocations, Some(&branch), None, now);
    assert_eq!(revoke(Some(by_holder)).await.unwrap().status(), 200);

    // Introspection tells a resource server which key to expect.
    let introspected = app.administrator().introspect(token).await;
    assert_eq!(introspected["active"], true, "{introspected}");
    assert_eq!(introspected["cnf"]["jkt"], jkt.as_str());

    // An unbound mandate keeps working as Bearer, and is refused as DPoP.
    let bearer = app
        .mint(
            &secret,
            &Mint::new(&jwt(&app, &idp)).scope("crm", &["read"]),
        )
        .await;
    assert!(bearer.get("holder_key").is_none(), "{bearer}");
    let bearer = bearer["token"].as_str().unwrap();
    let (status, challenge, _) = call(&app, &url, &format!("Bearer {bearer}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(challenge, "");
    let pointless = proof(&holder, "GET", &url, bearer, now);
    refused(
        call(&app, &url, &format!("DPoP {bearer}"), Some(&pointless)).await,
        "not bound",
    );
    app.stop().await;
}

#[tokio::test]
async fn a_sub_agent_uses_the_mandate_after_the_holder_signs_the_binding_over() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (idp, secret) = mint_setup(&app).await;
    let registered = register_sub_agent(&app, "researcher").await;
    let orchestrator = HolderSecret::generate("ES256").unwrap();
    let sub_agent = HolderSecret::generate("EdDSA").unwrap();
    let minted = app
        .mint(
            &secret,
            &Mint::new(&jwt(&app, &idp))
                .scope("crm", &["read", "write"])
                .bound_to(&orchestrator),
        )
        .await;
    let narrowed = attenuate(
        minted["token"].as_str().unwrap(),
        &Attenuation {
            rights: Some(vec![Right {
                tool: "crm".into(),
                operation: "read".into(),
            }]),
            delegate: Some("researcher".into()),
            ..Attenuation::default()
        },
    )
    .unwrap();
    let handed = rebind(&narrowed, &orchestrator, &sub_agent.public().thumbprint()).unwrap();
    let token = attest(&handed, "researcher", &registered).unwrap();
    let base = start_downstream(Arc::new(app.verifier()), None).await;
    let url = format!("{base}/tickets");
    let now = app.clock.now();
    let dpop = format!("DPoP {token}");

    let proof = create(&sub_agent, "GET", &url, Some(&token), None, now);
    let (status, _, body) = call(&app, &url, &dpop, Some(&proof)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["hops"],
        json!([{"agent": "researcher", "attested": true}])
    );
    assert_eq!(body["holder_key"], sub_agent.public().thumbprint().as_str());
    // The orchestrator gave the binding away: its own proofs no longer work with this token.
    let old = create(&orchestrator, "GET", &url, Some(&token), None, now);
    refused(
        call(&app, &url, &dpop, Some(&old)).await,
        "other than the mandate's holder",
    );

    // Someone holding the token but not the sub-agent's key binds a copy to their own key.
    let thief = HolderSecret::generate("EdDSA").unwrap();
    let copy = rebind(&token, &thief, &thief.public().thumbprint()).unwrap();
    let proof = create(&thief, "GET", &url, Some(&copy), None, now);
    let (status, _, body) = call(&app, &url, &format!("DPoP {copy}"), Some(&proof)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["reason"], "forged_binding");
    app.stop().await;
}

/// `POST /oauth2/token` as bot, with `dpop` as its DPoP header if given.
async fn exchange(app: &TestApp, secret: &str, jwt: &str, dpop: Option<&str>) -> (u16, Value) {
    let form = [
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("subject_token", jwt),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ("scope", "crm:read"),
        ("task_description", "t"),
    ];
    let mut request = app
        .client
        .post(app.url("/oauth2/token"))
        .basic_auth("bot", Some(secret))
        .form(&form);
    if let Some(dpop) = dpop {
        request = request.header("dpop", dpop);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

both_stores!(
    binding_is_required_where_the_agent_or_a_policy_says_so,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (idp, secret) = mint_setup(&app).await;
        let holder = HolderSecret::generate("EdDSA").unwrap();
        let unbound = || Mint::new(&jwt(&app, &idp)).scope("crm", &["read"]);
        let denied = |body: &Value| {
            body["denied"][0]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };

        // The token endpoint binds to the proof's key and answers `token_type: DPoP`.
        let token_url = app.url("/oauth2/token");
        let now = app.clock.now();
        let proof = create(&holder, "POST", &token_url, None, None, now);
        let (status, body) = exchange(&app, &secret, &jwt(&app, &idp), Some(&proof)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "DPoP");
        let introspected = app
            .administrator()
            .introspect(body["access_token"].as_str().unwrap())
            .await;
        assert_eq!(
            introspected["cnf"]["jkt"],
            holder.public().thumbprint().as_str()
        );
        // The same proof again, or one for another endpoint: invalid_dpop_proof.
        let (status, body) = exchange(&app, &secret, &jwt(&app, &idp), Some(&proof)).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_dpop_proof")),
            "{body}"
        );
        let elsewhere = create(&holder, "POST", &app.url("/v1/mandates"), None, None, now);
        let (status, body) = exchange(&app, &secret, &jwt(&app, &idp), Some(&elsewhere)).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_dpop_proof")),
            "{body}"
        );
        let (status, body) = exchange(&app, &secret, &jwt(&app, &idp), None).await;
        assert_eq!(
            (status, body["token_type"].as_str()),
            (200, Some("Bearer")),
            "{body}"
        );

        // A malformed key at POST /v1/mandates names the field.
        let mut body = unbound().body();
        body["holder_key"] = holder.to_jwk();
        let (status, answer) = app.agent(&secret).mint_body(body).await;
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["errors"][0]["field"], "holder_key", "{answer}");

        // The agent requires binding.
        app.admin_ok(
            Method::PATCH,
            "/v1/admin/agents/bot",
            Some(json!({"require_binding": true})),
            200,
        )
        .await;
        let (status, body) = app.agent(&secret).try_mint(&unbound()).await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(denied(&body), "binding_required");
        let (status, body) = exchange(&app, &secret, &jwt(&app, &idp), None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_dpop_proof")),
            "{body}"
        );
        let (status, _) = app
            .agent(&secret)
            .try_mint(&unbound().bound_to(&holder))
            .await;
        assert_eq!(status, 201);
        app.admin_ok(
            Method::PATCH,
            "/v1/admin/agents/bot",
            Some(json!({"require_binding": false})),
            200,
        )
        .await;

        // The only policy granting crm:read comes to require binding: the one live unbound
        // mandate under it (the Bearer exchange above) is revoked, the bound ones stay.
        let patched = app
            .call(
                Method::PATCH,
                "/v1/admin/policies/support-crm",
                Some(crate::helpers::ADMIN_TOKEN),
                Some(&json!({"require_binding": true})),
            )
            .await;
        assert_eq!(patched.status(), 200);
        assert_eq!(patched.headers()["x-revoked-mandates"], "1");
        let (status, body) = app.agent(&secret).try_mint(&unbound()).await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(denied(&body), "binding_required");
        let (status, body) = app
            .agent(&secret)
            .try_mint(&unbound().bound_to(&holder))
            .await;
        assert_eq!(status, 201, "{body}");
        let audit = app
            .count("SELECT COUNT(*) FROM audit_events WHERE action = 'mandate.denied' AND CAST(details AS TEXT) LIKE '%binding_required%'")
            .await;
        assert_eq!(audit, 3, "each refusal is audited with its reason");
        app.stop().await;
    }
);

#[tokio::test]
async fn a_bound_mandate_passes_the_gateway_only_with_its_holders_proof() {
    use crate::gateway::{gateway, inventory, require_sdk, Upstream};
    require_sdk();
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (idp, _) = mint_setup(&app).await;
    let (secret, credential) = inventory(&app).await;
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let routes = format!(
        "[[route]]\npath = \"/mcp/tracker\"\ntool = \"tracker\"\nupstream = \"http://127.0.0.1:{}/mcp\"\n\
         [[check]]\nprefix = \"/tracker\"\ntool = \"tracker\"\noperations = {{ GET = \"issues.read\" }}\n",
        upstream.port
    );
    let base = gateway(&app, &credential, &routes, dir.path()).await;
    let metadata: Value = app
        .client
        .get(format!(
            "{base}/.well-known/oauth-protected-resource/mcp/tracker"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        metadata["dpop_signing_alg_values_supported"],
        json!(["EdDSA", "ES256"])
    );

    let holder = HolderSecret::generate("ES256").unwrap();
    let request = Mint::new(&jwt(&app, &idp))
        .scope("tracker", &["issues.read"])
        .bound_to(&holder);
    let minted = app.mint(&secret, &request).await;
    let token = minted["token"].as_str().unwrap();
    let url = format!("{base}/mcp/tracker");
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "holder-binding-test", "version": "1"}}});
    let post = |authorization: String, proof: Option<String>| {
        let mut request = app
            .client
            .post(&url)
            .header("authorization", authorization)
            .header("accept", "application/json, text/event-stream")
            .json(&initialize);
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        request.send()
    };
    let challenge = |response: &reqwest::Response| {
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    let as_bearer = post(format!("Bearer {token}"), None).await.unwrap();
    assert_eq!(as_bearer.status(), 401);
    assert!(challenge(&as_bearer).starts_with("DPoP error=\"invalid_dpop_proof\""));
    let proof = create(&holder, "POST", &url, Some(token), None, app.clock.now());
    let accepted = post(format!("DPoP {token}"), Some(proof.clone()))
        .await
        .unwrap();
    assert_eq!(accepted.status(), 200);
    let answer = accepted.text().await.unwrap();
    assert!(answer.contains("protocolVersion"), "{answer}");
    let replayed = post(format!("DPoP {token}"), Some(proof)).await.unwrap();
    assert_eq!(replayed.status(), 401);
    assert!(challenge(&replayed).contains("already used"));

    // A proxy's check: the proof is for the URL the client addressed, through the proxy.
    let host = base.trim_start_matches("http://");
    let original = format!("https://{host}/tracker/issues");
    let check = |proof: Option<String>| {
        let mut request = app
            .client
            .get(format!("{base}/check/envoy/tracker/issues"))
            .header("authorization", format!("DPoP {token}"));
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        request.send()
    };
    let unproven = check(None).await.unwrap();
    assert_eq!(unproven.status(), 401);
    assert!(challenge(&unproven).starts_with("DPoP error=\"invalid_dpop_proof\""));
    let proof = create(
        &holder,
        "GET",
        &original,
        Some(token),
        None,
        app.clock.now(),
    );
    assert_eq!(check(Some(proof)).await.unwrap().status(), 200);
    // The gateway follows mandate's revocation stream until the test ends: no graceful stop.
}

#[tokio::test]
async fn the_token_commands_make_keys_and_proofs_and_move_the_binding() {
    use crate::cli::mandate_with_stdin;
    use mandate::clock::SystemClock;
    let tmp = tempfile::tempdir().unwrap();
    let path = |name: &str| tmp.path().join(name).to_str().unwrap().to_owned();
    // Two holder keys, written owner-only; an existing file is never overwritten.
    let (ok, orchestrator_jwk, err) = mandate_with_stdin(
        &[
            "token",
            "keygen",
            "--alg",
            "ES256",
            "--out",
            &path("orch.jwk"),
        ],
        "",
    )
    .await;
    assert!(ok, "{err}");
    let (ok, sub_jwk, err) =
        mandate_with_stdin(&["token", "keygen", "--out", &path("sub.jwk")], "").await;
    assert!(ok, "{err}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(path("sub.jwk")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let (ok, _, err) =
        mandate_with_stdin(&["token", "keygen", "--out", &path("sub.jwk")], "").await;
    assert!(!ok && err.contains("cannot write"), "{err}");
    let public = |jwk: &str| {
        let jwk: Value = serde_json::from_str(jwk).unwrap();
        assert!(jwk.get("d").is_none(), "only the public key is printed");
        mandate::token::pop::HolderKey::from_jwk(&jwk)
            .unwrap()
            .thumbprint()
    };
    let (orchestrator, sub) = (public(&orchestrator_jwk), public(&sub_jwk));

    // A mandate bound to the orchestrator's key, and the root key document to verify it with.
    let root = biscuit_auth::KeyPair::new();
    let now = SystemClock.now();
    let spec = mandate::token::mint::MandateSpec {
        approvals: vec![],
        mandate_id: "01900000-0000-7000-8000-000000000009".into(),
        task_id: "t".into(),
        task_digest: vec![0; 32],
        principal_subject: "alice".into(),
        principal_issuer: "https://idp.example.com/".into(),
        agent_id: "bot".into(),
        rights: vec![Right {
            tool: "crm".into(),
            operation: "read".into(),
        }],
        expires_at: now + chrono::Duration::minutes(10),
        constraints: vec![],
        holder_key: Some(orchestrator.clone()),
    };
    let token = mandate::token::mint::mint(&spec, &root, 1).unwrap().token;
    let keys = json!({"keys": [{"kid": 1, "algorithm": "ed25519", "status": "active",
        "public_key": mandate::token::keys::format_public_key(&root.public()),
        "created_at": now}]});
    std::fs::write(path("keys.json"), keys.to_string()).unwrap();

    // Handing it to a sub-agent moves the binding to the sub-agent's key.
    let (ok, handed, err) = mandate_with_stdin(
        &[
            "token",
            "attenuate",
            "--delegate",
            "researcher",
            "--holder-key",
            &path("orch.jwk"),
            "--bind-to",
            &path("sub.jwk"),
        ],
        &token,
    )
    .await;
    assert!(ok, "{err}");
    let (ok, chain, err) = mandate_with_stdin(&["token", "inspect"], &handed).await;
    assert!(ok, "{err}");
    let chain: Value = serde_json::from_str(&chain).unwrap();
    assert_eq!(chain["holder_key"], sub.as_str());
    assert_eq!(chain["blocks"][0]["holder_key"], orchestrator.as_str());
    assert_eq!(chain["blocks"][2]["kind"], "rebinding");
    std::fs::write(path("token"), &handed).unwrap();

    // A proof by the sub-agent verifies; the orchestrator's, or none, does not.
    let url = "https://crm.example.com/tickets";
    let verify = |proof_key: Option<&'static str>| {
        let (keys, token_file) = (path("keys.json"), path("token"));
        let key = proof_key.map(&path);
        let proof_file = path("proof");
        async move {
            let mut args = vec![
                "token".to_owned(),
                "verify".into(),
                "--in".into(),
                token_file.clone(),
                "--keys".into(),
                keys,
                "--tool".into(),
                "crm".into(),
                "--operation".into(),
                "read".into(),
            ];
            if let Some(key) = key {
                let (ok, proof, err) = mandate_with_stdin(
                    &[
                        "token",
                        "proof",
                        "--in",
                        &token_file,
                        "--key",
                        &key,
                        "--method",
                        "GET",
                        "--url",
                        url,
                    ],
                    "",
                )
                .await;
                assert!(ok, "{err}");
                std::fs::write(&proof_file, proof).unwrap();
                args.extend([
                    "--proof".into(),
                    proof_file,
                    "--method".into(),
                    "GET".into(),
                    "--url".into(),
                    url.into(),
                ]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            mandate_with_stdin(&args, "").await
        }
    };
    let (ok, verified, err) = verify(Some("sub.jwk")).await;
    assert!(ok, "{err}");
    let verified: Value = serde_json::from_str(&verified).unwrap();
    assert_eq!(verified["holder_key"], sub.as_str());
    assert_eq!(verified["hops"][0]["agent"], "researcher");
    let (ok, _, err) = verify(Some("orch.jwk")).await;
    assert!(
        !ok && err.contains("other than the mandate's holder"),
        "{err}"
    );
    let (ok, _, err) = verify(None).await;
    assert!(!ok && err.contains("bound to a key"), "{err}");
}

const DPOP_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/dpop_interop.py");

/// Runs the Python side of proof of possession (`cryptography` and biscuit-python).
async fn python(args: &[&str], stdin: &str) -> String {
    let args = args.iter().map(|a| a.to_string()).collect();
    crate::interop::run_python(DPOP_SCRIPT, args, stdin.to_owned()).await
}

#[tokio::test]
async fn python_makes_and_checks_proofs_by_the_token_schema_alone() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (idp, secret) = mint_setup(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let keys_file = dir.path().join("keys.json");
    let keys = app
        .get("/.well-known/mandate-keys")
        .await
        .text()
        .await
        .unwrap();
    std::fs::write(&keys_file, keys).unwrap();
    let keys_file = keys_file.to_str().unwrap().to_owned();
    let now = app.clock.now();
    let at = now.to_rfc3339();
    let url = "https://crm.example.com/tickets";
    let verifier = app.verifier();
    let access = mandate::verifier::Access {
        tool: "crm".into(),
        operation: "read".into(),
        resource: None,
    };
    for alg in ["EdDSA", "ES256"] {
        // A key made in Python binds a mandate minted by mandate.
        let key_file = dir.path().join(format!("{alg}.jwk"));
        let key_path = key_file.to_str().unwrap();
        let public: Value =
            serde_json::from_str(&python(&["keygen", alg, key_path], "").await).unwrap();
        let mut body = Mint::new(&jwt(&app, &idp)).scope("crm", &["read"]).body();
        body["holder_key"] = public.clone();
        let (status, minted) = app.agent(&secret).mint_body(body).await;
        assert_eq!(status, 201, "{minted}");
        let token = minted["token"].as_str().unwrap().to_owned();
        let jkt = mandate::token::pop::HolderKey::from_jwk(&public)
            .unwrap()
            .thumbprint();
        assert_eq!(
            minted["holder_key"],
            jkt.as_str(),
            "both sides compute one thumbprint"
        );

        // Python's proof passes mandate's verifier.
        let proof = python(&["proof", key_path, "GET", url, &at], &token).await;
        let presented = mandate::verifier::Presentation {
            token: &token,
            proof: Some(&proof),
            method: "GET",
            url,
        };
        let verified = verifier
            .verify_presented(&presented, &access, None)
            .await
            .unwrap();
        assert_eq!(verified.holder_key.as_deref(), Some(jkt.as_str()));

        // mandate moves the binding with the Python key (its private JWK, read as written),
        // and Python follows the move and checks mandate's proof.
        let python_key: Value =
            serde_json::from_str(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
        let python_key = HolderSecret::from_jwk(&python_key).unwrap();
        let next = HolderSecret::generate(alg).unwrap();
        let moved = rebind(&token, &python_key, &next.public().thumbprint()).unwrap();
        let check = |token: &str, proof: &str| {
            let input = json!({"token": token, "proof": proof}).to_string();
            let args = ["check", keys_file.as_str(), "GET", url, at.as_str()];
            async move { serde_json::from_str::<Value>(&python(&args, &input).await).unwrap() }
        };
        let proof = create(&next, "GET", url, Some(&moved), None, now);
        let checked = check(&moved, &proof).await;
        assert_eq!(
            checked,
            json!({"valid": true, "jkt": next.public().thumbprint(), "allowed": true})
        );
        let old_holder = create(&python_key, "GET", url, Some(&moved), None, now);
        assert_eq!(check(&moved, &old_holder).await["error"], "key");
        let thief = HolderSecret::generate("EdDSA").unwrap();
        let forged = rebind(&moved, &thief, &thief.public().thumbprint()).unwrap();
        let proof = create(&thief, "GET", url, Some(&forged), None, now);
        assert_eq!(check(&forged, &proof).await["error"], "forged binding");
    }
}

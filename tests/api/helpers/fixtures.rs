//! A small inventory most admin tests start from.

use mandate::clock::Clock;
use reqwest::Method;
use serde_json::json;

use super::TestApp;

/// The public key registered for agent `helper` in [`seed`].
pub const HELPER_KEY: &str =
    "ed25519/acdd6d5b53bfee478bf689f8e012fe7988bf755e3d7c5152947abc149bc20189";

/// Tools `crm` (read, write, delete) and `github` (issues.read, issues.create); issuer `idp`;
/// agents `bot` (orchestrator, ceiling crm read+write) and `helper` (sub-agent); policy `p1`
/// (support group may delegate crm read+write to bot for 10 minutes).
pub async fn seed(app: &TestApp) {
    let posts = [
        (
            "/v1/admin/tools",
            json!({"id": "crm", "display_name": "CRM", "kind": "api", "owner": "bob@example.com",
                   "operations": ["read", "write", "delete"]}),
        ),
        (
            "/v1/admin/tools",
            json!({"id": "github", "display_name": "GitHub MCP", "kind": "mcp_server",
                   "owner": "carol@example.com", "operations": ["issues.read", "issues.create"]}),
        ),
        (
            "/v1/admin/issuers",
            json!({"id": "idp", "issuer_url": "https://idp.example.com/", "audiences": ["mandate"],
                   "discovery": true, "allowed_algorithms": ["RS256", "ES256"],
                   "groups_claim": "groups"}),
        ),
        (
            "/v1/admin/agents",
            json!({"id": "bot", "display_name": "Support bot", "kind": "orchestrator",
                   "owner": "alice@example.com", "team": "support",
                   "ceiling": [{"tool": "crm", "operations": ["read", "write"]}],
                   "max_ttl_seconds": 900}),
        ),
        (
            "/v1/admin/agents",
            json!({"id": "helper", "display_name": "Helper", "kind": "sub_agent",
                   "owner": "alice@example.com",
                   "ceiling": [{"tool": "crm", "operations": ["read"]}]}),
        ),
        (
            "/v1/admin/policies",
            json!({"id": "p1", "issuer": "idp", "groups": ["support"], "agents": ["bot"],
                   "grants": [{"tool": "crm", "operations": ["read", "write"]}],
                   "max_ttl_seconds": 600}),
        ),
        (
            "/v1/admin/agents/helper/keys",
            json!({"public_key": HELPER_KEY}),
        ),
    ];
    for (path, body) in posts {
        app.admin_ok(Method::POST, path, Some(body), 201).await;
    }
}

/// [`seed`], plus a running test identity provider trusted as issuer `test-idp`, policy
/// `support-crm` (group `support` may delegate crm read+write to bot for 10 minutes) and bot's
/// agent secret, which is returned with the provider.
pub async fn mint_setup(app: &TestApp) -> (super::idp::TestIdp, String) {
    seed(app).await;
    let idp = super::idp::TestIdp::start().await;
    trust_issuer(app, "test-idp", &idp, &["read", "write"], 600).await;
    (idp, agent_secret(app, "/v1/admin/agents/bot/secret").await)
}

/// The secret answered by `POST path` (an agent's `secret` or `secret/rotate`), which must be
/// 201.
pub async fn agent_secret(app: &TestApp, path: &str) -> String {
    let issued = app.admin_ok(Method::POST, path, None, 201).await;
    issued["secret"].as_str().unwrap().to_owned()
}

/// Trusts `idp` as issuer `id` (RS256 and ES256), with a policy `support-crm` (or
/// `ID-support-crm` for another issuer) letting group `support` delegate crm `operations` to bot
/// for up to `max_ttl_seconds`.
pub async fn trust_issuer(
    app: &TestApp,
    id: &str,
    idp: &super::idp::TestIdp,
    operations: &[&str],
    max_ttl_seconds: u32,
) {
    app.admin_ok(
        Method::POST,
        "/v1/admin/issuers",
        Some(
            json!({"id": id, "issuer_url": idp.issuer, "audiences": ["mandate"],
                    "jwks_uri": idp.jwks_uri(), "allowed_algorithms": ["RS256", "ES256"],
                    "groups_claim": "groups"}),
        ),
        201,
    )
    .await;
    let policy = if id == "test-idp" {
        "support-crm".to_owned()
    } else {
        format!("{id}-support-crm")
    };
    app.admin_ok(
        Method::POST,
        "/v1/admin/policies",
        Some(
            json!({"id": policy, "issuer": id, "groups": ["support"], "agents": ["bot"],
                    "grants": [{"tool": "crm", "operations": operations}],
                    "max_ttl_seconds": max_ttl_seconds}),
        ),
        201,
    )
    .await;
}

/// A `POST /v1/mandates` body asking for `scope` as written (for bodies [`super::callers::Mint`]
/// cannot build, such as malformed scopes).
pub fn mint_body(subject_token: &str, scope: serde_json::Value) -> serde_json::Value {
    let mut body = super::callers::Mint::new(subject_token).body();
    body["scope"] = scope;
    body
}

/// Mints crm read for `alice` (group support) as bot, with a JWT `idp` issues at the app's
/// current time; returns the status and the body.
pub async fn mint_read(
    app: &TestApp,
    idp: &super::idp::TestIdp,
    secret: &str,
) -> (u16, serde_json::Value) {
    let jwt = idp.sign("rsa-1", &idp.claims("alice", &["support"], app.clock.now()));
    let request = super::callers::Mint::new(&jwt).scope("crm", &["read"]);
    app.agent(secret).try_mint(&request).await
}

/// Two replicas on one Postgres database, loading the same root key file.
pub async fn two_replicas() -> (super::TestApp, super::TestApp) {
    let first_db = super::TestDatabase::new(super::Backend::Postgres).await;
    let url = first_db.url();
    let key = first_db.data_dir().join("root-1.pem");
    mandate::server::keys::generate_key_file(&key).unwrap();
    let shared_key = move |config: &mut mandate::server::config::Config| {
        config.root_keys = vec![mandate::server::config::RootKeyFile {
            kid: 1,
            path: key.clone(),
        }];
    };
    let a = super::TestApp::spawn_with(first_db, shared_key.clone()).await;
    let b = super::TestApp::spawn_with(super::TestDatabase::at(&url), shared_key).await;
    (a, b)
}

/// Registers reporter `id` (a verifier owned by ops@example.com); returns its credential.
pub async fn reporter(app: &TestApp, id: &str) -> String {
    let issued = app
        .admin_ok(
            Method::POST,
            "/v1/admin/reporters",
            Some(
                json!({"id": id, "display_name": "CRM API", "kind": "verifier",
                        "owner": "ops@example.com"}),
            ),
            201,
        )
        .await;
    issued["secret"].as_str().unwrap().to_owned()
}

/// Registers sub-agent `id` (owner alice) with an Ed25519 key of its own, to attest its hops
/// with; returns the key.
pub async fn register_sub_agent(app: &TestApp, id: &str) -> biscuit_auth::KeyPair {
    let key = biscuit_auth::KeyPair::new();
    app.admin_ok(
        Method::POST,
        "/v1/admin/agents",
        Some(json!({"id": id, "display_name": id, "kind": "sub_agent",
                    "owner": "alice@example.com"})),
        201,
    )
    .await;
    let public_key = mandate::token::keys::format_public_key(&key.public());
    app.admin_ok(
        Method::POST,
        &format!("/v1/admin/agents/{id}/keys"),
        Some(json!({ "public_key": public_key })),
        201,
    )
    .await;
    key
}

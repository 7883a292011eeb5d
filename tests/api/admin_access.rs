//! Who may call the admin API: no token or a bad one gets 401 everywhere, an auditor reads
//! everything and changes nothing, and no secret is ever shown twice or stored in clear.

use reqwest::Method;
use serde_json::{json, Value};

use crate::both_stores;
use crate::helpers::fixtures::{agent_secret, seed, HELPER_KEY};
use crate::helpers::{assert_problem, Backend, TestApp, ADMIN_TOKEN};

const SOME_UUID: &str = "01900000-0000-7000-8000-000000000000";

/// Every write endpoint with a body that would succeed for an admin.
fn writes() -> Vec<(Method, String, Option<Value>)> {
    let key_path = format!("/v1/admin/agents/helper/keys/{SOME_UUID}");
    vec![
        (
            Method::POST,
            "/v1/admin/tokens".into(),
            Some(json!({"name": "new", "role": "auditor"})),
        ),
        (
            Method::DELETE,
            format!("/v1/admin/tokens/{SOME_UUID}"),
            None,
        ),
        (
            Method::POST,
            "/v1/admin/agents".into(),
            Some(json!({"id": "new", "display_name": "N", "kind": "sub_agent", "owner": "o"})),
        ),
        (
            Method::PATCH,
            "/v1/admin/agents/bot".into(),
            Some(json!({"team": "x"})),
        ),
        (Method::POST, "/v1/admin/agents/bot/suspend".into(), None),
        (Method::POST, "/v1/admin/agents/bot/resume".into(), None),
        (Method::POST, "/v1/admin/agents/bot/retire".into(), None),
        (Method::POST, "/v1/admin/agents/bot/secret".into(), None),
        (
            Method::POST,
            "/v1/admin/agents/bot/secret/rotate".into(),
            None,
        ),
        (Method::DELETE, "/v1/admin/agents/bot/secret".into(), None),
        (
            Method::POST,
            "/v1/admin/agents/bot/keys".into(),
            Some(json!({"public_key": HELPER_KEY})),
        ),
        (Method::DELETE, key_path, None),
        (
            Method::POST,
            "/v1/admin/tools".into(),
            Some(
                json!({"id": "t", "display_name": "T", "kind": "tool", "owner": "o",
                        "operations": ["run"]}),
            ),
        ),
        (
            Method::PATCH,
            "/v1/admin/tools/crm".into(),
            Some(json!({"owner": "dave"})),
        ),
        (Method::POST, "/v1/admin/tools/crm/disable".into(), None),
        (Method::POST, "/v1/admin/tools/crm/enable".into(), None),
        (Method::POST, "/v1/admin/tools/github/retire".into(), None),
        (
            Method::POST,
            "/v1/admin/issuers".into(),
            Some(
                json!({"id": "i2", "issuer_url": "https://i2.example.com", "audiences": ["m"],
                        "discovery": true, "allowed_algorithms": ["RS256"]}),
            ),
        ),
        (
            Method::PATCH,
            "/v1/admin/issuers/idp".into(),
            Some(json!({"audiences": ["x"]})),
        ),
        (Method::POST, "/v1/admin/issuers/idp/disable".into(), None),
        (Method::POST, "/v1/admin/issuers/idp/enable".into(), None),
        (
            Method::POST,
            "/v1/admin/policies".into(),
            Some(
                json!({"id": "p2", "issuer": "idp", "subjects": ["s"], "agents": "*",
                        "grants": [{"tool": "crm", "operations": ["read"]}],
                        "max_ttl_seconds": 60}),
            ),
        ),
        (
            Method::PATCH,
            "/v1/admin/policies/p1".into(),
            Some(json!({"enabled": false})),
        ),
        (Method::DELETE, "/v1/admin/policies/p1".into(), None),
        (
            Method::POST,
            "/v1/admin/revocations".into(),
            Some(json!({"agent": "bot", "reason": "audit"})),
        ),
        (
            Method::POST,
            "/v1/admin/reporters".into(),
            Some(
                json!({"id": "crm-api", "display_name": "CRM API", "kind": "verifier",
                        "owner": "ops@example.com"}),
            ),
        ),
        (
            Method::POST,
            "/v1/admin/reporters/crm-api/secret/rotate".into(),
            None,
        ),
        (
            Method::POST,
            "/v1/admin/reporters/crm-api/disable".into(),
            None,
        ),
        (
            Method::POST,
            "/v1/admin/reporters/crm-api/enable".into(),
            None,
        ),
    ]
}

/// Every read endpoint.
fn reads() -> Vec<(Method, String, Option<Value>)> {
    [
        "/v1/admin/tokens",
        "/v1/admin/agents",
        "/v1/admin/agents/bot",
        "/v1/admin/tools",
        "/v1/admin/tools/crm",
        "/v1/admin/issuers",
        "/v1/admin/issuers/idp",
        "/v1/admin/policies",
        "/v1/admin/policies/p1",
        "/v1/admin/inventory",
        "/v1/admin/audit",
        "/v1/admin/audit/verify",
        "/v1/admin/attribution",
        "/v1/admin/reporters",
    ]
    .into_iter()
    .map(|p| (Method::GET, p.to_owned(), None))
    .collect()
}

/// `/v1/admin/agents/{id}` for `/v1/admin/agents/bot`, so tables can be matched to the spec.
fn template_of(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').collect();
    let templ: Vec<String> = parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let prev = if i > 0 { parts[i - 1] } else { "" };
            match (prev, *part) {
                ("agents" | "tools" | "issuers" | "policies" | "reporters", p)
                    if !["suspend", "resume", "retire", "disable", "enable"].contains(&p) =>
                {
                    "{id}".to_owned()
                }
                ("tokens", _) => "{id}".to_owned(),
                ("keys", _) => "{key_id}".to_owned(),
                _ => part.to_string(),
            }
        })
        .collect();
    templ.join("/")
}

#[test]
fn the_tables_cover_every_admin_endpoint_in_the_spec() {
    let spec = serde_json::to_value(mandate::server::api::openapi()).unwrap();
    let mut documented = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        if path.starts_with("/v1/admin") {
            for method in item.as_object().unwrap().keys() {
                documented.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    let mut tested: Vec<String> = writes()
        .into_iter()
        .chain(reads())
        .map(|(m, p, _)| format!("{m} {}", template_of(&p)))
        .collect();
    documented.sort();
    tested.sort();
    tested.dedup();
    assert_eq!(tested, documented);
}

both_stores!(
    every_admin_endpoint_answers_401_without_a_valid_token,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        seed(&app).await;
        let revoked = app.token_with_role("soon-gone", "admin").await;
        let tokens = app
            .admin_ok(Method::GET, "/v1/admin/tokens", None, 200)
            .await;
        let id = tokens["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "soon-gone")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        app.admin_ok(Method::DELETE, &format!("/v1/admin/tokens/{id}"), None, 204)
            .await;
        let before = app.audit_len().await;
        let unknown = "mnd_adm_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        for (method, path, body) in writes().into_iter().chain(reads()) {
            for token in [
                None,
                Some(unknown),
                Some(revoked.as_str()),
                Some("not-a-token"),
            ] {
                let response = app.call(method.clone(), &path, token, body.as_ref()).await;
                let www = response.headers().get("www-authenticate").cloned();
                let problem = assert_problem(response, 401).await;
                assert!(www.is_some(), "{method} {path}: WWW-Authenticate");
                assert_eq!(problem["type"], "urn:mandate:problem:unauthorized");
            }
            // Another scheme carrying the real token is no better.
            let response = app
                .client
                .request(method.clone(), app.url(&path))
                .header("authorization", format!("Basic {ADMIN_TOKEN}"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 401, "{method} {path} with Basic");
        }
        assert_eq!(
            app.audit_len().await,
            before,
            "refused calls change nothing"
        );
    }
);

both_stores!(
    an_auditor_reads_everything_and_changes_nothing,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        seed(&app).await;
        let auditor = app.token_with_role("reviewer", "auditor").await;
        for (method, path, _) in reads() {
            let (status, body) = app.as_token(&auditor, method.clone(), &path, None).await;
            assert_eq!(status, 200, "{method} {path}: {body}");
        }
        let agents_before = app
            .admin_ok(Method::GET, "/v1/admin/agents", None, 200)
            .await;
        let audit_before = app.audit_len().await;
        for (method, path, body) in writes() {
            let response = app
                .call(method.clone(), &path, Some(&auditor), body.as_ref())
                .await;
            let problem = assert_problem(response, 403).await;
            assert!(
                problem["detail"].as_str().unwrap().contains("reviewer"),
                "{method} {path}: {problem}"
            );
        }
        assert_eq!(app.audit_len().await, audit_before);
        let agents_after = app
            .admin_ok(Method::GET, "/v1/admin/agents", None, 200)
            .await;
        assert_eq!(agents_before, agents_after);
    }
);

both_stores!(
    changes_are_attributed_to_the_token_that_made_them,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let ops = app.token_with_role("iam-oncall", "admin").await;
        let body = json!({"id": "t", "display_name": "T", "kind": "tool", "owner": "o",
                      "operations": ["run"]});
        let (status, _) = app
            .as_token(&ops, Method::POST, "/v1/admin/tools", Some(body))
            .await;
        assert_eq!(status, 201);
        let events = app.store.audit_events(0, 100).await.unwrap();
        let last = events.last().unwrap();
        assert_eq!(last.actor, "admin:iam-oncall");
        assert_eq!(last.action, "tool.created");
        assert_eq!(last.target.as_deref(), Some("tool:t"));
        assert_eq!(last.details["before"], Value::Null);
        assert_eq!(last.details["after"]["owner"], "o");
        let first = &events[events.len() - 2];
        assert_eq!(first.actor, "admin:bootstrap");
        assert_eq!(first.action, "admin_token.created");
    }
);

/// Everything the database holds, as text: Postgres rows cast to text, or the SQLite files.
async fn database_dump(app: &TestApp, backend: Backend) -> String {
    match backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&app.db.url()).await.unwrap();
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = 'public'",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            let mut dump = String::new();
            for table in tables {
                let rows: Vec<String> =
                    sqlx::query_scalar(&format!("SELECT t::text FROM \"{table}\" t"))
                        .fetch_all(&pool)
                        .await
                        .unwrap();
                dump.push_str(&rows.join("\n"));
                dump.push('\n');
            }
            pool.close().await;
            dump
        }
        Backend::Sqlite => {
            let mut dump = String::new();
            for file in ["mandate.db", "mandate.db-wal"] {
                if let Ok(bytes) = std::fs::read(app.db.data_dir().join(file)) {
                    dump.push_str(&String::from_utf8_lossy(&bytes));
                    // BLOB columns hold raw bytes; add their hex so hashes can be found too.
                    dump.push_str(&hex_of(&bytes));
                }
            }
            dump
        }
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

both_stores!(
    secrets_are_shown_once_and_stored_only_as_hashes,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        seed(&app).await;
        let admin = app.token_with_role("second", "admin").await;
        let secret = agent_secret(&app, "/v1/admin/agents/bot/secret").await;
        assert!(secret.starts_with("mnd_agt_"));
        let rotated = agent_secret(&app, "/v1/admin/agents/bot/secret/rotate").await;
        assert_ne!(secret, rotated);

        let secrets = [
            admin.as_str(),
            secret.as_str(),
            rotated.as_str(),
            ADMIN_TOKEN,
        ];
        let mut seen = String::new();
        for (method, path, _) in reads() {
            let (_, body) = app.admin(method, &path, None).await;
            seen.push_str(&body.to_string());
        }
        let dump = database_dump(&app, backend).await;
        for secret in secrets {
            // Neither the whole secret nor its random part.
            let random = &secret[8..];
            assert!(!seen.contains(random), "a response shows {secret}");
            assert!(
                !dump.contains(random),
                "the database holds {secret} in clear"
            );
        }
        // The check is not vacuous: the hashes are in the dump.
        let hash = hex_of(&mandate::server::secrets::hash(&rotated));
        assert!(dump.contains(&hash), "the agent secret's hash is stored");
        // The rotated-away secret no longer authenticates; the new one does.
        let hash_old = mandate::server::secrets::hash(&secret);
        assert!(app
            .store
            .agent_by_secret(&hash_old)
            .await
            .unwrap()
            .is_none());
        let hash_new = mandate::server::secrets::hash(&rotated);
        assert_eq!(
            app.store
                .agent_by_secret(&hash_new)
                .await
                .unwrap()
                .unwrap()
                .id,
            "bot"
        );
    }
);

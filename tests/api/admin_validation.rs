//! What each bad input to the admin API gets: the right status, a problem naming the field, and
//! no change at all.

use reqwest::Method;
use serde_json::{json, Value};

use crate::admin_inventory::agent_body;
use crate::both_stores;
use crate::helpers::fixtures::seed;
use crate::helpers::{assert_problem, TestApp, ADMIN_TOKEN};

/// Sends `body` as admin and asserts a 4xx problem naming `field` (when given).
async fn refused(app: &TestApp, method: Method, path: &str, body: Value, status: u16, field: &str) {
    let response = app
        .call(method.clone(), path, Some(ADMIN_TOKEN), Some(&body))
        .await;
    let problem = assert_problem(response, status).await;
    if !field.is_empty() {
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .map(|e| e.iter().filter_map(|e| e["field"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            fields.contains(&field),
            "{method} {path} {body}: expected field {field}, got {problem}"
        );
    }
}

both_stores!(
    bad_input_gets_a_problem_naming_the_field_and_changes_nothing,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        seed(&app).await;
        let before = app.audit_len().await;
        let with = |mut body: Value, key: &str, value: Value| {
            body[key] = value;
            body
        };
        let without = |mut body: Value, key: &str| {
            body.as_object_mut().unwrap().remove(key);
            body
        };
        let agent = agent_body("new-agent");
        let cases: Vec<(Value, u16, &str)> = vec![
            (with(agent.clone(), "id", json!("")), 422, "id"),
            (with(agent.clone(), "id", json!("a".repeat(65))), 422, "id"),
            (with(agent.clone(), "id", json!("Upper")), 422, "id"),
            (with(agent.clone(), "id", json!("has/slash")), 422, "id"),
            (with(agent.clone(), "id", json!("nul\u{0}byte")), 422, "id"),
            (with(agent.clone(), "id", json!("bot")), 409, ""),
            (without(agent.clone(), "owner"), 422, "owner"),
            (with(agent.clone(), "owner", json!("  ")), 422, "owner"),
            (
                with(agent.clone(), "owner", json!("eve\u{202E}moc.liam")),
                422,
                "owner",
            ),
            (
                with(agent.clone(), "display_name", json!("x".repeat(129))),
                422,
                "display_name",
            ),
            (
                with(agent.clone(), "max_ttl_seconds", json!(0)),
                422,
                "max_ttl_seconds",
            ),
            (
                with(agent.clone(), "max_ttl_seconds", json!(-5)),
                422,
                "max_ttl_seconds",
            ),
            (
                with(agent.clone(), "max_ttl_seconds", json!(3601)),
                422,
                "max_ttl_seconds",
            ),
            (
                with(agent.clone(), "max_ttl_seconds", json!(1e30)),
                422,
                "max_ttl_seconds",
            ),
            (
                with(agent.clone(), "max_ttl_seconds", json!("ten")),
                422,
                "max_ttl_seconds",
            ),
            (with(agent.clone(), "kind", json!("robot")), 422, "kind"),
            (with(agent.clone(), "colour", json!("blue")), 422, "colour"),
            (
                with(
                    agent.clone(),
                    "ceiling",
                    json!([{"tool": "crm", "operations": ["launch"]}]),
                ),
                422,
                "ceiling[0].operations[0]",
            ),
            (
                with(
                    agent.clone(),
                    "ceiling",
                    json!([{"tool": "nope", "operations": ["read"]}]),
                ),
                422,
                "ceiling[0].tool",
            ),
            (
                with(
                    agent.clone(),
                    "ceiling",
                    json!([{"tool": "crm", "operations": []}]),
                ),
                422,
                "ceiling[0].operations",
            ),
        ];
        for (body, status, field) in cases {
            refused(&app, Method::POST, "/v1/admin/agents", body, status, field).await;
        }

        let issuer = json!({"id": "i2", "issuer_url": "https://i2.example.com/", "audiences": ["m"],
                        "discovery": true, "allowed_algorithms": ["RS256"]});
        for (body, field) in [
            (
                with(issuer.clone(), "issuer_url", json!("not a url")),
                "issuer_url",
            ),
            (
                with(issuer.clone(), "issuer_url", json!("http://i2.example.com")),
                "issuer_url",
            ),
            (
                with(issuer.clone(), "allowed_algorithms", json!(["HS256"])),
                "allowed_algorithms[0]",
            ),
            (
                with(issuer.clone(), "allowed_algorithms", json!(["none"])),
                "allowed_algorithms[0]",
            ),
            (with(issuer.clone(), "audiences", json!([])), "audiences"),
            (with(issuer.clone(), "discovery", json!(false)), "jwks_uri"),
        ] {
            refused(&app, Method::POST, "/v1/admin/issuers", body, 422, field).await;
        }
        refused(
            &app,
            Method::POST,
            "/v1/admin/issuers",
            with(
                issuer.clone(),
                "issuer_url",
                json!("https://idp.example.com/"),
            ),
            409,
            "",
        )
        .await;

        let tool = json!({"id": "t2", "display_name": "T", "kind": "api", "owner": "o",
                      "operations": ["run"]});
        for (body, field) in [
            (with(tool.clone(), "operations", json!([])), "operations"),
            (
                with(tool.clone(), "operations", json!(["run", "run"])),
                "operations[1]",
            ),
            (
                with(tool.clone(), "operations", json!(["Run It"])),
                "operations[0]",
            ),
            (with(tool.clone(), "kind", json!("database")), "kind"),
            (without(tool.clone(), "owner"), "owner"),
        ] {
            refused(&app, Method::POST, "/v1/admin/tools", body, 422, field).await;
        }

        let policy = json!({"id": "p2", "issuer": "idp", "groups": ["support"], "agents": ["bot"],
                        "grants": [{"tool": "crm", "operations": ["read"]}],
                        "max_ttl_seconds": 300});
        for (body, field) in [
            (
                with(policy.clone(), "agents", json!(["ghost"])),
                "agents[0]",
            ),
            (with(policy.clone(), "agents", json!("everyone")), "agents"),
            (with(policy.clone(), "issuer", json!("ghost-idp")), "issuer"),
            (
                with(
                    policy.clone(),
                    "grants",
                    json!([{"tool": "ghost", "operations": ["read"]}]),
                ),
                "grants[0].tool",
            ),
            (
                with(
                    policy.clone(),
                    "grants",
                    json!([{"tool": "crm", "operations": ["purge"]}]),
                ),
                "grants[0].operations[0]",
            ),
            (with(policy.clone(), "grants", json!([])), "grants"),
            (
                with(policy.clone(), "max_ttl_seconds", json!(0)),
                "max_ttl_seconds",
            ),
            (
                with(policy.clone(), "max_ttl_seconds", json!(86_400)),
                "max_ttl_seconds",
            ),
            (
                with(
                    with(policy.clone(), "groups", json!([])),
                    "subjects",
                    json!([]),
                ),
                "subjects",
            ),
        ] {
            refused(&app, Method::POST, "/v1/admin/policies", body, 422, field).await;
        }
        refused(
            &app,
            Method::PATCH,
            "/v1/admin/agents/bot",
            json!({"owner": ""}),
            422,
            "owner",
        )
        .await;
        refused(
            &app,
            Method::PATCH,
            "/v1/admin/policies/p1",
            json!({"max_ttl_seconds": -1}),
            422,
            "max_ttl_seconds",
        )
        .await;

        // Malformed JSON, a wrong media type, and an unknown id.
        let response = app
            .client
            .post(app.url("/v1/admin/agents"))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body("{\"id\": ")
            .send()
            .await
            .unwrap();
        assert_problem(response, 400).await;
        let response = app
            .client
            .post(app.url("/v1/admin/agents"))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "text/plain")
            .body(agent.to_string())
            .send()
            .await
            .unwrap();
        assert_problem(response, 415).await;
        let (status, _) = app.admin(Method::GET, "/v1/admin/agents/ghost", None).await;
        assert_eq!(status, 404);
        let (status, _) = app
            .admin(Method::GET, "/v1/admin/agents?limit=0", None)
            .await;
        assert_eq!(status, 422);
        let (status, _) = app
            .admin(Method::GET, "/v1/admin/agents?cursor=%%%", None)
            .await;
        assert!(status == 400 || status == 422, "{status}");
        let (status, _) = app
            .admin(Method::GET, "/v1/admin/agents?status=zombie", None)
            .await;
        assert_eq!(status, 400);

        assert_eq!(app.audit_len().await, before, "no failed change is audited");
        let bot = app
            .admin_ok(Method::GET, "/v1/admin/agents/bot", None, 200)
            .await;
        assert_eq!(bot["version"], 1, "nothing changed");
    }
);

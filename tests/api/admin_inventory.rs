//! The inventory IAM teams keep: agents, tools, issuers and policies, what each bad input gets,
//! the audit event each change writes, references that must hold, and stable pagination.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};

use crate::both_stores;
use crate::helpers::fixtures::seed;
use crate::helpers::{TestApp, ADMIN_TOKEN};

pub fn agent_body(id: &str) -> Value {
    json!({"id": id, "display_name": "Agent", "kind": "orchestrator", "owner": "alice@example.com",
           "ceiling": [{"tool": "crm", "operations": ["read"]}]})
}

both_stores!(
    every_successful_change_writes_exactly_one_audit_event,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        seed(&app).await;
        let steps: Vec<(Method, &str, Option<Value>, u16, &str)> = vec![
            (
                Method::POST,
                "/v1/admin/agents",
                Some(agent_body("a2")),
                201,
                "agent.created",
            ),
            (
                Method::PATCH,
                "/v1/admin/agents/a2",
                Some(json!({"team": "ops"})),
                200,
                "agent.updated",
            ),
            (
                Method::POST,
                "/v1/admin/agents/a2/suspend",
                None,
                200,
                "agent.suspended",
            ),
            (
                Method::POST,
                "/v1/admin/agents/a2/resume",
                None,
                200,
                "agent.resumed",
            ),
            (
                Method::POST,
                "/v1/admin/agents/a2/secret",
                None,
                201,
                "agent.secret_issued",
            ),
            (
                Method::POST,
                "/v1/admin/agents/a2/secret/rotate",
                None,
                201,
                "agent.secret_rotated",
            ),
            (
                Method::DELETE,
                "/v1/admin/agents/a2/secret",
                None,
                204,
                "agent.secret_revoked",
            ),
            (
                Method::POST,
                "/v1/admin/tools/crm/disable",
                None,
                200,
                "tool.disabled",
            ),
            (
                Method::POST,
                "/v1/admin/tools/crm/enable",
                None,
                200,
                "tool.enabled",
            ),
            (
                Method::PATCH,
                "/v1/admin/tools/github",
                Some(json!({"description": "GH"})),
                200,
                "tool.updated",
            ),
            (
                Method::POST,
                "/v1/admin/issuers/idp/disable",
                None,
                200,
                "issuer.disabled",
            ),
            (
                Method::POST,
                "/v1/admin/issuers/idp/enable",
                None,
                200,
                "issuer.enabled",
            ),
            (
                Method::PATCH,
                "/v1/admin/issuers/idp",
                Some(json!({"groups_claim": null})),
                200,
                "issuer.updated",
            ),
            (
                Method::PATCH,
                "/v1/admin/policies/p1",
                Some(json!({"enabled": false})),
                200,
                "policy.updated",
            ),
            (
                Method::DELETE,
                "/v1/admin/policies/p1",
                None,
                204,
                "policy.deleted",
            ),
            (
                Method::POST,
                "/v1/admin/agents/a2/retire",
                None,
                200,
                "agent.retired",
            ),
        ];
        for (method, path, body, status, action) in steps {
            let before = app.store.audit_events(0, 10_000).await.unwrap();
            app.admin_ok(method.clone(), path, body, status).await;
            let after = app.store.audit_events(0, 10_000).await.unwrap();
            assert_eq!(after.len(), before.len() + 1, "{method} {path}");
            let event = after.last().unwrap();
            assert_eq!(event.action, action, "{method} {path}");
            assert_eq!(event.actor, "admin:bootstrap");
        }
        // A failed change writes nothing: the same secret revoked twice, a retired agent resumed.
        let before = app.audit_len().await;
        for (method, path, status) in [
            (Method::DELETE, "/v1/admin/agents/a2/secret", 404),
            (Method::POST, "/v1/admin/agents/a2/resume", 409),
            (Method::POST, "/v1/admin/agents/a2/suspend", 409),
            (Method::POST, "/v1/admin/agents/a2/secret", 409),
            (Method::POST, "/v1/admin/issuers/idp/enable", 409),
            (Method::DELETE, "/v1/admin/policies/p1", 404),
        ] {
            let (got, body) = app.admin(method.clone(), path, None).await;
            assert_eq!(got, status, "{method} {path}: {body}");
        }
        assert_eq!(app.audit_len().await, before);
    }
);

both_stores!(updates_record_before_and_after, |backend| async move {
    let app = TestApp::spawn(backend).await;
    seed(&app).await;
    app.clock.advance(chrono::Duration::minutes(5));
    let updated = app
        .admin_ok(
            Method::PATCH,
            "/v1/admin/agents/bot",
            Some(json!({"owner": "dave@example.com", "team": null})),
            200,
        )
        .await;
    assert_eq!(updated["owner"], "dave@example.com");
    assert_eq!(updated["team"], Value::Null);
    assert_eq!(updated["version"], 2);
    let events = app.store.audit_events(0, 1000).await.unwrap();
    let event = events.last().unwrap();
    assert_eq!(event.details["before"]["owner"], "alice@example.com");
    assert_eq!(event.details["before"]["team"], "support");
    assert_eq!(event.details["after"]["owner"], "dave@example.com");
    let read = app
        .admin_ok(Method::GET, "/v1/admin/agents/bot", None, 200)
        .await;
    assert_eq!(read["owner"], "dave@example.com");
    assert_eq!(read["updated_at"], updated["updated_at"]);
    assert_ne!(
        read["updated_at"], read["created_at"],
        "the update moved updated_at"
    );
    assert_eq!(
        event.details["after"]["updated_at"], read["updated_at"],
        "the audit records what was stored"
    );
});

both_stores!(
    what_policies_reference_cannot_silently_disappear,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        seed(&app).await;
        // p1 names bot and grants crm read/write; bot's ceiling holds crm read/write.
        let (status, problem) = app
            .admin(Method::POST, "/v1/admin/agents/bot/retire", None)
            .await;
        assert_eq!(status, 409, "{problem}");
        assert!(problem["detail"].as_str().unwrap().contains("policy `p1`"));
        let (status, problem) = app
            .admin(Method::POST, "/v1/admin/tools/crm/retire", None)
            .await;
        assert_eq!(status, 409);
        assert!(problem["detail"].as_str().unwrap().contains("agent `bot`"));
        let (status, problem) = app
            .admin(
                Method::PATCH,
                "/v1/admin/tools/crm",
                Some(json!({"operations": ["delete"]})),
            )
            .await;
        assert_eq!(status, 409, "removing granted operations: {problem}");
        // Removing an operation nobody grants is fine.
        app.admin_ok(
            Method::PATCH,
            "/v1/admin/tools/crm",
            Some(json!({"operations": ["read", "write"]})),
            200,
        )
        .await;
        // Forced retirement goes ahead and the inventory stops showing the agent's reach.
        let retired = app
            .admin_ok(
                Method::POST,
                "/v1/admin/agents/bot/retire?force=true",
                None,
                200,
            )
            .await;
        assert_eq!(retired["status"], "retired");
        let (status, _) = app
            .admin(
                Method::PATCH,
                "/v1/admin/agents/bot",
                Some(json!({"team": "x"})),
            )
            .await;
        assert_eq!(status, 409, "a retired agent cannot be changed");
        // The policy that still names the retired agent can be disabled all the same.
        let disabled = app
            .admin_ok(
                Method::PATCH,
                "/v1/admin/policies/p1",
                Some(json!({"enabled": false})),
                200,
            )
            .await;
        assert_eq!(disabled["enabled"], false);
        let (status, problem) = app
            .admin(
                Method::POST,
                "/v1/admin/policies",
                Some(
                    json!({"id": "p3", "issuer": "idp", "subjects": ["alice"], "agents": ["bot"],
                        "grants": [{"tool": "crm", "operations": ["read"]}],
                        "max_ttl_seconds": 60}),
                ),
            )
            .await;
        assert_eq!(
            status, 422,
            "a new policy cannot name a retired agent: {problem}"
        );
    }
);

both_stores!(
    the_inventory_shows_owners_reach_and_the_policies_behind_it,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        seed(&app).await;
        app.admin_ok(
            Method::POST,
            "/v1/admin/policies",
            Some(
                json!({"id": "p0-any", "issuer": "idp", "subjects": ["alice"], "agents": "*",
                    "grants": [{"tool": "crm", "operations": ["read", "delete"]}],
                    "max_ttl_seconds": 120}),
            ),
            201,
        )
        .await;
        let inventory = app
            .admin_ok(Method::GET, "/v1/admin/inventory", None, 200)
            .await;
        let entries = inventory["items"].as_array().unwrap();
        let bot = entries.iter().find(|e| e["agent"] == "bot").unwrap();
        assert_eq!(bot["owner"], "alice@example.com");
        assert_eq!(bot["live_mandates"], 0);
        assert_eq!(
            bot["reach"],
            json!([
                {"tool": "crm", "operation": "read", "policies": ["p0-any", "p1"]},
                {"tool": "crm", "operation": "write", "policies": ["p1"]},
            ]),
            "delete is outside bot's ceiling"
        );
        let helper = entries.iter().find(|e| e["agent"] == "helper").unwrap();
        assert_eq!(
            helper["reach"],
            json!([{"tool": "crm", "operation": "read", "policies": ["p0-any"]}])
        );
        // Suspending the agent or disabling the tool takes the reach away.
        app.admin_ok(Method::POST, "/v1/admin/tools/crm/disable", None, 200)
            .await;
        let inventory = app
            .admin_ok(Method::GET, "/v1/admin/inventory", None, 200)
            .await;
        for entry in inventory["items"].as_array().unwrap() {
            assert_eq!(entry["reach"], json!([]), "{entry}");
        }
        let filtered = app
            .admin_ok(Method::GET, "/v1/admin/inventory?owner=nobody", None, 200)
            .await;
        assert_eq!(filtered["items"], json!([]));
    }
);

both_stores!(
    agent_keys_are_registered_once_and_removable,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        seed(&app).await;
        let detail = app
            .admin_ok(Method::GET, "/v1/admin/agents/helper", None, 200)
            .await;
        let keys = detail["public_keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1);
        let key = keys[0]["public_key"].as_str().unwrap().to_owned();
        let id = keys[0]["id"].as_str().unwrap().to_owned();
        // The same key, even in capitals, cannot be registered again (here or for another agent).
        let shouted = format!("ed25519/{}", key[8..].to_uppercase());
        for agent in ["helper", "bot"] {
            let (status, _) = app
                .admin(
                    Method::POST,
                    &format!("/v1/admin/agents/{agent}/keys"),
                    Some(json!({"public_key": shouted})),
                )
                .await;
            assert_eq!(status, 409);
        }
        let (status, problem) = app
            .admin(
                Method::POST,
                "/v1/admin/agents/bot/keys",
                Some(json!({"public_key": "ed25519/xyz"})),
            )
            .await;
        assert_eq!(status, 422, "{problem}");
        app.admin_ok(
            Method::DELETE,
            &format!("/v1/admin/agents/helper/keys/{id}"),
            None,
            204,
        )
        .await;
        let detail = app
            .admin_ok(Method::GET, "/v1/admin/agents/helper", None, 200)
            .await;
        assert_eq!(detail["public_keys"], json!([]));
        let (status, _) = app
            .admin(
                Method::DELETE,
                &format!("/v1/admin/agents/helper/keys/{id}"),
                None,
            )
            .await;
        assert_eq!(status, 404);
    }
);

both_stores!(
    pagination_is_stable_while_rows_are_inserted,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        seed(&app).await;
        for i in 0..30 {
            app.admin_ok(
                Method::POST,
                "/v1/admin/agents",
                Some(agent_body(&format!("agent-{i:02}0"))),
                201,
            )
            .await;
        }
        let existing: BTreeSet<String> = (0..30).map(|i| format!("agent-{i:02}0")).collect();
        // Insert rows that sort between and before the ones being paged, while paging.
        let writer = {
            let client = app.client.clone();
            let url = app.url("/v1/admin/agents");
            tokio::spawn(async move {
                for i in 0..30 {
                    for id in [format!("agent-{i:02}5"), format!("aaa-{i:02}")] {
                        let response = client
                            .post(&url)
                            .bearer_auth(ADMIN_TOKEN)
                            .json(&agent_body(&id))
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(response.status(), 201);
                    }
                }
            })
        };
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/admin/agents?limit=4&cursor={c}"),
                None => "/v1/admin/agents?limit=4".to_owned(),
            };
            let page = app.admin_ok(Method::GET, &path, None, 200).await;
            for item in page["items"].as_array().unwrap() {
                seen.push(item["id"].as_str().unwrap().to_owned());
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
            tokio::task::yield_now().await;
        }
        writer.await.unwrap();
        let unique: BTreeSet<String> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "no row twice: {seen:?}");
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "in key order: {seen:?}"
        );
        assert!(
            existing.is_subset(&unique),
            "every row that existed is seen"
        );
    }
);

both_stores!(
    admin_tokens_can_be_listed_and_revoked_but_never_shown_again,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let token = app.token_with_role("ci-bot", "auditor").await;
        let (status, _) = app
            .as_token(&token, Method::GET, "/v1/admin/agents", None)
            .await;
        assert_eq!(status, 200);
        let list = app
            .admin_ok(Method::GET, "/v1/admin/tokens", None, 200)
            .await;
        let entry = &list["items"][0];
        assert_eq!(entry["name"], "ci-bot");
        assert_eq!(entry["role"], "auditor");
        assert!(entry.get("token").is_none());
        let (status, _) = app
            .admin(
                Method::POST,
                "/v1/admin/tokens",
                Some(json!({"name": "ci-bot", "role": "admin"})),
            )
            .await;
        assert_eq!(status, 409, "names are unique");
        let (status, _) = app
            .admin(
                Method::POST,
                "/v1/admin/tokens",
                Some(json!({"name": "bootstrap", "role": "admin"})),
            )
            .await;
        assert_eq!(status, 422, "the configured token's name is reserved");
        let id = entry["id"].as_str().unwrap();
        app.admin_ok(Method::DELETE, &format!("/v1/admin/tokens/{id}"), None, 204)
            .await;
        let (status, _) = app
            .as_token(&token, Method::GET, "/v1/admin/agents", None)
            .await;
        assert_eq!(status, 401, "a revoked token is refused");
    }
);

both_stores!(
    a_policy_and_the_retirement_of_its_agent_never_both_land,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        seed(&app).await;
        for i in 0..8 {
            let id = format!("racer-{i}");
            app.admin_ok(Method::POST, "/v1/admin/agents", Some(agent_body(&id)), 201)
                .await;
            let policy = json!({"id": format!("race-{i}"), "issuer": "idp", "subjects": ["alice"],
                                "agents": [id], "grants": [{"tool": "crm", "operations": ["read"]}],
                                "max_ttl_seconds": 60});
            let create = app.admin(Method::POST, "/v1/admin/policies", Some(policy));
            let retire_path = format!("/v1/admin/agents/{id}/retire");
            let retire = app.admin(Method::POST, &retire_path, None);
            let ((created, _), (retired, _)) = tokio::join!(create, retire);
            assert!(
                !(created == 201 && retired == 200),
                "round {i}: a policy names a retired agent"
            );
            assert!([201, 409, 422].contains(&created), "{created}");
            assert!([200, 409].contains(&retired), "{retired}");
        }
    }
);

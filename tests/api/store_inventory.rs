//! The store conformance suite for the inventory: the same assertions on Postgres and SQLite.

use chrono::Duration;
use mandate::server::model::admin_token::{AdminToken, Role};
use mandate::server::model::agent::{Agent, AgentKey, AgentKind, AgentSecretInfo, AgentStatus};
use mandate::server::model::issuer::{Issuer, IssuerStatus};
use mandate::server::model::page::PageRequest;
use mandate::server::model::policy::{AgentScope, Policy};
use mandate::server::model::tool::{Tool, ToolKind, ToolStatus};
use mandate::server::model::Grant;
use mandate::server::secrets::hash;
use mandate::server::store::{
    change_event, new_id, AgentFilter, InventoryGuard, IssuerFilter, NewSecret, PolicyFilter,
    SecretChange, SharedStore, StoreError, ToolFilter,
};

use crate::both_stores;
use crate::helpers::{test_epoch, Backend, TestDatabase};
use crate::store::migrated;

async fn guard(store: &SharedStore) -> InventoryGuard {
    store.inventory_guard().await.unwrap()
}

fn audit(action: &str) -> mandate::server::store::NewAuditEvent {
    change_event(test_epoch(), "admin:t", action, "x:y".into(), None, None)
}

fn agent(id: &str, owner: &str, status: AgentStatus) -> Agent {
    Agent {
        require_binding: false,
        id: id.into(),
        display_name: format!("Agent {id}"),
        kind: AgentKind::Orchestrator,
        owner: owner.into(),
        team: Some("support".into()),
        description: None,
        ceiling: vec![Grant {
            tool: "crm".into(),
            operations: vec!["read".into()],
            constraints: Default::default(),
            approval: None,
            arguments: None,
        }],
        max_ttl_seconds: 900,
        status,
        version: 1,
        created_at: test_epoch(),
        updated_at: test_epoch(),
    }
}

fn tool(id: &str) -> Tool {
    Tool {
        id: id.into(),
        display_name: id.into(),
        kind: ToolKind::McpServer,
        owner: "bob".into(),
        description: Some("d".into()),
        operations: vec!["read".into(), "write".into()],
        status: ToolStatus::Active,
        version: 1,
        created_at: test_epoch(),
        updated_at: test_epoch(),
    }
}

fn issuer(id: &str, url: &str) -> Issuer {
    Issuer {
        id: id.into(),
        issuer_url: url.into(),
        audiences: vec!["mandate".into()],
        jwks_uri: Some("https://idp.example.com/jwks".into()),
        discovery: false,
        allowed_algorithms: vec!["ES256".into()],
        subject_claim: "email".into(),
        groups_claim: Some("groups".into()),
        client_claim: Some("azp".into()),
        single_use_tokens: true,
        status: IssuerStatus::Active,
        version: 1,
        created_at: test_epoch(),
        updated_at: test_epoch(),
    }
}

fn policy(id: &str, agents: AgentScope, enabled: bool) -> Policy {
    Policy {
        require_binding: false,
        id: id.into(),
        name: format!("Policy {id}"),
        description: None,
        issuer: "idp".into(),
        subjects: vec!["alice".into()],
        groups: vec![],
        agents,
        grants: vec![Grant {
            tool: "crm".into(),
            operations: vec!["read".into()],
            constraints: Default::default(),
            approval: None,
            arguments: None,
        }],
        max_ttl_seconds: 300,
        enabled,
        version: 1,
        created_at: test_epoch(),
        updated_at: test_epoch(),
    }
}

async fn store_with_rows(backend: Backend) -> (TestDatabase, SharedStore) {
    let (db, store) = migrated(backend).await;
    store
        .insert_tool(&tool("crm"), guard(&store).await, &audit("t"))
        .await
        .unwrap();
    store
        .insert_issuer(
            &issuer("idp", "https://idp.example.com/"),
            guard(&store).await,
            &audit("i"),
        )
        .await
        .unwrap();
    for (id, owner, status) in [
        ("b", "alice", AgentStatus::Active),
        ("a", "bob", AgentStatus::Suspended),
        ("c", "alice", AgentStatus::Active),
    ] {
        store
            .insert_agent(&agent(id, owner, status), guard(&store).await, &audit("a"))
            .await
            .unwrap();
    }
    (db, store)
}

both_stores!(rows_read_back_exactly_as_written, |backend| async move {
    let (_db, store) = store_with_rows(backend).await;
    assert_eq!(
        store.agent("b").await.unwrap(),
        Some(agent("b", "alice", AgentStatus::Active))
    );
    assert_eq!(store.tool("crm").await.unwrap(), Some(tool("crm")));
    assert_eq!(
        store.issuer("idp").await.unwrap(),
        Some(issuer("idp", "https://idp.example.com/"))
    );
    let listed = policy("p", AgentScope::Listed(vec!["b".into()]), true);
    let any = policy("q", AgentScope::Any, false);
    store
        .insert_policy(&listed, guard(&store).await, &audit("p"))
        .await
        .unwrap();
    store
        .insert_policy(&any, guard(&store).await, &audit("p"))
        .await
        .unwrap();
    assert_eq!(store.policy("p").await.unwrap(), Some(listed.clone()));
    assert_eq!(store.policy("q").await.unwrap(), Some(any.clone()));
    assert_eq!(store.all_policies().await.unwrap(), vec![listed, any]);
    assert_eq!(store.agent("ghost").await.unwrap(), None);
    // Each insert above wrote its audit event.
    assert_eq!(store.audit_events(0, 100).await.unwrap().len(), 7);
});

both_stores!(
    duplicates_are_conflicts_and_write_nothing,
    |backend| async move {
        let (_db, store) = store_with_rows(backend).await;
        let before = store.audit_events(0, 100).await.unwrap().len();
        let err = store
            .insert_agent(
                &agent("b", "x", AgentStatus::Active),
                guard(&store).await,
                &audit("a"),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict(m) if m.contains("agent `b`")),
            "{err}"
        );
        assert!(matches!(
            store
                .insert_tool(&tool("crm"), guard(&store).await, &audit("t"))
                .await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            store
                .insert_issuer(
                    &issuer("other", "https://idp.example.com/"),
                    guard(&store).await,
                    &audit("i")
                )
                .await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(store.audit_events(0, 100).await.unwrap().len(), before);
    }
);

both_stores!(
    lists_filter_and_continue_after_the_cursor,
    |backend| async move {
        let (_db, store) = store_with_rows(backend).await;
        let ids = |agents: Vec<Agent>| agents.into_iter().map(|a| a.id).collect::<Vec<_>>();
        let all = AgentFilter::default();
        assert_eq!(
            ids(store
                .list_agents(&all, &PageRequest::first(10))
                .await
                .unwrap()),
            ["a", "b", "c"]
        );
        let page = PageRequest {
            after: Some("a".into()),
            limit: 1,
        };
        assert_eq!(
            ids(store.list_agents(&all, &page).await.unwrap()),
            ["b", "c"],
            "limit + 1 rows"
        );
        let alice = AgentFilter {
            owner: Some("alice".into()),
            ..AgentFilter::default()
        };
        assert_eq!(
            ids(store
                .list_agents(&alice, &PageRequest::first(10))
                .await
                .unwrap()),
            ["b", "c"]
        );
        let suspended = AgentFilter {
            status: Some("suspended".into()),
            ..AgentFilter::default()
        };
        assert_eq!(
            ids(store
                .list_agents(&suspended, &PageRequest::first(10))
                .await
                .unwrap()),
            ["a"]
        );
        let tools = store
            .list_tools(
                &ToolFilter {
                    kind: Some("api".into()),
                    ..ToolFilter::default()
                },
                &PageRequest::first(10),
            )
            .await
            .unwrap();
        assert!(tools.is_empty());
        let issuers = store
            .list_issuers(
                &IssuerFilter {
                    status: Some("active".into()),
                },
                &PageRequest::first(10),
            )
            .await
            .unwrap();
        assert_eq!(issuers.len(), 1);
        store
            .insert_policy(
                &policy("p", AgentScope::Any, false),
                guard(&store).await,
                &audit("p"),
            )
            .await
            .unwrap();
        store
            .insert_policy(
                &policy("q", AgentScope::Any, true),
                guard(&store).await,
                &audit("p"),
            )
            .await
            .unwrap();
        let enabled = store
            .list_policies(
                &PolicyFilter {
                    enabled: Some(true),
                    issuer: Some("idp".into()),
                },
                &PageRequest::first(10),
            )
            .await
            .unwrap();
        assert_eq!(
            enabled.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            ["q"]
        );
    }
);

both_stores!(
    an_update_must_name_the_version_it_replaces,
    |backend| async move {
        let (_db, store) = store_with_rows(backend).await;
        let mut changed = agent("b", "dave", AgentStatus::Suspended);
        changed.version = 2;
        changed.updated_at = test_epoch() + Duration::minutes(1);
        store
            .update_agent(&changed, guard(&store).await, &audit("u"))
            .await
            .unwrap();
        assert_eq!(store.agent("b").await.unwrap(), Some(changed.clone()));
        // A second writer that read version 1 loses, and writes nothing.
        let before = store.audit_events(0, 100).await.unwrap().len();
        let stale = agent("b", "eve", AgentStatus::Active);
        let mut stale = stale;
        stale.version = 2;
        assert!(matches!(
            store
                .update_agent(&stale, guard(&store).await, &audit("u"))
                .await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(store.agent("b").await.unwrap(), Some(changed));
        assert_eq!(store.audit_events(0, 100).await.unwrap().len(), before);

        let mut p = policy("p", AgentScope::Any, true);
        store
            .insert_policy(&p, guard(&store).await, &audit("p"))
            .await
            .unwrap();
        assert!(matches!(
            store
                .delete_policy("p", 7, guard(&store).await, &audit("d"))
                .await,
            Err(StoreError::Conflict(_))
        ));
        p.version = 2;
        p.agents = AgentScope::Listed(vec!["a".into()]);
        store
            .update_policy(&p, guard(&store).await, &audit("u"))
            .await
            .unwrap();
        assert_eq!(store.policy("p").await.unwrap(), Some(p));
        store
            .delete_policy("p", 2, guard(&store).await, &audit("d"))
            .await
            .unwrap();
        assert_eq!(store.policy("p").await.unwrap(), None);
    }
);

both_stores!(
    an_agent_has_at_most_one_active_secret,
    |backend| async move {
        let (_db, store) = store_with_rows(backend).await;
        let secret = |n: u8| NewSecret {
            info: AgentSecretInfo {
                id: new_id(test_epoch() + Duration::seconds(i64::from(n))),
                created_by: "admin:t".into(),
                created_at: test_epoch(),
            },
            hash: hash(&format!("secret-{n}")),
        };
        let now = test_epoch();
        let first = secret(1);
        assert!(matches!(
            store
                .change_agent_secret("b", &SecretChange::Revoke, now, &audit("r"))
                .await,
            Err(StoreError::NotFound(_))
        ));
        store
            .change_agent_secret("b", &SecretChange::Issue(first.clone()), now, &audit("i"))
            .await
            .unwrap();
        assert_eq!(store.agent_secret("b").await.unwrap(), Some(first.info));
        assert!(matches!(
            store
                .change_agent_secret("b", &SecretChange::Issue(secret(2)), now, &audit("i"))
                .await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(
            store
                .agent_by_secret(&hash("secret-1"))
                .await
                .unwrap()
                .unwrap()
                .id,
            "b"
        );
        store
            .change_agent_secret("b", &SecretChange::Rotate(secret(3)), now, &audit("r"))
            .await
            .unwrap();
        assert_eq!(
            store.agent_by_secret(&hash("secret-1")).await.unwrap(),
            None
        );
        assert_eq!(
            store
                .agent_by_secret(&hash("secret-3"))
                .await
                .unwrap()
                .unwrap()
                .id,
            "b"
        );
        // A suspended agent's secret authenticates nobody.
        store
            .change_agent_secret("a", &SecretChange::Issue(secret(4)), now, &audit("i"))
            .await
            .unwrap();
        assert_eq!(
            store.agent_by_secret(&hash("secret-4")).await.unwrap(),
            None
        );
        store
            .change_agent_secret("b", &SecretChange::Revoke, now, &audit("r"))
            .await
            .unwrap();
        assert_eq!(store.agent_secret("b").await.unwrap(), None);
        assert_eq!(
            store.agent_by_secret(&hash("secret-3")).await.unwrap(),
            None
        );
    }
);

both_stores!(
    a_change_whose_audit_event_fails_is_rolled_back_whole,
    |backend| async move {
        let (_db, store) = store_with_rows(backend).await;
        let now = test_epoch();
        let secret = |n: u8| NewSecret {
            info: AgentSecretInfo {
                id: new_id(now + Duration::seconds(i64::from(n))),
                created_by: "admin:t".into(),
                created_at: now,
            },
            hash: hash(&format!("secret-{n}")),
        };
        let issued = audit("issue");
        store
            .change_agent_secret("b", &SecretChange::Issue(secret(1)), now, &issued)
            .await
            .unwrap();
        // Reusing an event id makes the audit insert fail after the old secret was revoked
        // and its successor inserted: nothing of it may remain.
        let err = store
            .change_agent_secret("b", &SecretChange::Rotate(secret(2)), now, &issued)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        assert_eq!(
            store
                .agent_by_secret(&hash("secret-1"))
                .await
                .unwrap()
                .unwrap()
                .id,
            "b",
            "the old secret still works"
        );
        assert_eq!(
            store.agent_by_secret(&hash("secret-2")).await.unwrap(),
            None
        );
    }
);

both_stores!(agent_keys_are_unique_and_removable, |backend| async move {
    let (_db, store) = store_with_rows(backend).await;
    let key = |agent: &str, id_seconds: i64| AgentKey {
        id: new_id(test_epoch() + Duration::seconds(id_seconds)),
        agent_id: agent.into(),
        public_key: format!("ed25519/{}", "ab".repeat(32)),
        created_at: test_epoch(),
    };
    let k = key("b", 1);
    store.insert_agent_key(&k, &audit("k")).await.unwrap();
    assert_eq!(store.agent_keys("b").await.unwrap(), vec![k.clone()]);
    assert!(matches!(
        store.insert_agent_key(&key("c", 2), &audit("k")).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .remove_agent_key("c", k.id, test_epoch(), &audit("r"))
            .await,
        Err(StoreError::NotFound(_))
    ));
    store
        .remove_agent_key("b", k.id, test_epoch(), &audit("r"))
        .await
        .unwrap();
    assert!(store.agent_keys("b").await.unwrap().is_empty());
});

both_stores!(
    admin_tokens_are_found_by_hash_until_revoked,
    |backend| async move {
        let (_db, store) = migrated(backend).await;
        let token = AdminToken {
            id: new_id(test_epoch()),
            name: "ops".into(),
            role: Role::Auditor,
            created_by: "cli".into(),
            created_at: test_epoch(),
            revoked_at: None,
        };
        store
            .insert_admin_token(&token, &hash("t1"), &audit("c"))
            .await
            .unwrap();
        assert_eq!(
            store.admin_token_by_hash(&hash("t1")).await.unwrap(),
            Some(token.clone())
        );
        assert_eq!(store.admin_token_by_hash(&hash("t2")).await.unwrap(), None);
        let mut twin = token.clone();
        twin.id = new_id(test_epoch() + Duration::seconds(1));
        assert!(matches!(
            store
                .insert_admin_token(&twin, &hash("t2"), &audit("c"))
                .await,
            Err(StoreError::Conflict(_))
        ));
        let later = test_epoch() + Duration::hours(1);
        store
            .revoke_admin_token(token.id, later, &audit("r"))
            .await
            .unwrap();
        assert_eq!(store.admin_token_by_hash(&hash("t1")).await.unwrap(), None);
        assert_eq!(
            store
                .admin_token(token.id)
                .await
                .unwrap()
                .unwrap()
                .revoked_at,
            Some(later)
        );
        assert!(matches!(
            store.revoke_admin_token(token.id, later, &audit("r")).await,
            Err(StoreError::NotFound(_))
        ));
        let page = store
            .list_admin_tokens(None, &PageRequest::first(10))
            .await
            .unwrap();
        assert_eq!(page.len(), 1, "revoked tokens stay listed");
        let auditors = store
            .list_admin_tokens(Some("auditor"), &PageRequest::first(10))
            .await
            .unwrap();
        assert_eq!(auditors.len(), 1);
        let admins = store
            .list_admin_tokens(Some("admin"), &PageRequest::first(10))
            .await
            .unwrap();
        assert!(admins.is_empty());
    }
);

both_stores!(
    live_mandates_are_counted_until_expiry_or_revocation,
    |backend| async move {
        let (db, store) = store_with_rows(backend).await;
        store
            .register_root_key(
                &mandate::server::store::NewRootKey {
                    kid: 1,
                    public_key: format!("ed25519/{}", "cd".repeat(32)),
                },
                test_epoch(),
            )
            .await
            .unwrap();
        let now = test_epoch();
        // (agent, expires in minutes, revoked)
        let rows = [
            ("b", 10, false),
            ("b", 10, true),
            ("b", -1, false),
            ("c", 5, false),
        ];
        for (i, (agent, minutes, revoked)) in rows.into_iter().enumerate() {
            insert_mandate(
                &db,
                i as u8,
                agent,
                now + Duration::minutes(minutes),
                revoked,
            )
            .await;
        }
        let counts = store.live_mandate_counts(now).await.unwrap();
        assert_eq!(counts.get("b"), Some(&1));
        assert_eq!(counts.get("c"), Some(&1));
        assert_eq!(counts.get("a"), None);
    }
);

/// Minting lands later; until then the tests write issuance rows directly.
async fn insert_mandate(
    db: &TestDatabase,
    n: u8,
    agent: &str,
    expires: chrono::DateTime<chrono::Utc>,
    revoked: bool,
) {
    let id = new_id(test_epoch() + Duration::milliseconds(i64::from(n)));
    let mandate = "INSERT INTO mandates (id, agent_id, principal_subject, principal_issuer, \
         task_id, task_description, task_digest, scope, root_kid, revocation_id, issued_at, \
         expires_at) VALUES ($1, $2, 'alice', 'https://idp.example.com/', 't', 'd', $3, $4, 1, \
         $5, $6, $7)";
    let revocation = "INSERT INTO revocations (id, revocation_id, mandate_id, reason, \
         revoked_by, revoked_at, expires_at) VALUES ($1, $2, $3, 'test', 'admin:t', $4, $5)";
    let scope = sqlx::types::Json(serde_json::json!([]));
    match &db.database {
        mandate::server::config::Database::Postgres(url) => {
            let pool = sqlx::PgPool::connect(url.expose()).await.unwrap();
            sqlx::query(mandate)
                .bind(id)
                .bind(agent)
                .bind(vec![n])
                .bind(&scope)
                .bind(vec![n, 1])
                .bind(test_epoch())
                .bind(expires)
                .execute(&pool)
                .await
                .unwrap();
            if revoked {
                sqlx::query(revocation)
                    .bind(new_id(expires))
                    .bind(vec![n, 1])
                    .bind(id)
                    .bind(test_epoch())
                    .bind(expires)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            pool.close().await;
        }
        _ => {
            let pool = sqlx::SqlitePool::connect(&db.url()).await.unwrap();
            sqlx::query(mandate)
                .bind(id)
                .bind(agent)
                .bind(vec![n])
                .bind(&scope)
                .bind(vec![n, 1])
                .bind(test_epoch())
                .bind(expires)
                .execute(&pool)
                .await
                .unwrap();
            if revoked {
                sqlx::query(revocation)
                    .bind(new_id(expires))
                    .bind(vec![n, 1])
                    .bind(id)
                    .bind(test_epoch())
                    .bind(expires)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            pool.close().await;
        }
    }
}

both_stores!(
    a_change_checked_against_a_stale_inventory_is_refused,
    |backend| async move {
        let (_db, store) = store_with_rows(backend).await;
        let checked = guard(&store).await;
        store
            .insert_tool(&tool("mail"), checked, &audit("t"))
            .await
            .unwrap();
        let before = store.audit_events(0, 100).await.unwrap().len();
        let err = store
            .insert_agent(&agent("d", "x", AgentStatus::Active), checked, &audit("a"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict(m) if m.contains("retry")),
            "{err}"
        );
        assert_eq!(store.agent("d").await.unwrap(), None);
        assert_eq!(store.audit_events(0, 100).await.unwrap().len(), before);
        assert_ne!(
            guard(&store).await,
            checked,
            "every change advances the generation"
        );
    }
);

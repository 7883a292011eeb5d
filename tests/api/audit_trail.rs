//! The audit trail is append-only and tamper-evident: the database refuses changes, and any
//! change made behind its back (changed, deleted, inserted, reordered or cut-off rows) is found
//! by verification, which names the first bad event.

use std::process::Command;

use mandate::clock::Clock;
use reqwest::Method;
use serde_json::Value;

use crate::both_stores;
use crate::helpers::fixtures::seed;
use crate::helpers::{Backend, TestApp};

/// Runs `statements` on one connection, as someone with direct database access would, with the
/// append-only triggers out of the way first when `bypass` is set.
async fn tamper(
    app: &TestApp,
    backend: Backend,
    bypass: bool,
    statements: &[&str],
) -> Result<(), String> {
    use sqlx::Connection as _;
    match backend {
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&app.db.url()).await.unwrap();
            if bypass {
                sqlx::query("SET session_replication_role = replica")
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            for statement in statements {
                sqlx::query(statement)
                    .execute(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&app.db.url())
                .await
                .unwrap();
            if bypass {
                for trigger in ["audit_events_no_update", "audit_events_no_delete"] {
                    sqlx::query(&format!("DROP TRIGGER IF EXISTS {trigger}"))
                        .execute(&mut conn)
                        .await
                        .unwrap();
                }
            }
            for statement in statements {
                sqlx::query(statement)
                    .execute(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        }
    }
}

async fn verify(app: &TestApp) -> Value {
    app.admin_ok(Method::GET, "/v1/admin/audit/verify", None, 200)
        .await
}

both_stores!(
    an_untouched_trail_verifies_and_the_database_refuses_changes,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        seed(&app).await;
        let report = verify(&app).await;
        assert_eq!(report["intact"], true, "{report}");
        assert!(report["events"].as_u64().unwrap() >= 8);
        for statement in [
            "UPDATE audit_events SET actor = 'admin:mallory' WHERE seq = 2",
            "DELETE FROM audit_events WHERE seq = 2",
        ] {
            let refused = tamper(&app, backend, false, &[statement]).await;
            assert!(refused.unwrap_err().contains("append-only"), "{statement}");
        }
        assert_eq!(verify(&app).await["intact"], true);
    }
);

both_stores!(
    every_kind_of_tampering_is_found_at_the_first_bad_event,
    |backend| async move {
        let cases: [(&str, Vec<&str>, i64, &str); 4] = [
        ("changed", vec!["UPDATE audit_events SET actor = 'admin:mallory' WHERE seq = 3"], 3, "do not match"),
        ("deleted", vec!["DELETE FROM audit_events WHERE seq = 3"], 3, "expected event 3"),
        (
            "reordered",
            vec![
                "UPDATE audit_events SET seq = 1000 WHERE seq = 3",
                "UPDATE audit_events SET seq = 3 WHERE seq = 4",
                "UPDATE audit_events SET seq = 4 WHERE seq = 1000",
            ],
            3,
            "does not follow",
        ),
        (
            "inserted",
            vec!["INSERT INTO audit_events (seq, id, occurred_at, actor, action, target, outcome, details, prev_hash, hash) \
                  SELECT seq + 1, id, occurred_at, 'admin:mallory', action, target, outcome, details, hash, hash \
                  FROM audit_events WHERE seq = (SELECT max(seq) FROM audit_events)"],
            -1,
            "do not match",
        ),
    ];
        for (name, statements, seq, reason) in cases {
            let app = TestApp::spawn(backend).await;
            seed(&app).await;
            let last = app.store.audit_head().await.unwrap().unwrap().0;
            let fixed: Vec<String> = statements
                .iter()
                // A copied row needs a fresh id; SQLite and Postgres spell that differently.
                .map(|s| match backend {
                    Backend::Postgres => {
                        s.replace("SELECT seq + 1, id,", "SELECT seq + 1, gen_random_uuid(),")
                    }
                    Backend::Sqlite => {
                        s.replace("SELECT seq + 1, id,", "SELECT seq + 1, randomblob(16),")
                    }
                })
                .collect();
            let refs: Vec<&str> = fixed.iter().map(String::as_str).collect();
            tamper(&app, backend, true, &refs).await.unwrap();
            let report = verify(&app).await;
            let expected = if seq < 0 { last + 1 } else { seq };
            assert_eq!(report["intact"], false, "{name}: {report}");
            assert_eq!(report["first_bad"]["seq"], expected, "{name}: {report}");
            assert!(
                report["first_bad"]["reason"]
                    .as_str()
                    .unwrap()
                    .contains(reason),
                "{name}: {report}"
            );
        }
    }
);

both_stores!(
    a_signed_checkpoint_reveals_a_cut_off_tail,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        // The server signs the head once at start; wait for it, so the manual checkpoint
        // below covers the seeded events.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while app.store.audit_checkpoints().await.unwrap().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint at start"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        seed(&app).await;
        let state_keys = {
            let doc: mandate::token::keys::KeysDocument = app
                .get("/.well-known/mandate-keys")
                .await
                .json()
                .await
                .unwrap();
            doc
        };
        assert_eq!(state_keys.keys.len(), 1);
        // Sign the head the way the server does every minute.
        let ring = {
            let key = mandate::server::keys::load_key_file(&mandate::server::keys::dev_key_path(
                app.db.data_dir(),
            ))
            .unwrap();
            mandate::server::keys::KeyRing::new(
                vec![mandate::server::keys::RootKey::new(1, key, app.clock.now())],
                1,
            )
            .unwrap()
        };
        let checkpoint =
            mandate::server::audit::checkpoint(app.store.as_ref(), &ring, app.clock.now())
                .await
                .unwrap()
                .unwrap();
        // The server signs the head at start too; every checkpoint verifies.
        let report = verify(&app).await;
        assert!(report["checkpoints"].as_u64().unwrap() >= 1, "{report}");
        assert_eq!(report["intact"], true);
        let cut = format!("DELETE FROM audit_events WHERE seq = {}", checkpoint.seq);
        tamper(&app, backend, true, &[cut.as_str()]).await.unwrap();
        let report = verify(&app).await;
        assert_eq!(report["first_bad"]["seq"], checkpoint.seq, "{report}");
        assert!(
            report["first_bad"]["reason"]
                .as_str()
                .unwrap()
                .contains("gone"),
            "{report}"
        );

        if backend == Backend::Sqlite {
            // The command names the same event and fails.
            let out = Command::new(env!("CARGO_BIN_EXE_mandate"))
                .args(["audit", "verify"])
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("MANDATE_DATA_DIR", app.db.data_dir())
                .env("MANDATE_LOG", "error")
                .output()
                .unwrap();
            assert!(!out.status.success());
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains(&format!("altered at event {}", checkpoint.seq)),
                "{stderr}"
            );
        }
    }
);

both_stores!(a_rewritten_chain_is_never_signed, |backend| async move {
    let app = TestApp::spawn(backend).await;
    seed(&app).await;
    // The server signs the head once at start; wait for it, so the events below come after.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while app.store.audit_checkpoints().await.unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint at start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    app.admin_ok(
        Method::POST,
        "/v1/admin/tools",
        Some(
            serde_json::json!({"id": "late", "display_name": "L", "kind": "tool", "owner": "o",
                                "operations": ["run"]}),
        ),
        201,
    )
    .await;
    let head = app.store.audit_head().await.unwrap().unwrap().0;
    let key = mandate::server::keys::load_key_file(&mandate::server::keys::dev_key_path(
        app.db.data_dir(),
    ))
    .unwrap();
    let ring = mandate::server::keys::KeyRing::new(
        vec![mandate::server::keys::RootKey::new(1, key, app.clock.now())],
        1,
    )
    .unwrap();
    let rewrite = format!("UPDATE audit_events SET actor = 'admin:mallory' WHERE seq = {head}");
    tamper(&app, backend, true, &[rewrite.as_str()])
        .await
        .unwrap();
    let before = app.store.audit_checkpoints().await.unwrap().len();
    let refused = mandate::server::audit::checkpoint(app.store.as_ref(), &ring, app.clock.now())
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("not signing"), "{refused}");
    assert_eq!(app.store.audit_checkpoints().await.unwrap().len(), before);
});

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
pub(crate) async fn tamper(
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

pub(crate) async fn verify(app: &TestApp) -> Value {
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
        start_checkpoint(&app).await;
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
        let ring = server_ring(&app);
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
            let out = audit_verify_command(&app);
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
    start_checkpoint(&app).await;
    add_tool(&app, "late").await;
    let head = app.store.audit_head().await.unwrap().unwrap().0;
    let ring = server_ring(&app);
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

/// The key ring the test server signs with.
pub(crate) fn server_ring(app: &TestApp) -> mandate::server::keys::KeyRing {
    let key = mandate::server::keys::load_key_file(&mandate::server::keys::dev_key_path(
        app.db.data_dir(),
    ))
    .unwrap();
    mandate::server::keys::KeyRing::new(
        vec![mandate::server::keys::RootKey::new(1, key, app.clock.now())],
        1,
    )
    .unwrap()
}

/// Waits for the checkpoint the server signs at start.
pub(crate) async fn start_checkpoint(app: &TestApp) {
    let deadline = crate::helpers::real_now() + std::time::Duration::from_secs(5);
    while app.store.audit_checkpoints().await.unwrap().is_empty() {
        assert!(
            crate::helpers::real_now() < deadline,
            "no checkpoint at start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn add_tool(app: &TestApp, id: &str) {
    app.admin_ok(
        Method::POST,
        "/v1/admin/tools",
        Some(
            serde_json::json!({"id": id, "display_name": id, "kind": "tool", "owner": "o",
                                "operations": ["run"]}),
        ),
        201,
    )
    .await;
}

/// Rewrites event `seq`'s actor and every hash from it on, as someone with database access
/// and the hash function (it is public) would, so that the chain holds together again.
pub(crate) async fn rewrite_and_rehash(app: &TestApp, backend: Backend, seq: i64) {
    use mandate::server::audit::{as_new, chain_hash};
    let events = app.store.audit_events(seq - 1, 100_000).await.unwrap();
    let mut prev = hex::decode(&events[0].prev_hash).unwrap();
    let bytes = |b: &[u8]| match backend {
        Backend::Postgres => format!("'\\x{}'::bytea", hex::encode(b)),
        Backend::Sqlite => format!("X'{}'", hex::encode(b)),
    };
    let mut statements = Vec::new();
    for event in &events {
        let mut new = as_new(event);
        if event.seq == seq {
            new.actor = "admin:mallory".to_owned();
        }
        let hash = chain_hash(&prev, event.seq, &new);
        statements.push(format!(
            "UPDATE audit_events SET actor = '{}', prev_hash = {}, hash = {} WHERE seq = {}",
            new.actor,
            bytes(&prev),
            bytes(&hash),
            event.seq
        ));
        prev = hash;
    }
    let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
    tamper(app, backend, true, &statements).await.unwrap();
}

/// A server with the seeded inventory, past its start-up checkpoint; the key ring it signs
/// with; and the chain as verified up to its head.
async fn verified_app(
    backend: Backend,
) -> (
    TestApp,
    mandate::server::keys::KeyRing,
    Option<mandate::server::audit::Verified>,
) {
    let app = TestApp::spawn(backend).await;
    start_checkpoint(&app).await;
    seed(&app).await;
    let ring = server_ring(&app);
    let mut verified = None;
    mandate::server::audit::verify_since(app.store.as_ref(), &ring, &mut verified)
        .await
        .unwrap();
    (app, ring, verified)
}

both_stores!(
    a_checkpoint_signs_the_hashes_recomputed_before_a_later_rewrite,
    |backend| async move {
        use mandate::server::audit::{sign_checkpoint, verify_since};
        let (app, ring, mut verified) = verified_app(backend).await;
        let store = app.store.as_ref();
        let first = verified.clone().unwrap();
        let head = app.store.audit_head().await.unwrap().unwrap();
        assert_eq!((first.seq, first.hash.clone()), head);

        // An event before the last one verified, rewritten with every hash after it: the next
        // walk goes on from the hash recomputed before, so that is what gets signed.
        add_tool(&app, "later").await;
        rewrite_and_rehash(&app, backend, first.seq - 1).await;
        let refused = verify_since(store, &ring, &mut verified)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains(&format!(
                "broken at event {}: gone or changed since it was verified",
                first.seq
            )),
            "{refused}"
        );
        assert_eq!(verified, Some(first.clone()), "nothing past it is taken");
        let signed = sign_checkpoint(store, &ring, &first, app.clock.now())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((signed.seq, signed.hash), (first.seq, first.hash.clone()));
        assert!(sign_checkpoint(store, &ring, &first, app.clock.now())
            .await
            .unwrap()
            .is_none());
        let report = verify(&app).await;
        assert_eq!(report["intact"], false, "{report}");
        assert_eq!(report["first_bad"]["seq"], first.seq, "{report}");
        assert_eq!(
            report["first_bad"]["reason"], "differs from a signed checkpoint",
            "{report}"
        );
    }
);

both_stores!(
    a_walk_goes_on_from_the_last_event_verified_and_stops_at_a_rewrite,
    |backend| async move {
        use mandate::server::audit::verify_since;
        let (app, ring, mut verified) = verified_app(backend).await;
        let store = app.store.as_ref();
        let first = verified.clone().unwrap();
        add_tool(&app, "later").await;
        add_tool(&app, "last").await;
        let head = app.store.audit_head().await.unwrap().unwrap();
        // The second event after the one verified last has a new target but its old hash.
        let rewrite = format!(
            "UPDATE audit_events SET target = 'tool:other' WHERE seq = {}",
            first.seq + 2
        );
        tamper(&app, backend, true, &[rewrite.as_str()])
            .await
            .unwrap();
        let refused = verify_since(store, &ring, &mut verified)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains(&format!(
                "broken at event {}: its contents do not match its hash",
                first.seq + 2
            )),
            "{refused}"
        );
        let intact = verified.clone().unwrap();
        assert_eq!(intact.seq, first.seq + 1, "the walk keeps the intact part");
        assert!(intact.seq < head.0);
        // Walked again, it stops there again.
        assert!(verify_since(store, &ring, &mut verified).await.is_err());
        assert_eq!(verified, Some(intact));
    }
);

both_stores!(
    a_fresh_walk_starts_at_the_latest_signed_checkpoint_and_checks_it,
    |backend| async move {
        use mandate::server::audit::{checkpoint, verify_since};
        let (app, ring, _) = verified_app(backend).await;
        let store = app.store.as_ref();
        let signed = checkpoint(store, &ring, app.clock.now())
            .await
            .unwrap()
            .unwrap();
        add_tool(&app, "later").await;
        // An event before the checkpoint changed without its hash: the walk starts at the
        // checkpoint and does not read it (`mandate audit verify` does).
        tamper(
            &app,
            backend,
            true,
            &["UPDATE audit_events SET actor = 'admin:mallory' WHERE seq = 2"],
        )
        .await
        .unwrap();
        let mut verified = None;
        verify_since(store, &ring, &mut verified).await.unwrap();
        let head = app.store.audit_head().await.unwrap().unwrap();
        assert_eq!(verified.map(|v| (v.seq, v.hash)), Some(head));
        // Rewritten with every hash after it, the chain holds together up to the head, but not
        // at the checkpoint.
        rewrite_and_rehash(&app, backend, 3).await;
        let mut verified = None;
        let refused = verify_since(store, &ring, &mut verified)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains(&format!("broken at event {}: gone or changed", signed.seq)),
            "{refused}"
        );
        assert!(checkpoint(store, &ring, app.clock.now()).await.is_err());
    }
);

both_stores!(
    a_checkpoint_a_root_key_did_not_sign_stops_verification,
    |backend| async move {
        use mandate::server::audit::{checkpoint, verify_since};
        let (app, ring, _) = verified_app(backend).await;
        let (head, hash) = app.store.audit_head().await.unwrap().unwrap();
        // Someone with database access records a checkpoint over the head, claiming root key 1.
        let forged = mandate::server::store::Checkpoint {
            seq: head,
            hash,
            kid: 1,
            signature: vec![7; 64],
            signed_at: app.clock.now(),
        };
        app.store.insert_checkpoint(&forged).await.unwrap();
        let mut verified = None;
        let refused = verify_since(app.store.as_ref(), &ring, &mut verified)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains(&format!(
                "checkpoint at event {head} does not verify with root key 1"
            )),
            "{refused}"
        );
        add_tool(&app, "later").await;
        let before = app.store.audit_checkpoints().await.unwrap().len();
        assert!(checkpoint(app.store.as_ref(), &ring, app.clock.now())
            .await
            .is_err());
        assert_eq!(app.store.audit_checkpoints().await.unwrap().len(), before);
    }
);

both_stores!(
    a_tail_cut_off_after_it_was_verified_is_found,
    |backend| async move {
        use mandate::server::audit::verify_since;
        let (app, ring, mut verified) = verified_app(backend).await;
        let last = verified.clone().unwrap().seq;
        let cut = format!("DELETE FROM audit_events WHERE seq = {last}");
        tamper(&app, backend, true, &[cut.as_str()]).await.unwrap();
        let refused = verify_since(app.store.as_ref(), &ring, &mut verified)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains(&format!("broken at event {last}: gone or changed")),
            "{refused}"
        );
    }
);

/// Signing `verified` fails: a checkpoint over the same event signs another hash.
async fn signing_is_refused_for_another_hash(
    app: &TestApp,
    ring: &mandate::server::keys::KeyRing,
    verified: &mandate::server::audit::Verified,
) {
    let refused = mandate::server::audit::sign_checkpoint(
        app.store.as_ref(),
        ring,
        verified,
        app.clock.now(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        refused.contains(&format!(
            "checkpoint at event {} signs another hash",
            verified.seq
        )),
        "{refused}"
    );
}

both_stores!(
    a_checkpoint_over_the_same_event_with_another_hash_is_refused,
    |backend| async move {
        use mandate::server::audit::checkpoint_message;
        let (app, ring, verified) = verified_app(backend).await;
        let verified = verified.unwrap();
        // Another replica, with the same root key, signed the same event with another hash.
        let other = vec![9; 32];
        let signature = ring
            .active()
            .keypair()
            .sign(&checkpoint_message(verified.seq, &other))
            .unwrap()
            .to_bytes()
            .to_vec();
        let theirs = mandate::server::store::Checkpoint {
            seq: verified.seq,
            hash: other,
            kid: 1,
            signature,
            signed_at: app.clock.now(),
        };
        app.store.insert_checkpoint(&theirs).await.unwrap();
        signing_is_refused_for_another_hash(&app, &ring, &verified).await;
        // The same from a replica whose key this one does not hold, recorded as this one signs:
        // the row first recorded stays, and the disagreement is an error.
        add_tool(&app, "later").await;
        let mut later = Some(verified);
        mandate::server::audit::verify_since(app.store.as_ref(), &ring, &mut later)
            .await
            .unwrap();
        let later = later.unwrap();
        let theirs = mandate::server::store::Checkpoint {
            seq: later.seq,
            hash: vec![9; 32],
            kid: 99,
            signature: vec![7; 64],
            signed_at: app.clock.now(),
        };
        app.store.insert_checkpoint(&theirs).await.unwrap();
        signing_is_refused_for_another_hash(&app, &ring, &later).await;
    }
);

/// Runs `mandate audit verify` on `app`'s SQLite store, with the development key.
pub(crate) fn audit_verify_command(app: &TestApp) -> std::process::Output {
    audit_verify_with(app, &[])
}

/// Runs `mandate audit verify` on `app`'s SQLite store, with `envs` set as well.
pub(crate) fn audit_verify_with(app: &TestApp, envs: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["audit", "verify"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MANDATE_DATA_DIR", app.db.data_dir())
        .env("MANDATE_LOG", "error")
        .envs(envs.iter().copied())
        .output()
        .unwrap()
}

#[tokio::test]
async fn audit_verify_trusts_the_configured_root_keys_not_the_ones_on_record() {
    use ed25519_dalek::{Signer, SigningKey};
    use mandate::server::audit::checkpoint_message;
    let backend = Backend::Sqlite;
    let app = TestApp::spawn(backend).await;
    seed(&app).await;
    start_checkpoint(&app).await;
    let untouched = audit_verify_command(&app);
    assert!(
        untouched.status.success(),
        "{}",
        String::from_utf8_lossy(&untouched.stderr)
    );

    // Someone who can write the database puts a key of their own in the record of root keys,
    // under the service's kid. The record is not what checkpoints are checked with: the
    // untouched trail still verifies.
    let signed = app.store.audit_checkpoints().await.unwrap()[0].clone();
    let mallory = SigningKey::from_bytes(&[7; 32]);
    let rekey = format!(
        "UPDATE root_keys SET public_key = 'ed25519/{}' WHERE kid = {}",
        hex::encode(mallory.verifying_key().as_bytes()),
        signed.kid
    );
    tamper(&app, backend, true, &[rekey.as_str()])
        .await
        .unwrap();
    let rekeyed = audit_verify_command(&app);
    assert!(
        rekeyed.status.success(),
        "{}",
        String::from_utf8_lossy(&rekeyed.stderr)
    );

    // Then they rewrite the event the checkpoint signs, re-hash the chain, and sign the
    // checkpoint again with their key.
    rewrite_and_rehash(&app, backend, signed.seq).await;
    let rewritten = app.store.audit_events(signed.seq - 1, 1).await.unwrap()[0].clone();
    let hash = hex::decode(&rewritten.hash).unwrap();
    let signature = mallory.sign(&checkpoint_message(signed.seq, &hash));
    let resign = [
        "DROP TRIGGER IF EXISTS audit_checkpoints_no_update".to_owned(),
        format!(
            "UPDATE audit_checkpoints SET hash = X'{}', signature = X'{}' WHERE seq = {}",
            hex::encode(&hash),
            hex::encode(signature.to_bytes()),
            signed.seq
        ),
    ];
    let resign: Vec<&str> = resign.iter().map(String::as_str).collect();
    tamper(&app, backend, true, &resign).await.unwrap();

    // Checked against the key the configuration loads, the forged checkpoint fails: the
    // command exits non-zero and names it, as the service's own verification does.
    let forged = audit_verify_command(&app);
    let stderr = String::from_utf8_lossy(&forged.stderr);
    assert!(!forged.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("altered at event {}", signed.seq))
            && stderr.contains("checkpoint signature does not verify"),
        "{stderr}"
    );
    // The same with the key configured as a key file.
    let key_file = mandate::server::keys::dev_key_path(app.db.data_dir());
    let configured = format!("{}={}", signed.kid, key_file.display());
    let out = audit_verify_with(&app, &[("MANDATE_ROOT_KEYS", configured.as_str())]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("checkpoint signature does not verify"),
        "{stderr}"
    );
    let report = verify(&app).await;
    assert_eq!(report["intact"], false, "{report}");
    assert_eq!(report["first_bad"]["seq"], signed.seq, "{report}");
}

#[tokio::test]
async fn audit_verify_without_a_root_key_to_check_with_refuses_to_run() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    seed(&app).await;
    std::fs::remove_file(mandate::server::keys::dev_key_path(app.db.data_dir())).unwrap();
    let out = audit_verify_command(&app);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("no root key to check the audit checkpoints with")
            && stderr.contains("MANDATE_ROOT_KEYS")
            && stderr.contains("root-key-1.pem"),
        "{stderr}"
    );
}

both_stores!(
    a_checkpoint_of_a_root_key_no_longer_configured_is_passed_over,
    |backend| async move {
        use ed25519_dalek::{Signer, SigningKey};
        use mandate::server::audit::checkpoint_message;
        let (app, _, _) = verified_app(backend).await;
        let before = verify(&app).await;
        assert_eq!(before["intact"], true, "{before}");
        assert_eq!(before["checkpoints_passed_over"], 0, "{before}");
        // A checkpoint kid 2 signed before it was rotated out of the configuration.
        let (head, hash) = app.store.audit_head().await.unwrap().unwrap();
        let retired = SigningKey::from_bytes(&[5; 32]);
        let signature = retired.sign(&checkpoint_message(head, &hash)).to_bytes();
        let old = mandate::server::store::Checkpoint {
            seq: head,
            hash,
            kid: 2,
            signature: signature.to_vec(),
            signed_at: app.clock.now(),
        };
        app.store.insert_checkpoint(&old).await.unwrap();
        // Without its key it vouches for nothing, and raises no alarm: counted, passed over.
        let report = verify(&app).await;
        assert_eq!(report["intact"], true, "{report}");
        assert_eq!(report["checkpoints"], before["checkpoints"], "{report}");
        assert_eq!(report["checkpoints_passed_over"], 1, "{report}");
        if backend == Backend::Sqlite {
            let out = audit_verify_command(&app);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{stdout}");
            assert!(
                stdout.contains("\"checkpoints_passed_over\": 1"),
                "{stdout}"
            );
        }
    }
);

//! Someone with the application's own database role, or a DBA, fabricating the audit trail
//! rather than altering old rows: an appended event with a correctly computed hash, a deleted
//! tail, a tail rewritten and re-hashed, a checkpoint deleted or relabelled. Each is found by
//! `mandate audit verify` and by `GET /v1/admin/audit/verify`, and never signed over.

use mandate::clock::Clock;
use mandate::server::audit::{as_new, chain_hash};
use reqwest::Method;
use serde_json::Value;

use crate::audit_trail::{
    audit_verify_command, audit_verify_with, rewrite_and_rehash, server_ring, start_checkpoint,
    tamper, verify,
};
use crate::both_stores;
use crate::helpers::fixtures::seed;
use crate::helpers::{Backend, TestApp};

/// A byte string as a SQL literal of `backend`.
fn bytes(backend: Backend, b: &[u8]) -> String {
    match backend {
        Backend::Postgres => format!("'\\x{}'::bytea", hex::encode(b)),
        Backend::Sqlite => format!("X'{}'", hex::encode(b)),
    }
}

/// Appends, with a plain INSERT (which the application's role may do), an event claiming the
/// bootstrap admin revoked a mandate, chained with a correctly computed hash. Returns its seq.
async fn fabricate(app: &TestApp, backend: Backend) -> i64 {
    let last = app
        .store
        .audit_events(0, 100_000)
        .await
        .unwrap()
        .pop()
        .unwrap();
    let id = uuid::Uuid::now_v7();
    let mut event = as_new(&last);
    event.id = id;
    event.actor = "admin:bootstrap".to_owned();
    event.action = "mandate.revoked".to_owned();
    let seq = last.seq + 1;
    let hash = chain_hash(&hex::decode(&last.hash).unwrap(), seq, &event);
    let id = match backend {
        Backend::Postgres => format!("'{id}'::uuid"),
        Backend::Sqlite => format!("X'{}'", hex::encode(id.as_bytes())),
    };
    let insert = format!(
        "INSERT INTO audit_events (seq, id, occurred_at, actor, action, target, outcome, details, \
         prev_hash, hash) SELECT seq + 1, {id}, occurred_at, 'admin:bootstrap', \
         'mandate.revoked', target, outcome, details, hash, {} FROM audit_events WHERE seq = {}",
        bytes(backend, &hash),
        last.seq
    );
    tamper(app, backend, false, &[insert.as_str()])
        .await
        .unwrap();
    seq
}

/// Walks the chain as the replica's periodic task does, now.
async fn walk(app: &TestApp) -> Result<(), String> {
    let ring = server_ring(app);
    app.state
        .audit
        .walk(app.store.as_ref(), &ring, app.clock.now())
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// `mandate audit verify` (on the SQLite store in the data directory) exits non-zero, naming
/// event `seq` as forged.
fn the_command_finds_forged(app: &TestApp, seq: i64) {
    let out = audit_verify_command(app);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("altered at event {seq}")) && stderr.contains("forged"),
        "{stderr}"
    );
}

fn reason(report: &Value) -> &str {
    report["first_bad"]["reason"].as_str().unwrap_or_default()
}

both_stores!(
    an_appended_event_with_a_correct_hash_but_no_mac_is_forged_and_never_signed,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        start_checkpoint(&app).await;
        seed(&app).await;
        walk(&app).await.unwrap();
        let forged = fabricate(&app, backend).await;

        let report = verify(&app).await;
        assert_eq!(report["intact"], false, "{report}");
        assert_eq!(report["first_bad"]["seq"], forged, "{report}");
        assert!(reason(&report).contains("forged"), "{report}");

        // The replica's walk refuses it, says so everywhere, and signs nothing over it.
        let refused = walk(&app).await.unwrap_err();
        assert!(
            refused.contains(&format!("broken at event {forged}")),
            "{refused}"
        );
        let report = verify(&app).await;
        assert_eq!(report["replica"]["broken_at"], forged, "{report}");
        assert_eq!(report["replica"]["verified_seq"], forged - 1, "{report}");
        let ready: Value = app.get("/readyz").await.json().await.unwrap();
        assert_eq!(ready["audit"]["broken_at"], forged, "{ready}");
        let before = app.store.audit_checkpoints().await.unwrap().len();
        let ring = server_ring(&app);
        assert!(
            mandate::server::audit::checkpoint(app.store.as_ref(), &ring, app.clock.now())
                .await
                .is_err()
        );
        assert_eq!(app.store.audit_checkpoints().await.unwrap().len(), before);

        if backend == Backend::Sqlite {
            the_command_finds_forged(&app, forged);
        }
    }
);

both_stores!(
    a_tail_rewritten_and_rehashed_after_the_last_checkpoint_is_forged,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        start_checkpoint(&app).await;
        seed(&app).await;
        let head = app.store.audit_head().await.unwrap().unwrap().0;
        rewrite_and_rehash(&app, backend, head - 1).await;
        let report = verify(&app).await;
        assert_eq!(report["intact"], false, "{report}");
        assert_eq!(report["first_bad"]["seq"], head - 1, "{report}");
        assert!(reason(&report).contains("forged"), "{report}");
        assert!(walk(&app).await.unwrap_err().contains("forged"));
        if backend == Backend::Sqlite {
            the_command_finds_forged(&app, head - 1);
        }
    }
);

both_stores!(
    a_tail_deleted_after_a_replica_verified_it_shows_in_the_endpoint_readyz_and_metrics,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        start_checkpoint(&app).await;
        seed(&app).await;
        walk(&app).await.unwrap();
        let head = app.store.audit_head().await.unwrap().unwrap().0;
        let cut = format!("DELETE FROM audit_events WHERE seq >= {}", head - 1);
        tamper(&app, backend, true, &[cut.as_str()]).await.unwrap();
        // What is left is a shorter chain, every event authentic: only the replica that
        // verified the tail knows it was there.
        assert!(walk(&app).await.is_err());
        let report = verify(&app).await;
        assert_eq!(report["intact"], false, "{report}");
        assert_eq!(report["replica"]["broken_at"], head, "{report}");
        let ready: Value = app.get("/readyz").await.json().await.unwrap();
        assert_eq!(ready["audit"]["broken_at"], head, "{ready}");
        app.state.metrics.audit_walked(&app.state.audit.status());
        let metrics = app.get("/metrics").await.text().await.unwrap();
        assert!(
            metrics.contains(&format!("mandate_audit_broken_at {head}")),
            "{metrics}"
        );
        let (status, _) = app.admin(Method::GET, "/v1/admin/audit/verify", None).await;
        assert_eq!(status, 200);
    }
);

#[tokio::test]
async fn a_checkpoint_deleted_or_relabelled_is_found_against_the_exported_witness() {
    let backend = Backend::Sqlite;
    let app = TestApp::spawn(backend).await;
    start_checkpoint(&app).await;
    seed(&app).await;
    let ring = server_ring(&app);
    mandate::server::audit::checkpoint(app.store.as_ref(), &ring, app.clock.now())
        .await
        .unwrap()
        .unwrap();
    let witness = app.db.data_dir().join("witness.jsonl");
    let export = |app: &TestApp| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mandate"))
            .args(["audit", "checkpoints", "export", "--out"])
            .arg(&witness)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("MANDATE_DATA_DIR", app.db.data_dir())
            .env("MANDATE_LOG", "error")
            .output()
            .unwrap()
    };
    let out = export(&app);
    assert!(out.status.success(), "{out:?}");
    let lines = std::fs::read_to_string(&witness).unwrap();
    let exported = app.store.audit_checkpoints().await.unwrap();
    assert_eq!(lines.lines().count(), exported.len());
    // Incremental: a second export appends nothing new.
    assert!(export(&app).status.success());
    assert_eq!(std::fs::read_to_string(&witness).unwrap(), lines);
    let verify_witness = |app: &TestApp| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mandate"))
            .args(["audit", "verify", "--witness"])
            .arg(&witness)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("MANDATE_DATA_DIR", app.db.data_dir())
            .env("MANDATE_LOG", "error")
            .output()
            .unwrap()
    };
    let intact = verify_witness(&app);
    assert!(
        intact.status.success(),
        "{}",
        String::from_utf8_lossy(&intact.stderr)
    );

    // Relabelled with a kid the verifier does not load: passed over by the database check
    // alone, found against the witness.
    let last = exported.last().unwrap().seq;
    let relabel = [
        "DROP TRIGGER IF EXISTS audit_checkpoints_no_update".to_owned(),
        format!("UPDATE audit_checkpoints SET kid = 9 WHERE seq = {last}"),
    ];
    let relabel: Vec<&str> = relabel.iter().map(String::as_str).collect();
    tamper(&app, backend, true, &relabel).await.unwrap();
    assert!(
        audit_verify_with(&app, &[]).status.success(),
        "passed over without the witness"
    );
    let out = verify_witness(&app);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("altered at event {last}")) && stderr.contains("relabelled"),
        "{stderr}"
    );

    // Deleted outright.
    let delete = [
        "DROP TRIGGER IF EXISTS audit_checkpoints_no_delete".to_owned(),
        format!("DELETE FROM audit_checkpoints WHERE seq = {last}"),
    ];
    let delete: Vec<&str> = delete.iter().map(String::as_str).collect();
    tamper(&app, backend, true, &delete).await.unwrap();
    let out = verify_witness(&app);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("deleted"), "{stderr}");
}

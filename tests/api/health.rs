//! Probes, the keys endpoint and the behaviour every endpoint shares (problem+json, request ids,
//! body limit), on both stores.

use mandate::server::keys::{dev_key_path, load_key_file};
use mandate::token::keys::{format_public_key, KeyStatus, KeysDocument};

use crate::both_stores;
use crate::helpers::{assert_problem, test_epoch, TestApp};

both_stores!(
    healthz_answers_ok_while_the_process_lives,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let response = app.get("/healthz").await;
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body, serde_json::json!({"status": "ok"}));
    }
);

both_stores!(
    readyz_names_the_store_and_the_signing_key,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let response = app.get("/readyz").await;
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        let store = match backend {
            crate::helpers::Backend::Postgres => "postgres",
            crate::helpers::Backend::Sqlite => "sqlite",
        };
        assert_eq!(
            (&body["status"], &body["store"], &body["active_kid"]),
            (
                &serde_json::json!("ready"),
                &serde_json::json!(store),
                &serde_json::json!(1)
            ),
            "{body}"
        );
        // What this replica's walk of the audit chain found: intact so far.
        assert!(body["audit"]["verified_seq"].is_i64(), "{body}");
        assert!(body["audit"].get("broken_at").is_none(), "{body}");
    }
);

both_stores!(
    readyz_answers_503_when_the_store_is_gone,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        app.store.close().await;
        let problem = assert_problem(app.get("/readyz").await, 503).await;
        assert_eq!(problem["detail"], "the store does not answer");
        // Liveness does not depend on the store.
        assert_eq!(app.get("/healthz").await.status(), 200);
    }
);

both_stores!(
    the_keys_endpoint_publishes_the_dev_key_as_active,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let response = app.get("/.well-known/mandate-keys").await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["cache-control"].to_str().unwrap(),
            "public, max-age=300"
        );
        let doc: KeysDocument = response.json().await.unwrap();
        let on_disk = load_key_file(&dev_key_path(app.db.data_dir())).unwrap();
        assert_eq!(doc.keys.len(), 1);
        let key = &doc.keys[0];
        assert_eq!(key.kid, 1);
        assert_eq!(key.algorithm, "ed25519");
        assert_eq!(key.status, KeyStatus::Active);
        assert_eq!(key.public_key, format_public_key(&on_disk.public()));
        assert_eq!(key.created_at, test_epoch());
        assert_eq!(doc.key_set().unwrap()[&1], on_disk.public());
    }
);

both_stores!(unknown_paths_get_a_problem_document, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let problem = assert_problem(app.get("/v1/nothing-here").await, 404).await;
    assert_eq!(problem["type"], "urn:mandate:problem:not-found");
});

both_stores!(a_wrong_method_gets_405_with_allow, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let response = app.client.delete(app.url("/healthz")).send().await.unwrap();
    let allow = response.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET"), "{allow}");
    assert_problem(response, 405).await;
});

both_stores!(a_body_over_the_limit_gets_413, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let response = app
        .client
        .post(app.url("/healthz"))
        .body(vec![b'a'; 64 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_problem(response, 413).await;
});

both_stores!(every_response_carries_a_request_id, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let generated = app.get("/healthz").await;
    let id = generated.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let given = app
        .client
        .get(app.url("/nope"))
        .header("x-request-id", "req-42")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "req-42");
});

both_stores!(a_graceful_stop_finishes_cleanly, |backend| async move {
    let app = TestApp::spawn(backend).await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    let base = app.base.clone();
    app.stop().await;
    assert!(reqwest::get(format!("{base}/healthz")).await.is_err());
});

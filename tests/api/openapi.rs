//! The committed `openapi/openapi.json` is the served description, byte for byte.
//! Regenerate it with `cargo run -- openapi > openapi/openapi.json`.

use crate::helpers::{Backend, TestApp};

#[test]
fn the_committed_openapi_file_matches_the_code() {
    let generated = mandate::server::api::openapi().to_pretty_json().unwrap();
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
            .unwrap_or_default();
    assert!(
        generated.trim() == committed.trim(),
        "openapi/openapi.json is stale: run `cargo run -- openapi > openapi/openapi.json`"
    );
}

#[tokio::test]
async fn the_server_serves_the_same_description() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let served: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    let code = serde_json::to_value(mandate::server::api::openapi()).unwrap();
    assert_eq!(served, code);
    for path in ["/healthz", "/readyz", "/.well-known/mandate-keys"] {
        assert!(served["paths"][path].is_object(), "{path} is documented");
    }
}

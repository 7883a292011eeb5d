//! The example downstream service (examples/downstream/app.rs), served for tests.

use std::sync::Arc;

use mandate::verifier::Verifier;

#[path = "../../../examples/downstream/app.rs"]
pub mod app;

/// Starts the example service on 127.0.0.1:0 and returns its base URL.
pub async fn start_downstream(
    verifier: Arc<Verifier>,
    receipts: Option<mandate::verifier::receipts::ReceiptSender>,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let public_url = base.clone();
    tokio::spawn(async move {
        let router = app::router(verifier, receipts, &public_url);
        axum::serve(listener, router).await.unwrap();
    });
    base
}

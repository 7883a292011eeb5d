//! An example downstream API that verifies mandates offline, following mandate's revocation
//! feed: a revoked mandate is refused within seconds, and once the copy of the feed is staler
//! than 30 s (mandate unreachable) every call is refused until it syncs again.
//!
//! ```sh
//! DOWNSTREAM_MANDATE_URL=http://127.0.0.1:8080 DOWNSTREAM_REPORTER_SECRET=mnd_rep_… \
//!   cargo run --example downstream   # listens on 127.0.0.1:9090
//! curl -H "Authorization: Bearer $MANDATE_TOKEN" http://127.0.0.1:9090/tickets
//! ```
//!
//! A mandate bound to a key goes as `Authorization: DPoP` with a proof for each call
//! (`mandate token proof --key holder.jwk --method GET --url http://127.0.0.1:9090/tickets`).

mod app;

use std::sync::Arc;
use std::time::Duration;

use mandate::clock::SystemClock;
use mandate::verifier::receipts::ReceiptSender;
use mandate::verifier::revocations::{RevocationSync, SyncSettings};
use mandate::verifier::{Verifier, VerifierSettings};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base =
        std::env::var("DOWNSTREAM_MANDATE_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    // Calls are reported when this service is registered as a reporter (its credential here).
    let receipts = std::env::var("DOWNSTREAM_REPORTER_SECRET")
        .ok()
        .map(|credential| ReceiptSender::spawn(base.clone(), credential, Duration::from_secs(1)));
    if receipts.is_none() {
        println!("DOWNSTREAM_REPORTER_SECRET is not set: calls are not reported to mandate");
    }
    let clock: mandate::clock::SharedClock = Arc::new(SystemClock);
    // The feed: caught up now, then followed (the stream, polling behind it).
    let revocations = RevocationSync::new(SyncSettings::new(base.clone()), clock.clone())?;
    revocations.sync_once().await?;
    let _follower = revocations.spawn();
    let verifier = Verifier::new(VerifierSettings::new(base), revocations, clock)?;
    // Keys are fetched once now; verification needs no call to mandate afterwards.
    verifier.refresh().await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:9090").await?;
    let public_url = format!("http://{}", listener.local_addr()?);
    println!("downstream example on {public_url}");
    let router = app::router(Arc::new(verifier), receipts, &public_url);
    axum::serve(listener, router).await?;
    Ok(())
}

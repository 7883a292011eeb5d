//! The verifier's revocation feed client against a feed that answers anything: the polling page
//! (`GET /v1/revocations`) or the event stream (`GET /v1/revocations/stream`) is the fuzz input,
//! served over HTTP. The client ends every sync (no endless re-fetching), never panics, and holds
//! only entries the body states.
#![no_main]

use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use mandate::clock::{ManualClock, SharedClock};
use mandate::verifier::revocations::{RevocationSync, SyncSettings};
use mandate_fuzz as fixture;

struct World {
    runtime: tokio::runtime::Runtime,
    base_url: String,
    /// One client for every run: a fresh sync per input, without a fresh connection pool.
    http: reqwest::Client,
    /// What the feed answers next, and how many requests it has had.
    feed: Arc<Mutex<(Vec<u8>, usize)>>,
}

fn answer(feed: &Mutex<(Vec<u8>, usize)>) -> Vec<u8> {
    let mut feed = feed.lock().unwrap_or_else(PoisonError::into_inner);
    feed.1 += 1;
    feed.0.clone()
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let runtime = fixture::runtime();
    let feed: Arc<Mutex<(Vec<u8>, usize)>> = Arc::default();
    let (page, stream) = (feed.clone(), feed.clone());
    let app = axum::Router::new()
        .route(
            "/v1/revocations",
            axum::routing::get(move || {
                let body = answer(&page);
                async move { ([("content-type", "application/json")], body) }
            }),
        )
        .route(
            "/v1/revocations/stream",
            axum::routing::get(move || {
                let body = answer(&stream);
                async move { ([("content-type", "text/event-stream")], body) }
            }),
        );
    let base_url = fixture::serve(&runtime, app);
    World {
        runtime,
        base_url,
        http: reqwest::Client::new(),
        feed,
    }
});

fuzz_target!(|data: &[u8]| {
    let world = &*WORLD;
    let Some((mode, body)) = data.split_first() else {
        return;
    };
    *world.feed.lock().unwrap_or_else(PoisonError::into_inner) = (body.to_vec(), 0);
    let now = Utc
        .timestamp_opt(1_800_000_000, 0)
        .single()
        .unwrap_or_default();
    let clock: SharedClock = Arc::new(ManualClock::new(now));
    let settings = SyncSettings::new(world.base_url.clone());
    let sync = RevocationSync::with_client(settings, clock, world.http.clone());
    let ended = world.runtime.block_on(async {
        let run = async {
            if mode % 2 == 0 {
                sync.sync_once().await.map(|_| ())
            } else {
                sync.follow().await
            }
        };
        tokio::time::timeout(Duration::from_secs(5), run).await
    });
    assert!(ended.is_ok(), "a sync did not end");
    let requests = world.feed.lock().unwrap_or_else(PoisonError::into_inner).1;
    assert!(requests <= 2, "the same feed was asked {requests} times");
    // Held entries come from the body: an entry takes more than 40 bytes to state.
    let entries = sync.status().entries;
    assert!(
        entries <= body.len() / 40,
        "{entries} entries from {} bytes",
        body.len()
    );
});

//! Keeping a verifier's copy of the revocation feed: catch up by polling
//! `GET /v1/revocations`, then follow `GET /v1/revocations/stream` (falling back to polling when
//! the stream drops). Entries live in a hash set until their mandate expires, plus the largest
//! clock skew a verifier tolerates on expiry ([`crate::token::verify::MAX_SKEW_SECONDS`]), plus a second: a verifier
//! accepts a token that long past its expiry (compared in whole seconds), so its revocation
//! must stay known that long. A page or event that cannot be read is a failed sync. A copy that has
//! not synced for longer than `max_staleness` fails closed: every verification is refused, with
//! the reason, until a sync succeeds again.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};

use super::{FetchError, RevocationCheck};
use crate::clock::SharedClock;
use crate::token::verify::KEEP_REVOKED_SECONDS;

/// How the copy is kept.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// mandate's base URL.
    pub base_url: String,
    /// Longer than this without a successful sync, verification fails closed.
    pub max_staleness: Duration,
    /// How often to poll when the stream is down.
    pub poll_interval: Duration,
    /// A registered reporter's credential (`mnd_rep_…`), sent with the stream: it is then
    /// counted against this reporter's own streams rather than its address's.
    pub credential: Option<String>,
}

impl SyncSettings {
    /// Defaults: stale after 30 s, poll every 5 s.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            max_staleness: Duration::from_secs(30),
            poll_interval: Duration::from_secs(5),
            credential: None,
        }
    }
}

/// A feed entry as mandate publishes it.
#[derive(Debug, Clone, Deserialize)]
struct Entry {
    seq: i64,
    revocation_id: String,
    expires_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
struct Page {
    items: Vec<Entry>,
    next_after: i64,
}

#[derive(Default)]
struct State {
    revoked: HashMap<Vec<u8>, DateTime<Utc>>,
    cursor: i64,
    last_success: Option<Instant>,
}

/// The state of the copy, for health checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// The last feed position applied.
    pub cursor: i64,
    /// Revoked ids held (only unexpired ones).
    pub entries: usize,
    /// Milliseconds since the last successful sync, if any.
    pub since_last_sync_ms: Option<u128>,
    /// Whether verification currently fails closed.
    pub stale: bool,
}

/// A verifier's copy of the revocation feed.
pub struct RevocationSync {
    settings: SyncSettings,
    http: reqwest::Client,
    state: RwLock<State>,
    clock: SharedClock,
}

impl RevocationSync {
    /// An empty copy: stale until its first successful sync.
    pub fn new(settings: SyncSettings, clock: SharedClock) -> Result<Arc<Self>, FetchError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| FetchError::Http {
                url: settings.base_url.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self::with_client(settings, clock, http))
    }

    /// An empty copy that fetches with the host's own HTTP client (its pool, proxy and TLS
    /// settings). Polls still time out after 10 s, and a stream silent for 15 s is dropped.
    pub fn with_client(
        settings: SyncSettings,
        clock: SharedClock,
        http: reqwest::Client,
    ) -> Arc<Self> {
        let sync = Arc::new(Self {
            settings,
            http,
            state: RwLock::new(State::default()),
            clock,
        });
        report_lag(&sync);
        sync
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.settings.base_url.trim_end_matches('/'))
    }

    /// Adds entries past the cursor and drops those whose mandates can no longer be used: a
    /// verifier accepts a token until the whole second after its expiry plus the largest skew,
    /// so an entry is kept one second beyond that. A page or event with an entry that cannot
    /// be read is refused whole, and the cursor stays before it, so the next poll reads it
    /// again rather than skipping a revocation.
    fn apply(&self, entries: &[Entry]) -> Result<(), String> {
        let ids = entries
            .iter()
            .map(|entry| {
                hex::decode(&entry.revocation_id)
                    .map_err(|_| format!("entry {} has no hex revocation id", entry.seq))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let now = self.clock.now() - chrono::Duration::seconds(KEEP_REVOKED_SECONDS);
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        for (entry, id) in entries.iter().zip(ids) {
            if entry.expires_at > now {
                state.revoked.insert(id, entry.expires_at);
            }
            state.cursor = state.cursor.max(entry.seq);
        }
        state.revoked.retain(|_, expires| *expires > now);
        Ok(())
    }

    fn succeeded(&self) {
        self.state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .last_success = Some(self.clock.instant());
    }

    /// Polls the feed until it is exhausted; returns how many entries were read.
    pub async fn sync_once(&self) -> Result<usize, FetchError> {
        let mut read = 0;
        loop {
            let cursor = self.status().cursor;
            let url = self.url(&format!("/v1/revocations?after={cursor}&limit=1000"));
            let http = |reason: String| FetchError::Http {
                url: url.clone(),
                reason,
            };
            let response = self
                .http
                .get(&url)
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .map_err(|e| http(e.to_string()))?;
            if !response.status().is_success() {
                return Err(http(format!("answered {}", response.status())));
            }
            let page: Page = response.json().await.map_err(|e| FetchError::Document {
                url: url.clone(),
                reason: e.to_string(),
            })?;
            read += page.items.len();
            self.apply(&page.items)
                .map_err(|reason| FetchError::Document {
                    url: url.clone(),
                    reason,
                })?;
            // Done when the feed is exhausted, or when a page moves the cursor nowhere (a feed
            // that did would otherwise be asked for the same page forever).
            let done = page.items.is_empty()
                || page.next_after <= cursor
                || self.status().cursor <= cursor;
            if done {
                self.succeeded();
                return Ok(read);
            }
        }
    }

    /// Follows the stream until it ends (which is always an error: the stream is endless);
    /// every complete event or keep-alive counts as a sync. [`RevocationSync::spawn`] calls this after
    /// each successful poll.
    pub async fn follow(&self) -> Result<(), FetchError> {
        let cursor = self.status().cursor;
        let url = self.url(&format!("/v1/revocations/stream?after={cursor}"));
        let http = |reason: String| FetchError::Http {
            url: url.clone(),
            reason,
        };
        let mut request = self.http.get(&url);
        if let Some(credential) = &self.settings.credential {
            request = request.bearer_auth(credential);
        }
        let response = request.send().await.map_err(|e| http(e.to_string()))?;
        if !response.status().is_success() {
            return Err(http(format!("answered {}", response.status())));
        }
        let mut body = response.bytes_stream();
        let mut events = EventReader::default();
        // mandate sends a keep-alive every 5 s: a silent connection is a dead one.
        while let Some(chunk) = tokio::time::timeout(Duration::from_secs(15), body.next())
            .await
            .map_err(|_| http("no keep-alive for 15 s".to_owned()))?
        {
            let chunk = chunk.map_err(|e| http(e.to_string()))?;
            for data in events.feed(&chunk).map_err(|e| http(e.to_owned()))? {
                // A keep-alive is an event without data. An event that cannot be read ends
                // the stream: the poll that follows reads the feed again from the last entry
                // applied.
                if !data.is_empty() {
                    let entry: Entry = serde_json::from_str(&data)
                        .map_err(|e| http(format!("an event that is not a feed entry: {e}")))?;
                    self.apply(std::slice::from_ref(&entry)).map_err(http)?;
                }
                self.succeeded();
            }
        }
        Err(http("the stream ended".to_owned()))
    }

    /// Keeps the copy in sync until the task is dropped: poll to catch up, follow the stream,
    /// and poll again every `poll_interval` while the stream is down.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let sync = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                match sync.sync_once().await {
                    Ok(_) => {
                        if let Err(error) = sync.follow().await {
                            tracing::debug!(%error, "revocation stream interrupted");
                        }
                    }
                    Err(error) => tracing::warn!(%error, "cannot sync revocations"),
                }
                tokio::time::sleep(sync.settings.poll_interval).await;
            }
        })
    }

    /// The state of the copy.
    pub fn status(&self) -> SyncStatus {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let now = self.clock.instant();
        let since = state
            .last_success
            .map(|at| now.saturating_duration_since(at));
        SyncStatus {
            cursor: state.cursor,
            entries: state.revoked.len(),
            since_last_sync_ms: since.map(|d| d.as_millis()),
            stale: since.is_none_or(|d| d > self.settings.max_staleness),
        }
    }
}

/// Most bytes of one line, or of one event's data, read from the stream.
const MAX_EVENT_BYTES: usize = 1 << 20;

/// Reads Server-Sent Events from the stream's bytes as the WHATWG parser does: a line ends with
/// CRLF, LF or CR (whatever a proxy rewrote them to, and wherever the chunks split), `data:`
/// lines are joined with LF, a blank line ends an event, and other fields and comments carry
/// nothing the copy needs.
#[derive(Debug, Default)]
struct EventReader {
    line: Vec<u8>,
    data: String,
    /// The last byte was a CR: an LF right after it ends no second line.
    after_cr: bool,
}

impl EventReader {
    /// Reads `bytes`; the data of every event they complete (empty for a keep-alive).
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<String>, &'static str> {
        let mut events = Vec::new();
        for &byte in bytes {
            if std::mem::take(&mut self.after_cr) && byte == b'\n' {
                continue;
            }
            match byte {
                b'\r' | b'\n' => {
                    self.after_cr = byte == b'\r';
                    if let Some(event) = self.end_line()? {
                        events.push(event);
                    }
                }
                _ if self.line.len() >= MAX_EVENT_BYTES => {
                    return Err("a line longer than 1 MiB");
                }
                _ => self.line.push(byte),
            }
        }
        Ok(events)
    }

    fn end_line(&mut self) -> Result<Option<String>, &'static str> {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            return Ok(Some(std::mem::take(&mut self.data)));
        }
        let line = String::from_utf8(line).map_err(|_| "a line that is not UTF-8")?;
        if let Some(value) = line.strip_prefix("data:") {
            let value = value.strip_prefix(' ').unwrap_or(value);
            if self.data.len() + value.len() >= MAX_EVENT_BYTES {
                return Err("an event larger than 1 MiB");
            }
            if !self.data.is_empty() {
                self.data.push('\n');
            }
            self.data.push_str(value);
        }
        Ok(None)
    }
}

/// Reports the copy's sync lag as the gauge `mandate.verifier.sync.lag` (seconds since the last
/// successful sync, labelled with the feed's base URL) through the global meter provider, the
/// one the downstream service installs; without one, nothing is recorded.
fn report_lag(sync: &Arc<RevocationSync>) {
    let weak = Arc::downgrade(sync);
    let feed = opentelemetry::KeyValue::new("feed", sync.settings.base_url.clone());
    opentelemetry::global::meter("mandate.verifier")
        .f64_observable_gauge("mandate.verifier.sync.lag")
        .with_unit("s")
        .with_description("Seconds since the revocation copy last synced")
        .with_callback(move |gauge| {
            let Some(sync) = weak.upgrade() else { return };
            let last = sync
                .state
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .last_success;
            if let Some(last) = last {
                let lag = sync.clock.instant().saturating_duration_since(last);
                gauge.observe(lag.as_secs_f64(), std::slice::from_ref(&feed));
            }
        })
        .build();
}

impl RevocationCheck for RevocationSync {
    fn is_revoked(&self, id: &[u8]) -> bool {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .revoked
            .contains_key(id)
    }

    fn fresh(&self) -> Result<(), String> {
        let status = self.status();
        if status.stale {
            Err(match status.since_last_sync_ms {
                Some(ms) => format!(
                    "the revocation list was last synced {ms} ms ago, longer than the {} ms allowed",
                    self.settings.max_staleness.as_millis()
                ),
                None => "the revocation list has never been synced".to_owned(),
            })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::EventReader;

    #[test]
    fn events_end_with_any_line_ending_wherever_the_chunks_split() {
        let stream = ": keep-alive\r\n\r\nevent: revocation\rid: 7\rdata: {\"a\":\r\ndata: 1}\r\r\ndata: x\n\n";
        for split in 0..stream.len() {
            let mut reader = EventReader::default();
            let (head, tail) = stream.as_bytes().split_at(split);
            let mut events = reader.feed(head).unwrap();
            events.extend(reader.feed(tail).unwrap());
            assert_eq!(events, ["", "{\"a\":\n1}", "x"], "split at {split}");
        }
    }

    #[test]
    fn a_line_or_an_event_over_1_mib_is_refused() {
        let mut reader = EventReader::default();
        assert!(reader.feed(&vec![b'a'; (1 << 20) + 1]).is_err());
        let mut reader = EventReader::default();
        let line = format!("data: {}\n", "b".repeat(600 * 1024));
        assert!(reader.feed(line.as_bytes()).is_ok());
        assert!(reader.feed(line.as_bytes()).is_err());
    }
}

//! Talking to the MCP servers behind the gateway: Streamable HTTP (answers read whole, JSON or
//! server-sent events, so they can be scanned before delivery) and stdio (one spawned process
//! per MCP session, bound to the mandate that opened it).

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::clock::SharedClock;

/// Request headers passed to an HTTP upstream (never `Authorization`, cookies or `Host`).
const PASSED_UP: [&str; 6] = [
    "content-type",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
];
/// Response headers passed back to the client.
pub const PASSED_DOWN: [&str; 3] = ["content-type", "mcp-session-id", "mcp-protocol-version"];

/// An upstream's answer, read whole.
#[derive(Debug)]
pub struct Answer {
    /// Its status.
    pub status: StatusCode,
    /// The headers passed back.
    pub headers: Vec<(HeaderName, String)>,
    /// Its body.
    pub body: Body,
}

/// An answer's body.
#[derive(Debug)]
pub enum Body {
    /// None (202 to a notification, say).
    Empty,
    /// One JSON-RPC message.
    Message(Value),
    /// Server-sent events, each with its JSON-RPC message (`None`: not JSON, dropped).
    Events(Vec<Event>),
    /// Something else (an error page): passed as text, scanned as a string.
    Text(String),
}

/// One server-sent event.
#[derive(Debug)]
pub struct Event {
    /// `id:`, if any.
    pub id: Option<String>,
    /// The message in `data:`.
    pub message: Option<Value>,
}

/// Why an upstream could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UpstreamError(pub String);

/// How much of an upstream's answer is read, and how long it may take.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Largest answer read.
    pub max_bytes: usize,
    /// Longest wait for it.
    pub timeout: Duration,
}

/// Sends `body` to `url` with the passed headers of `headers` and `extra`, and reads the
/// answer whole, within `bounds`.
pub async fn post(
    http: &reqwest::Client,
    url: &str,
    method: reqwest::Method,
    headers: &HeaderMap,
    extra: &[(&str, String)],
    body: Vec<u8>,
    bounds: Bounds,
) -> Result<Answer, UpstreamError> {
    let Bounds { max_bytes, timeout } = bounds;
    let mut request = http.request(method, url).timeout(timeout).body(body);
    for name in PASSED_UP {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value.as_bytes());
        }
    }
    for (name, value) in headers {
        if name.as_str().starts_with("mcp-param-") {
            request = request.header(name, value.as_bytes());
        }
    }
    for (name, value) in extra {
        request = request.header(*name, value.as_str());
    }
    let response = request
        .send()
        .await
        .map_err(|e| UpstreamError(format!("the upstream is unreachable: {}", without_url(&e))))?;
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let passed: Vec<(HeaderName, String)> = PASSED_DOWN
        .iter()
        .filter_map(|name| {
            let value = response.headers().get(*name)?.to_str().ok()?.to_owned();
            Some((HeaderName::from_static(name), value))
        })
        .collect();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let bytes = read_bounded(response, max_bytes).await?;
    let body = if bytes.is_empty() {
        Body::Empty
    } else if content_type.starts_with("text/event-stream") {
        Body::Events(events(&String::from_utf8_lossy(&bytes)))
    } else if content_type.starts_with("application/json") {
        match serde_json::from_slice(&bytes) {
            Ok(message) => Body::Message(message),
            Err(_) => Body::Text(String::from_utf8_lossy(&bytes).into_owned()),
        }
    } else {
        Body::Text(String::from_utf8_lossy(&bytes).into_owned())
    };
    Ok(Answer {
        status,
        headers: passed,
        body,
    })
}

/// A reqwest error without the URL (which may carry credentials of the upstream).
fn without_url(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "connection refused".to_owned()
    } else {
        "request failed".to_owned()
    }
}

async fn read_bounded(
    mut response: reqwest::Response,
    max_bytes: usize,
) -> Result<Vec<u8>, UpstreamError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        UpstreamError(format!(
            "the upstream's answer broke off: {}",
            without_url(&e)
        ))
    })? {
        if bytes.len() + chunk.len() > max_bytes {
            return Err(UpstreamError(format!(
                "the upstream's answer is larger than {max_bytes} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Parses server-sent events (WHATWG HTML §9.2): events end at a blank line; `data:` lines
/// join with newlines.
pub fn events(text: &str) -> Vec<Event> {
    let mut found = Vec::new();
    let mut data: Vec<&str> = Vec::new();
    let mut id: Option<String> = None;
    let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
    for line in normalized.split('\n').chain(std::iter::once("")) {
        if line.is_empty() {
            if !data.is_empty() {
                found.push(Event {
                    id: id.take(),
                    message: serde_json::from_str(&data.join("\n")).ok(),
                });
                data.clear();
            }
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "data" => data.push(value),
            "id" => id = Some(value.to_owned()),
            _ => {}
        }
    }
    found
}

/// Writes events back as `text/event-stream`.
pub fn write_events(events: &[Event]) -> String {
    let mut out = String::new();
    for event in events {
        let Some(message) = &event.message else {
            continue;
        };
        out.push_str("event: message\n");
        if let Some(id) = &event.id {
            let id: String = id.chars().filter(|c| !c.is_control()).collect();
            out.push_str(&format!("id: {id}\n"));
        }
        out.push_str(&format!("data: {message}\n\n"));
    }
    out
}

/// Most stdio sessions open at once.
pub const MAX_STDIO_SESSIONS: usize = 64;
/// A stdio session unused this long is closed.
pub const STDIO_IDLE: Duration = Duration::from_secs(600);

/// One spawned MCP server, speaking newline-delimited JSON-RPC on stdio.
struct StdioSession {
    mandate_id: String,
    io: tokio::sync::Mutex<(ChildStdin, BufReader<ChildStdout>)>,
    child: Mutex<Child>,
    last_used: Mutex<Instant>,
}

/// The open stdio sessions of one route.
pub struct StdioSessions {
    command: Vec<String>,
    clock: SharedClock,
    sessions: Mutex<HashMap<String, Arc<StdioSession>>>,
}

impl std::fmt::Debug for StdioSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdioSessions")
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

/// Environment variables a spawned server keeps; everything else (the gateway's credential
/// included) is cleared.
const KEPT_ENV: [&str; 6] = ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH"];

impl StdioSessions {
    /// Sessions running `command`.
    pub fn new(command: Vec<String>, clock: SharedClock) -> Self {
        Self {
            command,
            clock,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<StdioSession>>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Spawns a server for a new session of `mandate_id`; returns the session id.
    pub fn open(&self, mandate_id: &str) -> Result<String, UpstreamError> {
        self.close_idle();
        if self.lock().len() >= MAX_STDIO_SESSIONS {
            return Err(UpstreamError(
                "too many open sessions on this route; end one first".into(),
            ));
        }
        let mut command = tokio::process::Command::new(&self.command[0]);
        command
            .args(&self.command[1..])
            .env_clear()
            .envs(
                KEPT_ENV
                    .iter()
                    .filter_map(|k| Some((k, std::env::var(k).ok()?))),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| UpstreamError(format!("cannot start the upstream: {}", e.kind())))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(UpstreamError("cannot talk to the upstream".into()));
        };
        let id = uuid::Uuid::new_v4().simple().to_string();
        let session = StdioSession {
            mandate_id: mandate_id.to_owned(),
            io: tokio::sync::Mutex::new((stdin, BufReader::new(stdout))),
            child: Mutex::new(child),
            last_used: Mutex::new(self.clock.instant()),
        };
        self.lock().insert(id.clone(), Arc::new(session));
        Ok(id)
    }

    /// Ends a session (its process is killed).
    pub fn close(&self, id: &str, mandate_id: &str) -> bool {
        let mut sessions = self.lock();
        match sessions.get(id) {
            Some(s) if s.mandate_id == mandate_id => {
                if let Some(session) = sessions.remove(id) {
                    let _ = session
                        .child
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .start_kill();
                }
                true
            }
            _ => false,
        }
    }

    fn close_idle(&self) {
        let now = self.clock.instant();
        self.lock().retain(|_, s| {
            let last = *s.last_used.lock().unwrap_or_else(PoisonError::into_inner);
            now.saturating_duration_since(last) < STDIO_IDLE
        });
    }

    /// Sends `message` in session `id` (opened by `mandate_id`); for a request, waits for the
    /// answer with its id (messages the server sends meanwhile are dropped). `None`: no such
    /// session for this mandate.
    pub async fn send(
        &self,
        id: &str,
        mandate_id: &str,
        message: &Value,
        bounds: Bounds,
    ) -> Option<Result<Option<Value>, UpstreamError>> {
        let Bounds { max_bytes, timeout } = bounds;
        let session = {
            let sessions = self.lock();
            let session = sessions.get(id)?;
            if session.mandate_id != mandate_id {
                return None;
            }
            Arc::clone(session)
        };
        *session
            .last_used
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = self.clock.instant();
        let wanted = message.get("method").and(message.get("id")).cloned();
        let exchange = async {
            let mut io = session.io.lock().await;
            let (stdin, stdout) = &mut *io;
            let mut line = message.to_string();
            line.push('\n');
            stdin
                .write_all(line.as_bytes())
                .await
                .map_err(|_| UpstreamError("the upstream closed its input".into()))?;
            stdin
                .flush()
                .await
                .map_err(|_| UpstreamError("the upstream closed its input".into()))?;
            let Some(wanted) = wanted else {
                return Ok(None);
            };
            loop {
                let mut buffer = Vec::new();
                let read = (&mut *stdout)
                    .take(max_bytes as u64 + 1)
                    .read_until(b'\n', &mut buffer)
                    .await
                    .map_err(|_| UpstreamError("cannot read the upstream's answer".into()))?;
                if read == 0 {
                    return Err(UpstreamError("the upstream exited".into()));
                }
                if buffer.len() > max_bytes {
                    return Err(UpstreamError(format!(
                        "the upstream's answer is larger than {max_bytes} bytes"
                    )));
                }
                let Ok(answer) = serde_json::from_slice::<Value>(&buffer) else {
                    continue;
                };
                if answer.get("method").is_none() && answer.get("id") == Some(&wanted) {
                    return Ok(Some(answer));
                }
            }
        };
        Some(
            tokio::time::timeout(timeout, exchange)
                .await
                .unwrap_or_else(|_| {
                    Err(UpstreamError("the upstream did not answer in time".into()))
                }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_read_and_written_back() {
        let text = "event: message\r\nid: 7\r\ndata: {\"jsonrpc\":\"2.0\",\r\ndata: \"id\":1}\r\n\r\n: comment\n\ndata: not json\n\n";
        let found = events(text);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].id.as_deref(), Some("7"));
        assert_eq!(
            found[0].message,
            Some(serde_json::json!({"jsonrpc": "2.0", "id": 1}))
        );
        assert_eq!(found[1].message, None);
        assert_eq!(
            write_events(&found),
            "event: message\nid: 7\ndata: {\"id\":1,\"jsonrpc\":\"2.0\"}\n\n"
        );
    }
}

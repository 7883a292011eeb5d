//! mandate: task-scoped Biscuit credentials for AI agents acting on behalf of humans.
//!
//! Module map:
//! - [`clock`] — the injected source of wall and monotonic time (`clippy.toml` bans reading
//!   either anywhere else).
//! - [`token`] — the mandate/v1 token schema and published key formats; builds without the server.
//! - `verifier` (feature `verifier`) — downstream verification: key cache, tower layer.
//! - `server` (feature `server`, default) — the HTTP service, its configuration, keys and storage.
//! - `gateway` (feature `server`) — `mandate gateway`: enforcement at the tool boundary (MCP,
//!   Envoy `ext_authz`, nginx `auth_request`).

pub mod clock;
pub mod token;

#[cfg(feature = "verifier")]
pub mod verifier;

#[cfg(feature = "server")]
pub mod server;

#[cfg(feature = "server")]
pub mod gateway;

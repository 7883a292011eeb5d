//! mandate: task-scoped Biscuit credentials for AI agents acting on behalf of humans.
//!
//! Module map:
//! - [`clock`] — the injected source of time; nothing else calls `now()`.
//! - [`token`] — the mandate/v1 token schema and published key formats; builds without the server.
//! - `server` (feature `server`, default) — the HTTP service, its configuration, keys and storage.

pub mod clock;
pub mod token;

#[cfg(feature = "server")]
pub mod server;

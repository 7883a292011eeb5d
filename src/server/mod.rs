//! The mandate service (feature `server`): HTTP API, configuration, root keys and storage.
//!
//! - [`audit`] — the tamper-evident trail: hash chain, signed checkpoints, verification.
//! - [`audit_seal`] — each audit event's MAC, keyed from a root key the database does not hold.
//! - [`audit_witness`] — a copy of the signed checkpoints outside the database, checked against it.
//! - [`config`] — typed configuration from a TOML file and `MANDATE_*` variables.
//! - [`startup`] — validates everything, binds, opens the store, loads keys; then runs.
//! - [`app`] — the router and its middleware, separate from serving so tests bind port 0.
//! - [`admin_tokens`] — issuing admin API tokens, for the API and the CLI.
//! - [`approvals`] — human approvals of gated operations: deciding, waiting, one-call use.
//! - [`api`] — one module per resource.
//! - [`dev`] — development mode: built-in identity provider and seed inventory.
//! - [`error`] — the one error type, rendered as RFC 9457 problem+json.
//! - [`idp`] — trusted issuers: JWKS fetching and caching, JWT validation.
//! - [`keys`] — the root key ring.
//! - [`limits`] — mint rate limits per orchestrator and per principal.
//! - [`mint`] — issuing a mandate: checks, scope evaluation, signing, recording.
//! - [`model`] — agents, tools, issuers, policies, admin tokens, and their validation.
//! - [`policy`] — scope evaluation: pure functions over agents, tools and policies.
//! - [`revoke`] — revoking one mandate, a branch, or every live mandate a filter selects.
//! - [`secrets`] — admin tokens and agent secrets: generation, hashing, comparison.
//! - [`store`] — the storage trait with its Postgres and SQLite implementations.
//! - [`streams`] — places for revocation streams, in all and per caller.
//! - [`telemetry`] — logs, traces and metrics.

pub mod admin_tokens;
pub mod api;
pub mod app;
pub mod approvals;
pub mod audit;
pub mod audit_seal;
pub mod audit_witness;
pub mod caller;
pub mod config;
pub mod dev;
pub mod error;
pub mod idp;
pub mod keys;
pub mod limits;
pub mod mint;
pub mod model;
pub mod policy;
pub mod revoke;
pub mod secrets;
pub mod startup;
pub mod state;
pub mod store;
pub mod streams;
pub mod telemetry;

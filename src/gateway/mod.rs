//! `mandate gateway`: enforcing mandates at the tool boundary. An MCP gateway (Streamable
//! HTTP, or stdio servers it spawns) that checks every JSON-RPC message against the presented
//! mandate, filters `tools/list`, checks each `tools/call`'s arguments, never forwards the
//! mandate, signs an assertion for the upstream instead, scans answers for credentials, and
//! reports every call to mandate; and the same checks for Envoy's `ext_authz` and nginx's
//! `auth_request`. `docs/gateway.md` is the operator's guide.

pub mod answers;
pub mod assertion;
pub mod check;
pub mod config;
pub mod mcp;
pub mod once;
pub mod scan;
pub mod serve;
pub mod state;
pub mod upstream;

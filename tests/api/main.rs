//! Integration tests: a real mandate server over HTTP, real Postgres and SQLite, the real binary.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

mod admin_access;
mod admin_inventory;
mod admin_validation;
mod approvals;
mod attribution;
mod audit_forgery;
mod audit_stress;
mod audit_trail;
mod cli;
mod delegation;
mod faults;
mod gateway;
mod group_commit;
mod health;
mod helpers;
mod holder_binding;
mod hostile;
mod interop;
mod layers;
mod mint;
mod mint_failure;
mod oauth;

mod openapi;
mod otlp;
mod revocation;
mod roles;
mod store;
mod store_inventory;
mod subject_tokens;
mod sweeps;
mod telemetry;
mod threat_model;
mod vectors;

//! The answers admin handlers share: a secret shown once, a change that revoked mandates, and
//! a resource as its audit event's before/after.

use serde::Serialize;

/// A 201 that carries a secret shown this once: never stored by caches.
pub type ShownOnce<T> = (
    axum::http::StatusCode,
    [(axum::http::HeaderName, &'static str); 1],
    axum::Json<T>,
);

pub(super) fn shown_once<T>(body: T) -> ShownOnce<T> {
    (
        axum::http::StatusCode::CREATED,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
}

/// A changed resource, with how many live mandates the change revoked in
/// `x-revoked-mandates` (suspending or retiring an agent, disabling or retiring a tool,
/// disabling an issuer). Sub-agents hold only derived tokens mandate never sees: revoke the
/// mandates delegated to them instead.
pub type WithRevoked<T> = ([(axum::http::HeaderName, String); 1], axum::Json<T>);

pub(super) fn with_revoked<T>(changed: axum::Json<T>, revoked: usize) -> WithRevoked<T> {
    (
        [(
            axum::http::HeaderName::from_static("x-revoked-mandates"),
            revoked.to_string(),
        )],
        changed,
    )
}

/// A value as JSON for an audit event's before/after.
pub(super) fn audit_json<T: Serialize>(value: &T) -> Option<serde_json::Value> {
    serde_json::to_value(value).ok()
}

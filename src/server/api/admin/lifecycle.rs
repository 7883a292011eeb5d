//! Saving a changed agent, tool or issuer, and moving one between statuses: one helper for
//! every administered resource. The state machines are the model's
//! ([`crate::server::model::lifecycle`]); what differs per resource is how it is read and
//! written, which [`Administered`] says.

use std::future::Future;

use axum::Json;
use serde::Serialize;

use super::answers::audit_json;
use super::auth::Caller;
use crate::server::error::ApiError;
use crate::server::model::agent::Agent;
use crate::server::model::issuer::Issuer;
use crate::server::model::lifecycle::{step, Status, Step, Versioned};
use crate::server::model::tool::Tool;
use crate::server::state::AppState;
use crate::server::store::{change_event, InventoryGuard, NewAuditEvent, StoreError};

/// A resource of the inventory, as the admin API reads, writes and moves it.
pub(super) trait Administered: Versioned + Serialize + Clone + Send + Sync + Sized {
    /// Its statuses.
    type Status: Status + Send;

    /// Its status now.
    fn status(&self) -> Self::Status;

    /// Sets its status.
    fn set_status(&mut self, to: Self::Status);

    /// The stored record, or 404.
    fn load(state: &AppState, id: &str) -> impl Future<Output = Result<Self, ApiError>> + Send;

    /// Writes the changed record with its audit event, checked against `guard`.
    fn write(
        state: &AppState,
        record: &Self,
        guard: InventoryGuard,
        audit: &NewAuditEvent,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Writes `after`, the next version of `before`, with the audit event `action` naming both.
pub(super) async fn save<R: Administered>(
    state: &AppState,
    caller: &Caller,
    guard: InventoryGuard,
    action: &str,
    before: R,
    mut after: R,
) -> Result<Json<R>, ApiError> {
    let now = state.clock.now();
    after.follow(&before, now);
    let audit = change_event(
        now,
        &caller.actor(),
        action,
        format!("{}:{}", R::Status::KIND, after.id()),
        audit_json(&before),
        audit_json(&after),
    );
    R::write(state, &after, guard, &audit).await?;
    Ok(Json(after))
}

/// Moves record `id` to `to` as its state machine allows, audited as `action`. A status that
/// revokes, asked for again, changes nothing: the caller runs its sweep once more.
pub(super) async fn transition<R: Administered>(
    state: &AppState,
    caller: &Caller,
    guard: InventoryGuard,
    id: &str,
    to: R::Status,
    action: &str,
) -> Result<Json<R>, ApiError> {
    let before = R::load(state, id).await?;
    match step(id, before.status(), to).map_err(|e| ApiError::Conflict(e.0))? {
        Step::Again => Ok(Json(before)),
        Step::Move => {
            let mut after = before.clone();
            after.set_status(to);
            save(state, caller, guard, action, before, after).await
        }
    }
}

/// Implements [`Administered`] for a resource: its status type, its loader, its store writer.
macro_rules! administered {
    ($ty:ty, $status:ty, $kind:literal, $read:ident, $write:ident) => {
        impl Administered for $ty {
            type Status = $status;

            fn status(&self) -> $status {
                self.status
            }

            fn set_status(&mut self, to: $status) {
                self.status = to;
            }

            async fn load(state: &AppState, id: &str) -> Result<Self, ApiError> {
                state
                    .store
                    .$read(id)
                    .await?
                    .ok_or_else(|| ApiError::NotFound(format!(concat!("no ", $kind, " `{}`"), id)))
            }

            async fn write(
                state: &AppState,
                record: &Self,
                guard: InventoryGuard,
                audit: &NewAuditEvent,
            ) -> Result<(), StoreError> {
                state.store.$write(record, guard, audit).await
            }
        }
    };
}

administered!(
    Agent,
    crate::server::model::agent::AgentStatus,
    "agent",
    agent,
    update_agent
);
administered!(
    Tool,
    crate::server::model::tool::ToolStatus,
    "tool",
    tool,
    update_tool
);
administered!(
    Issuer,
    crate::server::model::issuer::IssuerStatus,
    "issuer",
    issuer,
    update_issuer
);

//! Issuing admin API tokens, shared by `POST /v1/admin/tokens` and `mandate admin-token
//! create`: the token is generated here, recorded as its hash with its audit event, and
//! returned this once.

use chrono::{DateTime, Utc};

use super::model::admin_token::{AdminToken, IssuedAdminToken, NewAdminToken};
use super::model::Invalid;
use super::secrets::{self, ADMIN_TOKEN_PREFIX};
use super::store::{change_event, new_id, Store, StoreError};

/// The name the configured (bootstrap) admin token goes by; no issued token may take it.
pub const BOOTSTRAP_NAME: &str = "bootstrap";

/// Why no admin token was issued.
#[derive(Debug, thiserror::Error)]
pub enum AdminTokenError {
    /// The request's fields; each is named.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The store refused (a name taken) or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The operating system's random source failed.
    #[error("cannot generate a token: {0}")]
    Random(String),
}

/// Creates an admin token, records it (hash only) with its audit event, and returns it once.
pub async fn issue_admin_token(
    store: &dyn Store,
    request: NewAdminToken,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<IssuedAdminToken, AdminTokenError> {
    request.check()?;
    if request.name == BOOTSTRAP_NAME {
        return Err(Invalid::field(
            "name",
            format!("`{BOOTSTRAP_NAME}` is reserved for the configured admin token"),
        )
        .into());
    }
    let secret = secrets::generate(ADMIN_TOKEN_PREFIX)
        .map_err(|e| AdminTokenError::Random(e.to_string()))?;
    let info = AdminToken {
        id: new_id(now),
        name: request.name,
        role: request.role,
        created_by: actor.to_owned(),
        created_at: now,
        revoked_at: None,
    };
    let audit = change_event(
        now,
        actor,
        "admin_token.created",
        format!("admin_token:{}", info.name),
        None,
        serde_json::to_value(&info).ok(),
    );
    store
        .insert_admin_token(&info, &secret.hash(), &audit)
        .await?;
    Ok(IssuedAdminToken {
        info,
        token: secret.expose().to_owned(),
    })
}

//! Admin authentication: `Authorization: Bearer mnd_adm_…`. The configured bootstrap token is
//! compared in constant time in memory; database tokens are found by their SHA-256 hash. Each
//! request is attributed to its token's name (in the audit trail and the request's log span).

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::server::api::extract::bearer;
use crate::server::error::ApiError;
use crate::server::model::admin_token::Role;
use crate::server::secrets::{self, ADMIN_TOKEN_PREFIX};
use crate::server::state::AppState;

/// The name the configured admin token acts under; no database token may take it.
use crate::server::admin_tokens::BOOTSTRAP_NAME;

/// Who is calling the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name.
    pub name: String,
    /// The token's role.
    pub role: Role,
}

impl Caller {
    /// The actor recorded in audit events.
    pub fn actor(&self) -> String {
        format!("admin:{}", self.name)
    }
}

/// Any valid admin token: may read.
#[derive(Debug, Clone)]
pub struct Reader(pub Caller);

/// An admin token with role `admin`: may change. Auditors get 403.
#[derive(Debug, Clone)]
pub struct Writer(pub Caller);

fn unauthorized(detail: &str) -> ApiError {
    ApiError::Unauthorized(detail.to_owned())
}

pub(crate) async fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    if !parts.headers.contains_key(AUTHORIZATION) {
        return Err(unauthorized(
            "send an admin token as `Authorization: Bearer mnd_adm_…`",
        ));
    }
    let invalid = || unauthorized("invalid or revoked admin token");
    let token = bearer(&parts.headers).ok_or_else(invalid)?;
    if !token.starts_with(ADMIN_TOKEN_PREFIX) || token.len() > 512 {
        return Err(invalid());
    }
    let hash = secrets::hash(token);
    let caller = match &state.bootstrap_admin {
        Some(bootstrap) if secrets::hashes_match(bootstrap, &hash) => Caller {
            name: BOOTSTRAP_NAME.to_owned(),
            role: Role::Admin,
        },
        _ => {
            let stored = state
                .store
                .admin_token_by_hash(&hash)
                .await?
                .ok_or_else(invalid)?;
            Caller {
                name: stored.name,
                role: stored.role,
            }
        }
    };
    tracing::Span::current().record("admin", caller.name.as_str());
    Ok(caller)
}

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate(parts, state).await.map(Reader)
    }
}

impl FromRequestParts<AppState> for Writer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = authenticate(parts, state).await?;
        if caller.role != Role::Admin {
            return Err(ApiError::Forbidden(format!(
                "admin token `{}` has role auditor: it may read, not change",
                caller.name
            )));
        }
        Ok(Writer(caller))
    }
}

//! `POST /v1/introspect` (RFC 7662 style): for callers that cannot run the verifier library,
//! whether a mandate is active and, if it is, who it speaks for.

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::admin::auth::authenticate;
use super::extract::{bearer, body_bytes, is_form, ApiJson};
use super::problems::JsonBodyErrors;
use crate::server::caller::agent_for_secret;
use crate::server::error::{ApiError, Problem};
use crate::server::state::AppState;
use crate::token::verify::{AccessRequest, Hop, VerifyOptions};

/// An agent secret or an admin token (any role).
pub struct Introspector;

impl FromRequestParts<AppState> for Introspector {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match bearer(&parts.headers) {
            Some(secret) if secret.starts_with(crate::server::secrets::AGENT_SECRET_PREFIX) => {
                agent_for_secret(state, secret)
                    .await?
                    .map(|_| Introspector)
                    .ok_or_else(|| ApiError::Unauthorized("unknown agent or wrong secret".into()))
            }
            _ => authenticate(parts, state)
                .await
                .map(|_| Introspector)
                .map_err(|refused| match refused {
                    ApiError::Unauthorized(_) => ApiError::Unauthorized(
                        "send an orchestrator's agent secret (`mnd_agt_…`) or an admin token \
                         (`mnd_adm_…`) as `Authorization: Bearer`"
                            .into(),
                    ),
                    other => other,
                }),
        }
    }
}

/// `POST /v1/introspect`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntrospectBody {
    /// The mandate (or a token derived from it).
    pub token: String,
    /// The tool of the call being checked; with `operation`, `active` also says whether the
    /// token grants that call. Without them, any granted right counts.
    #[serde(default)]
    pub tool: Option<String>,
    /// The operation of the call being checked.
    #[serde(default)]
    pub operation: Option<String>,
}

/// The body of `POST /v1/introspect`: JSON, or form-encoded as RFC 7662 has it (`token`, and
/// optionally `token_type_hint`, which is ignored: every token here is a mandate).
pub struct IntrospectRequest(IntrospectBody);

/// The form parameters an introspection may carry.
const FORM_PARAMETERS: [&str; 4] = ["token", "token_type_hint", "tool", "operation"];

impl<S: Send + Sync> FromRequest<S> for IntrospectRequest {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let form = is_form(req.headers());
        if !form {
            let ApiJson(body) = ApiJson::from_request(req, state)
                .await
                .map_err(|e| match e {
                    ApiError::UnsupportedMediaType(_) => ApiError::UnsupportedMediaType(
                        "send the body as application/json or application/x-www-form-urlencoded"
                            .to_owned(),
                    ),
                    other => other,
                })?;
            return Ok(IntrospectRequest(body));
        }
        let bytes = body_bytes(req, state).await?;
        from_form(&bytes).map(IntrospectRequest)
    }
}

/// The form's parameters: each at most once, none unknown, `token` present.
fn from_form(bytes: &[u8]) -> Result<IntrospectBody, ApiError> {
    let mut values = std::collections::HashMap::new();
    for (name, value) in url::form_urlencoded::parse(bytes) {
        if !FORM_PARAMETERS.contains(&name.as_ref()) {
            // Named back only when it is short and plain.
            let plain =
                name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            let field = if plain {
                name.into_owned()
            } else {
                "(parameter)".to_owned()
            };
            return Err(ApiError::field(field, "is not an introspection parameter"));
        }
        if values.insert(name.clone(), value).is_some() {
            return Err(ApiError::BadRequest(format!("`{name}` is given twice")));
        }
    }
    let mut take = |name: &str| values.remove(name).map(|v| v.into_owned());
    let Some(token) = take("token") else {
        return Err(ApiError::field("token", "is required"));
    };
    Ok(IntrospectBody {
        token,
        tool: take("tool"),
        operation: take("operation"),
    })
}

/// The answer: `active`, and when active, the read-out.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Introspection {
    /// Whether the token is valid, unexpired, unrevoked (and grants the call, if one was named).
    pub active: bool,
    /// The mandate's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mandate_id: Option<String>,
    /// The principal's subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The principal's issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// The orchestrator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Each delegation hop.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub hops: Option<Vec<Hop>>,
    /// Granted rights, `tool:operation` separated by spaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Expiry, seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// For a mandate bound to its holder's key: `{"jkt": thumbprint}` (RFC 9449 section 6.2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// The key a token is bound to (RFC 7800 `cnf`, with RFC 9449's `jkt`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Confirmation {
    /// The RFC 7638 thumbprint of the holder's key.
    pub jkt: String,
}

fn inactive() -> Json<Introspection> {
    Json(Introspection {
        active: false,
        mandate_id: None,
        sub: None,
        iss: None,
        agent: None,
        hops: None,
        scope: None,
        exp: None,
        cnf: None,
    })
}

/// Is this mandate active, and whom does it speak for?
#[utoipa::path(
    post, path = "/v1/introspect", tag = "revocations",
    security(("agent_secret" = []), ("admin_token" = [])),
    request_body(content(
        (IntrospectBody = "application/json"),
        (IntrospectBody = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "`active` false for anything not a live mandate", body = Introspection),
        (status = 401, description = "No valid agent secret or admin token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
        JsonBodyErrors,
    )
)]
pub async fn introspect(
    State(state): State<AppState>,
    _caller: Introspector,
    IntrospectRequest(body): IntrospectRequest,
) -> Result<Json<Introspection>, ApiError> {
    let asked = match (&body.tool, &body.operation) {
        (Some(tool), Some(operation)) => Some(crate::token::Right {
            tool: tool.clone(),
            operation: operation.clone(),
        }),
        (None, None) => None,
        _ => {
            return Err(ApiError::field(
                "operation",
                "give both tool and operation, or neither",
            ))
        }
    };
    let Ok(checked) = super::receipts::check_token(&state, &body.token).await? else {
        return Ok(inactive());
    };
    // Revocation is read from the store for each of the token's ids.
    for id in checked.revocation_ids() {
        if state.store.revocation(id).await?.is_some() {
            return Ok(inactive());
        }
    }
    // Without a named call: active if any granted right is still usable.
    let rights = match asked {
        Some(right) => vec![right],
        None => checked.verified().rights.clone(),
    };
    let now = state.clock.now();
    let usable = crate::verifier::pool::run(move || {
        Ok(rights.into_iter().find_map(|right| {
            let request = AccessRequest {
                tool: right.tool,
                operation: right.operation,
                now,
            };
            // Whether it grants the call to its holder: the caller's proof is the resource
            // server's to check, with `cnf.jkt`.
            let holder = checked.verified().holder_key.as_deref();
            let options = VerifyOptions::default();
            checked
                .authorize_held(&|_| false, &request, None, None, holder, &options)
                .ok()
        }))
    })
    .await;
    if let Ok(Some(verified)) = usable {
        return Ok(Json(Introspection {
            active: true,
            mandate_id: Some(verified.mandate_id),
            sub: Some(verified.principal_subject),
            iss: Some(verified.principal_issuer),
            agent: Some(verified.agent_id),
            hops: Some(verified.hops),
            scope: Some(
                verified
                    .rights
                    .iter()
                    .map(|r| format!("{}:{}", r.tool, r.operation))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            exp: Some(verified.expires_at.timestamp()),
            cnf: verified.holder_key.map(|jkt| Confirmation { jkt }),
        }));
    }
    Ok(inactive())
}

//! `/v1/approvals`: approvers list and decide what waits for them (with their own IdP token as
//! `Authorization: Bearer`); an orchestrator polls, streams and collects its request (with its
//! agent secret); a gateway records the one call an argument-bound approval is for (with its
//! reporter credential).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderName, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::{bearer, ApiJson};
use super::receipts::{check_token, Reporting};
use crate::server::approvals::{self, ApprovalView};
use crate::server::caller::Orchestrator;
use crate::server::error::{ApiError, Problem};
use crate::server::mint::{collect, Issued};
use crate::server::model::approval::{ApprovalState, Verdict};
use crate::server::policy::Principal;
use crate::server::secrets::AGENT_SECRET_PREFIX;
use crate::server::state::AppState;
use crate::server::streams::NoSlot;

/// An approver, by the IdP token they present.
pub struct ApproverCaller(pub Principal);

impl FromRequestParts<AppState> for ApproverCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or_else(|| {
            ApiError::Unauthorized(
                "send your own token from a trusted issuer as `Authorization: Bearer …`".into(),
            )
        })?;
        Ok(ApproverCaller(approvals::approver(state, token).await?))
    }
}

/// Who reads one request: its orchestrator (agent secret) or an approver (IdP token).
pub enum Viewer {
    /// The orchestrator.
    Agent(Orchestrator),
    /// An approver.
    Approver(Principal),
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if bearer(&parts.headers).is_some_and(|t| t.starts_with(AGENT_SECRET_PREFIX)) {
            Ok(Viewer::Agent(
                Orchestrator::from_request_parts(parts, state).await?,
            ))
        } else {
            let ApproverCaller(approver) = ApproverCaller::from_request_parts(parts, state).await?;
            Ok(Viewer::Approver(approver))
        }
    }
}

/// `GET /v1/approvals`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Waiting {
    /// The pending requests this approver may decide on and has not, oldest first.
    pub approvals: Vec<ApprovalView>,
}

/// What waits for the calling approver's decision.
#[utoipa::path(
    get, path = "/v1/approvals", tag = "approvals", security(("approver_token" = [])),
    responses(
        (status = 200, description = "Pending requests the caller may approve (at most 200)", body = Waiting),
        (status = 401, description = "No token, or one no trusted issuer signed (the detail names the check)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn waiting(
    State(state): State<AppState>,
    ApproverCaller(approver): ApproverCaller,
) -> Result<Json<Waiting>, ApiError> {
    let approvals = approvals::waiting_for(&state, &approver).await?;
    Ok(Json(Waiting { approvals }))
}

/// One request: for the orchestrator that made it (agent secret), or for an approver who may
/// decide on it or did.
#[utoipa::path(
    get, path = "/v1/approvals/{id}", tag = "approvals",
    security(("agent_secret" = []), ("approver_token" = [])),
    params(("id" = Uuid, Path, description = "The request's id")),
    responses(
        (status = 200, description = "Its state and decisions", body = ApprovalView,
         headers(("cache-control" = String, description = "no-store"))),
        (status = 401, description = "No valid agent secret or approver token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "An approver who may not decide on it", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such request (or another orchestrator's)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    viewer: Viewer,
) -> Result<([(HeaderName, &'static str); 1], Json<ApprovalView>), ApiError> {
    let view = match viewer {
        Viewer::Agent(orchestrator) => {
            let request = approvals::shown_to_agent(&state, &orchestrator.agent.id, id).await?;
            ApprovalView::of(&request, state.clock.now())
        }
        Viewer::Approver(approver) => approvals::shown_to_approver(&state, &approver, id).await?,
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(view)))
}

/// A decision's body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// Why (1 to 1024 characters), kept in the audit trail.
    #[schema(example = "Duplicate record, checked with the account owner")]
    pub reason: String,
}

async fn decide(
    state: AppState,
    approver: Principal,
    id: Uuid,
    verdict: Verdict,
    body: DecisionBody,
) -> Result<Json<ApprovalView>, ApiError> {
    Ok(Json(
        approvals::decide(&state, &approver, id, verdict, &body.reason).await?,
    ))
}

/// Approve a request: counted toward every gated operation the caller may approve.
#[utoipa::path(
    post, path = "/v1/approvals/{id}/approve", tag = "approvals", security(("approver_token" = [])),
    params(("id" = Uuid, Path, description = "The request's id")),
    request_body = DecisionBody,
    responses(
        (status = 200, description = "Recorded; the request as it now stands (approved once every gated operation has its approvers)", body = ApprovalView),
        (status = 401, description = "No token, or one no trusted issuer signed", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an eligible approver (not named, the principal where the policy does not count them, another issuer), or a token issued before the request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such request", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The request is decided or expired, or the caller decided already", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No reason, or one too long", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn approve(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    ApproverCaller(approver): ApproverCaller,
    ApiJson(body): ApiJson<DecisionBody>,
) -> Result<Json<ApprovalView>, ApiError> {
    decide(state, approver, id, Verdict::Approve, body).await
}

/// Deny a request: one eligible approver's denial denies it.
#[utoipa::path(
    post, path = "/v1/approvals/{id}/deny", tag = "approvals", security(("approver_token" = [])),
    params(("id" = Uuid, Path, description = "The request's id")),
    request_body = DecisionBody,
    responses(
        (status = 200, description = "Recorded; the request is denied", body = ApprovalView),
        (status = 401, description = "No token, or one no trusted issuer signed", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an eligible approver, or a token issued before the request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such request", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The request is decided or expired, or the caller decided already", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No reason, or one too long", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn deny(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    ApproverCaller(approver): ApproverCaller,
    ApiJson(body): ApiJson<DecisionBody>,
) -> Result<Json<ApprovalView>, ApiError> {
    decide(state, approver, id, Verdict::Deny, body).await
}

/// Collect the mandate of an approved request (its orchestrator, once).
#[utoipa::path(
    post, path = "/v1/approvals/{id}/mandate", tag = "approvals", security(("agent_secret" = [])),
    params(("id" = Uuid, Path, description = "The request's id")),
    responses(
        (status = 201, description = "Minted and recorded, carrying the approvals", body = Issued,
         headers(("cache-control" = String, description = "no-store"))),
        (status = 401, description = "Bad agent secret", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Denied (the detail names who and why), the principal's mandates revoked since the request, or the policies no longer grant the scope", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such request of this orchestrator", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Still pending, expired, its mandate issued already, or an operation's gating policy or rule changed since the request (request anew)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable; nothing was issued", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn collect_mandate(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    orchestrator: Orchestrator,
) -> Result<(StatusCode, [(HeaderName, &'static str); 1], Json<Issued>), ApiError> {
    let issued = collect(&state, &orchestrator, id).await?;
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(issued),
    ))
}

/// A request's state as Server-Sent Events (`event: state`, `data` the request), for its
/// orchestrator: now, then on every change on any replica, until it is no longer pending.
#[utoipa::path(
    get, path = "/v1/approvals/{id}/events", tag = "approvals", security(("agent_secret" = [])),
    params(("id" = Uuid, Path, description = "The request's id")),
    responses(
        (status = 200, description = "The request's states, ending once decided or expired", content_type = "text/event-stream", body = ApprovalView),
        (status = 401, description = "Bad agent secret", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such request of this orchestrator", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many streams open; poll instead", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn events(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    orchestrator: Orchestrator,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let agent = orchestrator.agent.id.clone();
    approvals::shown_to_agent(&state, &agent, id).await?;
    let permit = state
        .streams
        .take(format!("agent:{agent}"))
        .map_err(|refused| {
            ApiError::Unavailable(match refused {
                NoSlot::Full => "too many streams open; poll the request".to_owned(),
                NoSlot::CallerFull => {
                    "this orchestrator has its most streams open; poll".to_owned()
                }
            })
        })?;
    let signal = state.store.approval_signal();
    let start = ((state, permit), signal, agent, None::<ApprovalState>, false);
    let events = futures_util::stream::unfold(
        start,
        move |((state, permit), mut signal, agent, last, done)| async move {
            if done {
                return None;
            }
            loop {
                if last.is_some() {
                    // Wake on a change anywhere; re-read now and then for expiry, or in case
                    // a wake-up was lost.
                    let wait = Duration::from_secs(approvals::POLL_INTERVAL);
                    let _ = tokio::time::timeout(wait, signal.recv()).await;
                }
                let request = match approvals::shown_to_agent(&state, &agent, id).await {
                    Ok(request) => request,
                    Err(error) => {
                        tracing::warn!(%error, "approval stream cannot read its request");
                        return None;
                    }
                };
                let view = ApprovalView::of(&request, state.clock.now());
                if last == Some(view.state) {
                    continue;
                }
                let finished = view.state != ApprovalState::Pending;
                let event = Event::default()
                    .event("state")
                    .data(serde_json::to_string(&view).unwrap_or_default());
                let next = ((state, permit), signal, agent, Some(view.state), finished);
                return Some((Ok(event), next));
            }
        },
    );
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// A gateway's record of the one call an argument-bound approval is for.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UseBody {
    /// The mandate the call presented (signed by mandate's keys; its approval is read from it).
    pub token: String,
    /// The tool called.
    pub tool: String,
    /// The operation.
    pub operation: String,
    /// SHA-256, hex, of the call's arguments in RFC 8785 canonical JSON.
    pub arguments_sha256: String,
}

/// The use, recorded.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Used {
    /// The approval request.
    pub approval_id: String,
    /// The mandate.
    pub mandate_id: String,
}

/// Record the one call an argument-bound approval is for, before the call is let through; a
/// second use of it is refused (a registered gateway or verifier, by its credential).
#[utoipa::path(
    post, path = "/v1/approvals/uses", tag = "approvals", security(("reporter_secret" = [])),
    request_body = UseBody,
    responses(
        (status = 200, description = "Recorded: the call may go through", body = Used),
        (status = 401, description = "No credential of an active reporter", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The approval's one call was made already: refuse this one", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The token is not a mandate, carries no argument-bound approval of this operation, or the digest differs", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn record_use(
    State(state): State<AppState>,
    Reporting(reporter): Reporting,
    ApiJson(body): ApiJson<UseBody>,
) -> Result<Json<Used>, ApiError> {
    let checked = check_token(&state, &body.token)
        .await?
        .map_err(|e| ApiError::field("token", format!("not a mandate of this service: {e}")))?;
    let verified = checked.verified();
    let approval = verified
        .approvals
        .iter()
        .find(|a| {
            a.tool == body.tool && a.operation == body.operation && a.arguments_sha256.is_some()
        })
        .ok_or_else(|| {
            ApiError::field(
                "operation",
                "the mandate carries no approval of this operation bound to arguments",
            )
        })?;
    let mandate_id: Uuid = verified
        .mandate_id
        .parse()
        .map_err(|_| ApiError::field("token", "its mandate id is not a UUID"))?;
    approvals::use_once(
        &state,
        &reporter.id,
        mandate_id,
        approval,
        &body.arguments_sha256,
    )
    .await?;
    Ok(Json(Used {
        approval_id: approval.id.clone(),
        mandate_id: verified.mandate_id.clone(),
    }))
}

//! Revocation: of a mandate (by the orchestrator holding it or an admin), of a task's authority
//! when it completes, of a holder's own branch, in bulk by admins; and the feed verifiers
//! follow, by polling or as a Server-Sent Events stream.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use chrono::{DateTime, Utc};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::admin::auth::{authenticate, Caller, Writer};
use super::extract::{bearer, ApiJson, ApiQuery};
use super::problems::JsonBodyErrors;
use crate::server::caller::agent_for_secret;
use crate::server::error::{ApiError, Problem};
use crate::server::model::admin_token::Role;
use crate::server::model::agent::Agent;
use crate::server::revoke::{check_reason, revoke_ids, revoke_live, RevocationView};
use crate::server::state::AppState;
use crate::server::store::{FeedEntry, Issuance, MandateFilter};
use crate::server::streams::{NoSlot, STREAMS_PER_CALLER};
use crate::token::verify::{VerifyOptions, KEEP_REVOKED_SECONDS};

/// An admin token (role admin) or the orchestrator's agent secret.
pub enum Revoker {
    /// An administrator.
    Admin(Caller),
    /// An agent, by its secret.
    Agent(Agent),
}

impl FromRequestParts<AppState> for Revoker {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match bearer(&parts.headers) {
            Some(secret) if secret.starts_with(crate::server::secrets::AGENT_SECRET_PREFIX) => {
                agent_for_secret(state, secret)
                    .await?
                    .map(Revoker::Agent)
                    .ok_or_else(|| ApiError::Unauthorized("unknown agent or wrong secret".into()))
            }
            _ => {
                let caller = authenticate(parts, state).await?;
                if caller.role != Role::Admin {
                    return Err(ApiError::Forbidden(format!(
                        "admin token `{}` has role auditor: it may read, not change",
                        caller.name
                    )));
                }
                Ok(Revoker::Admin(caller))
            }
        }
    }
}

/// A reason for revoking.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Why (at most 512 characters).
    #[schema(example = "the task was cancelled")]
    pub reason: String,
}

async fn load_mandate(state: &AppState, id: Uuid) -> Result<Issuance, ApiError> {
    state
        .store
        .mandate(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no mandate {id}")))
}

/// Revokes one mandate for `who` (admin, or the orchestrator it was minted for); idempotent.
async fn revoke_mandate(
    state: &AppState,
    who: Revoker,
    id: Uuid,
    reason: &str,
    action: &str,
) -> Result<Json<RevocationView>, ApiError> {
    check_reason(reason)?;
    let mandate = load_mandate(state, id).await?;
    let revoked_by = match &who {
        Revoker::Admin(caller) => caller.actor(),
        Revoker::Agent(agent) if agent.id == mandate.agent_id => format!("agent:{}", agent.id),
        // The same answer as for an unknown id: another orchestrator's mandates do not exist
        // for this one.
        Revoker::Agent(_) => return Err(ApiError::NotFound(format!("no mandate {id}"))),
    };
    if let Some(existing) = state.store.revocation(&mandate.revocation_id).await? {
        return Ok(Json(RevocationView::from(&existing)));
    }
    revoke_ids(
        state,
        vec![(mandate.revocation_id.clone(), Some(id), mandate.expires_at)],
        reason,
        &revoked_by,
        action,
        format!("mandate:{id}"),
        serde_json::json!({ "mandate": id }),
    )
    .await?;
    let stored = state
        .store
        .revocation(&mandate.revocation_id)
        .await?
        .ok_or_else(|| ApiError::Internal("revocation not found after commit".into()))?;
    Ok(Json(RevocationView::from(&stored)))
}

/// Revoke a mandate and every token derived from it. Idempotent.
#[utoipa::path(
    post, path = "/v1/mandates/{id}/revoke", tag = "revocations",
    security(("agent_secret" = []), ("admin_token" = [])),
    params(("id" = Uuid, Path, description = "Mandate id")),
    request_body = ReasonBody,
    responses(
        (status = 200, description = "Revoked (now or before)", body = RevocationView),
        (status = 401, description = "No valid agent secret or admin token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "An auditor token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such mandate, or another orchestrator's (the same answer)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing or invalid reason", body = Problem, content_type = "application/problem+json"),
        JsonBodyErrors,
    )
)]
pub async fn revoke(
    State(state): State<AppState>,
    who: Revoker,
    Path(id): Path<Uuid>,
    ApiJson(body): ApiJson<ReasonBody>,
) -> Result<Json<RevocationView>, ApiError> {
    revoke_mandate(&state, who, id, &body.reason, "mandate.revoked").await
}

/// End a task: its orchestrator declares it done, and the mandate stops working.
#[utoipa::path(
    post, path = "/v1/mandates/{id}/complete", tag = "revocations", security(("agent_secret" = [])),
    params(("id" = Uuid, Path, description = "Mandate id")),
    responses(
        (status = 200, description = "Completed (now or before)", body = RevocationView),
        (status = 401, description = "No valid agent secret", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "An admin token: admins revoke", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "Malformed mandate id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such mandate, or another orchestrator's (the same answer)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn complete(
    State(state): State<AppState>,
    who: Revoker,
    Path(id): Path<Uuid>,
) -> Result<Json<RevocationView>, ApiError> {
    if let Revoker::Admin(_) = who {
        return Err(ApiError::Forbidden(
            "only the orchestrator completes its task; admins revoke".into(),
        ));
    }
    revoke_mandate(&state, who, id, "task completed", "mandate.completed").await
}

/// A token whose branch its holder revokes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BranchBody {
    /// The (derived) token; possession is the authority to revoke its branch.
    pub token: String,
    /// Why.
    pub reason: String,
}

/// What a branch revocation answers (nothing about who revoked before, or why).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BranchRevoked {
    /// The revoked revocation id (the token's last block), hex.
    pub revocation_id: String,
    /// When it was revoked.
    pub revoked_at: DateTime<Utc>,
    /// True when the mandate already had its most revoked branches, so the whole mandate (every
    /// token derived from it) was revoked instead: `revocation_id` is then the mandate's.
    #[serde(default)]
    pub whole_mandate: bool,
}

/// Most branches of one mandate its holders may revoke: each is a row every verifier keeps
/// until the mandate expires. Past it, a branch revocation revokes the whole mandate: a holder
/// can always end its own branch, and anyone spending the cap ends only what they hold a part of.
pub const MAX_BRANCHES: usize = 64;

/// Revoke a token's own branch: its last block's revocation id. Whoever holds a derived token
/// may end it and everything derived from it; its parent keeps working. The mandate itself
/// (a token without attenuation blocks) is revoked only through `/v1/mandates/{id}/revoke`.
/// A branch of a mandate bound to a key needs a `DPoP` proof from its current holder.
#[utoipa::path(
    post, path = "/v1/revocations", tag = "revocations",
    request_body = BranchBody,
    responses(
        (status = 200, description = "Revoked (now or before)", body = BranchRevoked),
        (status = 401, description = "Not a derived mandate signed by mandate's keys, or a bound one without its holder's DPoP proof", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Its mandate is unknown", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Its mandate is expired or revoked", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing or invalid reason", body = Problem, content_type = "application/problem+json"),
        JsonBodyErrors,
    )
)]
pub async fn revoke_branch(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    ApiJson(body): ApiJson<BranchBody>,
) -> Result<Json<BranchRevoked>, ApiError> {
    check_reason(&body.reason)?;
    let rejected =
        || ApiError::Unauthorized("not a derived mandate signed by mandate's keys".into());
    let keys = state
        .keys
        .document()
        .key_set()
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    let token = body.token.clone();
    let token = crate::verifier::pool::run(move || {
        crate::token::verify::parse(&token, &keys, &VerifyOptions::default())
    })
    .await
    .map_err(|e| match e {
        crate::token::TokenError::Busy => super::receipts::busy(),
        _ => rejected(),
    })?;
    if token.block_count() < 2 {
        return Err(rejected());
    }
    // A bound mandate's branch is ended by its holder only: whoever copied it cannot revoke it
    // branch by branch.
    if let Some(holder) = token.holder_key().map_err(|_| rejected())? {
        super::dpop::holder_proof(&state, &headers, "/v1/revocations", &body.token, &holder)?;
    }
    let mandate_id: Uuid = token.authority.mandate_id.parse().map_err(|_| rejected())?;
    let mandate = load_mandate(&state, mandate_id).await?;
    let branch = token
        .revocation_ids()
        .last()
        .cloned()
        .ok_or_else(rejected)?;
    let answer = |r: &crate::server::store::Revocation| {
        Json(BranchRevoked {
            revocation_id: hex::encode(&r.entry.revocation_id),
            revoked_at: r.entry.revoked_at,
            whole_mandate: r.entry.revocation_id == mandate.revocation_id,
        })
    };
    if let Some(existing) = state.store.revocation(&branch).await? {
        return Ok(answer(&existing));
    }
    if mandate.expires_at <= state.clock.now()
        || state
            .store
            .revocation(&mandate.revocation_id)
            .await?
            .is_some()
    {
        return Err(ApiError::Conflict(format!(
            "mandate {mandate_id} has expired or been revoked: nothing to revoke"
        )));
    }
    let branches = state.store.revocations_of_mandate(mandate_id).await?;
    let (revoked, action) = if branches >= MAX_BRANCHES {
        (mandate.revocation_id.clone(), "mandate.revoked")
    } else {
        (branch.clone(), "mandate.branch_revoked")
    };
    // Who holds a branch is the holder's own claim: it is recorded as such, not as an actor.
    let claimed_holder = token.claimed_holder();
    revoke_ids(
        &state,
        vec![(revoked.clone(), Some(mandate_id), mandate.expires_at)],
        &body.reason,
        "holder",
        action,
        format!("mandate:{mandate_id}"),
        serde_json::json!({
            "mandate": mandate_id, "blocks": token.block_count(), "claimed_holder": claimed_holder,
            "revoked_branches": branches,
        }),
    )
    .await?;
    let stored = state
        .store
        .revocation(&revoked)
        .await?
        .ok_or_else(|| ApiError::Internal("revocation not found after commit".into()))?;
    Ok(answer(&stored))
}

/// Who was offboarded, by issuer URL and subject.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrincipalSelector {
    /// The subject.
    pub subject: String,
    /// The issuer URL.
    pub issuer: String,
}

/// `POST /v1/admin/revocations`: which live mandates to revoke (at least one selector).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkBody {
    /// Minted for this agent.
    #[serde(default)]
    pub agent: Option<String>,
    /// On behalf of this principal (offboarding).
    #[serde(default)]
    pub principal: Option<PrincipalSelector>,
    /// Granting this tool.
    #[serde(default)]
    pub tool: Option<String>,
    /// For this task.
    #[serde(default)]
    pub task: Option<String>,
    /// Issued before this time.
    #[serde(default)]
    pub issued_before: Option<DateTime<Utc>>,
    /// Why.
    pub reason: String,
}

/// How many mandates a bulk revocation took.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BulkResult {
    /// Live mandates revoked.
    pub revoked: usize,
}

/// Refuses, from now on, mints on the principal's subject tokens issued until now: a still-valid
/// JWT cannot mint again after its principal was offboarded. Committed before the sweep.
async fn cut_off(
    state: &AppState,
    actor: &str,
    principal: &PrincipalSelector,
    reason: &str,
) -> Result<(), ApiError> {
    let now = state.clock.now();
    let guard = state.store.inventory_guard().await?;
    let audit = crate::server::store::NewAuditEvent {
        id: crate::server::store::new_id(now),
        occurred_at: now,
        actor: actor.to_owned(),
        action: "principal.cut_off".to_owned(),
        target: Some(format!("principal:{}", principal.subject)),
        outcome: crate::server::store::AuditOutcome::Success,
        details: serde_json::json!({
            "subject": principal.subject, "issuer": principal.issuer, "reason": reason,
            "subject_tokens_issued_until": now,
        }),
    };
    state
        .store
        .cut_off_principal(&principal.issuer, &principal.subject, now, guard, &audit)
        .await?;
    Ok(())
}

/// Revoke every live mandate matching the selectors: by agent, principal, tool, task, or
/// issued before a time. Naming a principal alone (offboarding) also refuses every later mint
/// on a subject token of theirs issued until now: they must sign in again.
#[utoipa::path(
    post, path = "/v1/admin/revocations", tag = "revocations", security(("admin_token" = [])),
    request_body = BulkBody,
    responses(
        (status = 200, description = "Revoked", body = BulkResult),
        (status = 401, description = "No valid admin token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Auditor token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No selector, or an invalid one", body = Problem, content_type = "application/problem+json"),
        JsonBodyErrors,
    )
)]
pub async fn bulk(
    State(state): State<AppState>,
    Writer(caller): Writer,
    ApiJson(body): ApiJson<BulkBody>,
) -> Result<Json<BulkResult>, ApiError> {
    check_reason(&body.reason)?;
    if body.agent.is_none()
        && body.principal.is_none()
        && body.tool.is_none()
        && body.task.is_none()
        && body.issued_before.is_none()
    {
        return Err(ApiError::field(
            "agent",
            "name at least one of agent, principal, tool, task, issued_before",
        ));
    }
    let offboarding = body.agent.is_none()
        && body.tool.is_none()
        && body.task.is_none()
        && body.issued_before.is_none();
    if let (Some(principal), true) = (&body.principal, offboarding) {
        cut_off(&state, &caller.actor(), principal, &body.reason).await?;
    }
    let filter = MandateFilter {
        agent: body.agent,
        principal_subject: body.principal.as_ref().map(|p| p.subject.clone()),
        principal_issuer: body.principal.as_ref().map(|p| p.issuer.clone()),
        task: body.task,
        issued_before: body.issued_before,
    };
    let revoked = revoke_live(
        &state,
        &filter,
        body.tool.as_deref(),
        &body.reason,
        &caller.actor(),
        "mandates".to_owned(),
    )
    .await?;
    Ok(Json(BulkResult { revoked }))
}

/// Page of the revocation feed.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// The last `seq` seen (0 for the beginning).
    pub after: Option<i64>,
    /// Entries per page, 1 to 1000 (default 500).
    pub limit: Option<u32>,
    /// Include entries whose mandates have expired.
    #[serde(default)]
    pub include_expired: bool,
}

/// One page of the feed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FeedPage {
    /// Entries after the cursor, in order.
    pub items: Vec<FeedEntry>,
    /// Pass as `after` next time (the last `seq` returned, or the one given).
    pub next_after: i64,
    /// How long past its mandate's expiry an entry stays listed (the largest skew a verifier may
    /// tolerate, plus a second: expiry compares whole seconds). Keep entries at least this long.
    pub kept_past_expiry_seconds: i64,
}

/// The revocation feed: revoked ids after a cursor, in commit order. Entries carry no names or
/// reasons, so the feed is public, like the keys.
#[utoipa::path(
    get, path = "/v1/revocations", tag = "revocations",
    params(FeedQuery),
    responses(
        (status = 200, description = "Entries after the cursor", body = FeedPage),
        (status = 400, description = "Malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Limit out of range", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn feed(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<FeedQuery>,
) -> Result<Json<FeedPage>, ApiError> {
    let limit = query.limit.unwrap_or(500);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field("limit", "must be between 1 and 1000"));
    }
    let after = query.after.unwrap_or(0).max(0);
    let rows = state
        .store
        .revocations_after(after, limit, retained_since(&state), query.include_expired)
        .await?;
    let items: Vec<FeedEntry> = rows.iter().map(FeedEntry::from).collect();
    let next_after = items.last().map_or(after, |e| e.seq);
    Ok(Json(FeedPage {
        items,
        next_after,
        kept_past_expiry_seconds: KEEP_REVOKED_SECONDS,
    }))
}

/// Entries stay in the feed until their mandate's expiry plus the largest clock skew a verifier
/// tolerates, plus a second: a token is accepted that long past its expiry, so its revocation
/// must be known.
fn retained_since(state: &AppState) -> chrono::DateTime<chrono::Utc> {
    state.clock.now() - chrono::Duration::seconds(KEEP_REVOKED_SECONDS)
}

/// Who opens a stream: a registered reporter by its credential, else the connection's address.
pub struct StreamCaller(String);

impl FromRequestParts<AppState> for StreamCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if bearer(&parts.headers).is_some() {
            let super::receipts::Reporting(reporter) =
                super::receipts::Reporting::from_request_parts(parts, state).await?;
            return Ok(StreamCaller(format!("reporter:{}", reporter.id)));
        }
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or_else(|| "unknown".to_owned(), |info| info.0.ip().to_string());
        Ok(StreamCaller(format!("peer:{peer}")))
    }
}

/// Where a stream starts.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// The last `seq` seen (0 for the beginning).
    pub after: Option<i64>,
}

/// The feed as Server-Sent Events: every entry after the cursor, then each new one as it commits
/// on any replica (`id` is the `seq`; `data` a feed entry).
#[utoipa::path(
    get, path = "/v1/revocations/stream", tag = "revocations",
    params(StreamQuery),
    responses(
        (status = 200, description = "An endless event stream", content_type = "text/event-stream", body = FeedEntry),
        (status = 400, description = "Malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "A bearer credential that is not an active reporter's", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many streams open, in all or for this caller; poll the feed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn stream(
    State(state): State<AppState>,
    caller: StreamCaller,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // The place lives as long as the stream; without one the caller polls the feed instead.
    let permit = state.streams.take(caller.0).map_err(|refused| {
        ApiError::Unavailable(match refused {
            NoSlot::Full => "too many revocation streams; poll /v1/revocations".to_owned(),
            NoSlot::CallerFull => format!(
                "this caller has {STREAMS_PER_CALLER} revocation streams open; \
                 poll /v1/revocations"
            ),
        })
    })?;
    let signal = state.store.revocation_signal();
    let after = query.after.unwrap_or(0).max(0);
    let start = (
        (state, permit),
        signal,
        after,
        VecDeque::<Event>::new(),
        true,
    );
    let events = futures_util::stream::unfold(
        start,
        |((state, permit), mut signal, mut after, mut queue, mut read_now)| async move {
            loop {
                if let Some(event) = queue.pop_front() {
                    return Some((Ok(event), ((state, permit), signal, after, queue, read_now)));
                }
                if !read_now {
                    // Wake on a commit anywhere, or re-read now and then in case a wake-up was lost.
                    let _ = tokio::time::timeout(Duration::from_secs(5), signal.recv()).await;
                }
                match state
                    .store
                    .revocations_after(after, 500, retained_since(&state), false)
                    .await
                {
                    Ok(rows) => {
                        // A full page means more may follow at once.
                        read_now = rows.len() == 500;
                        for row in &rows {
                            let entry = FeedEntry::from(row);
                            after = entry.seq;
                            let data = serde_json::to_string(&entry).unwrap_or_default();
                            queue.push_back(
                                Event::default()
                                    .id(entry.seq.to_string())
                                    .event("revocation")
                                    .data(data),
                            );
                        }
                    }
                    Err(error) => {
                        // End the stream: keep-alives must not tell followers their copy is
                        // current while the feed cannot be read.
                        tracing::warn!(%error, "revocation stream cannot read the feed");
                        return None;
                    }
                }
            }
        },
    );
    // Keep-alives every 5 s also tell followers their copy is current.
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(5))))
}

//! The token endpoint's side of human approvals, in the shapes OpenID CIBA (Client-Initiated
//! Backchannel Authentication Core 1.0) gives its poll mode: an exchange that needs approval
//! answers `authorization_pending` with the acknowledgement's `auth_req_id`,
//! `binding_message`, `expires_in` and `interval`; the orchestrator polls with
//! `grant_type=urn:openid:params:grant-type:ciba` and `auth_req_id`, authenticated as for the
//! exchange, and gets `authorization_pending`, `slow_down` (sooner than `interval`),
//! `expired_token`, `access_denied`, `invalid_grant` (unknown, or already issued), or the
//! mandate.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::server::approvals::{self, ApprovalError, POLL_INTERVAL};
use crate::server::caller::Orchestrator;
use crate::server::error::ApiError;
use crate::server::mint::{collect, Issued, MintError};
use crate::server::model::approval::{ApprovalRequest, ApprovalState};
use crate::server::state::AppState;
use crate::server::store::StoreError;

/// CIBA's grant type.
pub const GRANT: &str = "urn:openid:params:grant-type:ciba";

/// Most polls remembered (for `slow_down`); older ones go first.
const MAX_REMEMBERED_POLLS: usize = 10_000;

/// When each request was last polled, on this replica.
static LAST_POLLS: LazyLock<Mutex<HashMap<Uuid, Instant>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Why a poll gives no mandate.
pub(super) enum Refused {
    /// An OAuth error code (answered 400) and its description.
    OAuth(&'static str, String),
    /// Any other refusal of the service.
    Api(ApiError),
}

/// The description and the CIBA acknowledgement's members of an `authorization_pending`
/// answer to an exchange that waits for approval.
pub(super) fn pending(
    request: &ApprovalRequest,
    now: DateTime<Utc>,
) -> (&'static str, serde_json::Map<String, serde_json::Value>) {
    let mut members = serde_json::Map::new();
    members.extend([
        ("auth_req_id".to_owned(), request.id.to_string().into()),
        (
            "binding_message".to_owned(),
            request.binding_message.clone().into(),
        ),
        (
            "expires_in".to_owned(),
            (request.expires_at - now).num_seconds().max(0).into(),
        ),
        ("interval".to_owned(), POLL_INTERVAL.into()),
    ]);
    let description = "a requested operation needs human approval; poll with auth_req_id";
    (description, members)
}

/// A refused collection in CIBA's words where they fit: a principal revoked since is
/// `access_denied`; a rule changed since, or a mandate collected meanwhile, `invalid_grant`.
fn collect_refused(error: MintError) -> Refused {
    let text = error.to_string();
    match error {
        MintError::Approval(ApprovalError::PrincipalRevoked(_) | ApprovalError::Denied { .. }) => {
            Refused::OAuth("access_denied", text)
        }
        MintError::Approval(ApprovalError::GatedSince(_) | ApprovalError::State { .. })
        | MintError::Store(StoreError::Conflict(_)) => Refused::OAuth("invalid_grant", text),
        other => Refused::Api(other.into()),
    }
}

/// Whether `id` was polled less than the interval ago (and notes this poll).
fn too_soon(id: Uuid, now: Instant) -> bool {
    let mut polls = LAST_POLLS.lock().unwrap_or_else(PoisonError::into_inner);
    if polls.len() >= MAX_REMEMBERED_POLLS {
        let horizon = Duration::from_secs(600);
        polls.retain(|_, at| now.saturating_duration_since(*at) < horizon);
        if polls.len() >= MAX_REMEMBERED_POLLS {
            polls.clear();
        }
    }
    let last = polls.insert(id, now);
    last.is_some_and(|at| now.saturating_duration_since(at) < Duration::from_secs(POLL_INTERVAL))
}

/// A poll of the CIBA grant for `auth_req_id` by `orchestrator`: the mandate, and whether it
/// is bound to a key.
pub(super) async fn poll(
    state: &AppState,
    orchestrator: &Orchestrator,
    auth_req_id: &str,
) -> Result<(Issued, bool), Refused> {
    let unknown = || Refused::OAuth("invalid_grant", "unknown auth_req_id".to_owned());
    let id: Uuid = auth_req_id.parse().map_err(|_| unknown())?;
    let request = match approvals::shown_to_agent(state, &orchestrator.agent.id, id).await {
        Ok(request) => request,
        Err(ApprovalError::NotFound(_)) => return Err(unknown()),
        Err(error) => return Err(Refused::Api(error.into())),
    };
    let now = state.clock.now();
    let answer = |error, text: String| Err(Refused::OAuth(error, text));
    match request.state_at(now) {
        ApprovalState::Pending if too_soon(id, state.clock.instant()) => answer(
            "slow_down",
            format!("poll at most every {POLL_INTERVAL} s (and add 5 s now)"),
        ),
        ApprovalState::Pending => answer(
            "authorization_pending",
            "the approvers have not decided yet".to_owned(),
        ),
        ApprovalState::Denied => answer(
            "access_denied",
            approvals::not_collectable(&request, ApprovalState::Denied).to_string(),
        ),
        ApprovalState::Expired => answer(
            "expired_token",
            "the approval request expired; request the mandate anew".to_owned(),
        ),
        ApprovalState::Issued => answer(
            "invalid_grant",
            "the mandate of this auth_req_id was issued already".to_owned(),
        ),
        ApprovalState::Approved => {
            let bound = request.held.holder_key.is_some();
            match collect(state, orchestrator, id).await {
                Ok(issued) => Ok((issued, bound)),
                Err(error) => Err(collect_refused(error)),
            }
        }
    }
}

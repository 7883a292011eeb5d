//! Receipts and attribution: verifiers report what was done with a mandate, and IAM teams ask
//! what agents did on behalf of whom, through which hops, with the whole chain per action.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::admin::auth::Reader;
use super::extract::{ApiJson, ApiQuery};
use crate::server::error::{ApiError, Problem};
use crate::server::state::AppState;
use crate::server::store::{
    new_id, ActionFilter, AuditOutcome, NewAuditEvent, Receipt, ReceiptDetails,
};
use crate::token::keys::parse_public_key;
use std::sync::Arc;

use crate::token::verify::{
    check, AccessRequest, AgentKeys, Checked, Hop, Trust, VerifyOptions, MAX_SKEW_SECONDS,
};
use crate::token::TokenError;

/// Most receipts in one report.
pub const MAX_RECEIPTS: usize = 100;

/// One use of a mandate, as a verifier reports it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiptBody {
    /// The token presented (it binds the receipt to its mandate and to the hop that used it).
    pub token: String,
    /// The tool called.
    pub tool: String,
    /// The operation performed.
    pub operation: String,
    /// The resource, if the call named one.
    #[serde(default)]
    pub resource: Option<String>,
    /// `success`, `failure` or `denied`.
    #[schema(example = "success")]
    pub outcome: String,
    /// When the call happened.
    pub occurred_at: DateTime<Utc>,
    /// SHA-256, hex, of the call's arguments in RFC 8785 canonical JSON.
    #[serde(default)]
    pub arguments_sha256: Option<String>,
    /// Why the call was denied, or how it failed (at most 512 characters).
    #[serde(default)]
    pub reason: Option<String>,
    /// What became of the output: `redacted` or `blocked`.
    #[serde(default)]
    pub output: Option<String>,
    /// How long the call took, in milliseconds.
    #[serde(default)]
    pub latency_ms: Option<u64>,
}

/// `POST /v1/receipts`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiptsBody {
    /// Up to 100 receipts.
    pub receipts: Vec<ReceiptBody>,
}

/// How many receipts were recorded.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Recorded {
    /// Receipts recorded.
    pub recorded: usize,
}

/// The keys this service verifies with: its root keys and every registered agent key.
pub(crate) async fn trust_material(
    state: &AppState,
) -> Result<(crate::token::keys::KeySet, AgentKeys), ApiError> {
    let keys = state
        .keys
        .document()
        .key_set()
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    let mut agent_keys = AgentKeys::new();
    for key in state.store.all_agent_keys().await? {
        if let Ok(public) = parse_public_key(&key.public_key) {
            agent_keys.entry(key.agent_id).or_default().push(public);
        }
    }
    Ok((keys, agent_keys))
}

/// Checks `token` with this service's keys (signatures, block vocabulary, attestations) on
/// the bounded verification pool. The outer error is the service's (503 when the pool is too
/// busy to take the work in time), the inner the token's.
pub(crate) async fn check_token(
    state: &AppState,
    token: &str,
) -> Result<Result<Checked, TokenError>, ApiError> {
    // Not a mandate/v1 token at all: refused before any read of the store. The vocabulary
    // is one bounded pass over the bytes; `check` reads it again with the signatures.
    let options = VerifyOptions::default();
    if token.len() > options.max_bytes {
        return Ok(Err(TokenError::TooLarge));
    }
    if let Err(refused) = crate::token::vocabulary::read(token, options.max_blocks) {
        return Ok(Err(refused));
    }
    let (keys, agent_keys) = trust_material(state).await?;
    let token = token.to_owned();
    let checked = crate::verifier::pool::run(move || {
        let trust = Trust {
            keys: &keys,
            agent_keys: &agent_keys,
            is_revoked: &|_| false,
        };
        check(&token, &trust, &options)
    })
    .await;
    match checked {
        Err(TokenError::Busy) => Err(busy()),
        checked => Ok(checked),
    }
}

/// The answer when token work did not get its turn in time.
pub(crate) fn busy() -> ApiError {
    ApiError::Unavailable("too many tokens being verified; retry shortly".to_owned())
}

/// Whether the token `checked` allowed the call `receipt` reports, at the time it reports:
/// `Ok(Err((field, reason)))` when it did not.
async fn allowed_then(
    state: &AppState,
    checked: Arc<Checked>,
    receipt: &ReceiptBody,
) -> Result<Result<(), (&'static str, String)>, ApiError> {
    for id in checked.revocation_ids() {
        if let Some(revoked) = state.store.revocation(id).await? {
            if revoked.entry.revoked_at <= receipt.occurred_at {
                return Ok(Err((
                    "token",
                    "revoked before the call it reports".to_owned(),
                )));
            }
        }
    }
    let request = AccessRequest {
        tool: receipt.tool.clone(),
        operation: receipt.operation.clone(),
        now: receipt.occurred_at,
    };
    let resource = receipt.resource.clone();
    // Of a constrained operation's arguments, mandate holds only the digest: the reporter
    // checked them. Everything else the token says is checked here.
    let constrained = checked
        .constraints_on(&receipt.tool, &receipt.operation)
        .next()
        .is_some();
    let options = VerifyOptions {
        skew: chrono::Duration::seconds(MAX_SKEW_SECONDS),
        ..VerifyOptions::default()
    };
    let approved_digest = checked
        .verified()
        .approvals
        .iter()
        .find(|a| a.tool == receipt.tool && a.operation == receipt.operation)
        .and_then(|a| a.arguments_sha256.clone());
    // The reporter checked the holder's proof of possession; the grant is checked here.
    let allowed = crate::verifier::pool::run(move || {
        let holder = checked.verified().holder_key.clone();
        let resource = resource.as_deref();
        let proven = holder.as_deref();
        checked.authorize_held(&|_| false, &request, resource, None, proven, &options)
    })
    .await;
    if let Err(TokenError::Busy) = allowed {
        return Err(busy());
    }
    // Of an operation approved for one call, the digest must be the approved one.
    let approved = approved_digest.as_deref();
    let allowed = match allowed {
        Err(TokenError::ArgumentNotAllowed { .. }) if constrained => Ok(()),
        Err(TokenError::ArgumentsNotApproved { .. })
            if approved.is_some() && approved == receipt.arguments_sha256.as_deref() =>
        {
            Ok(())
        }
        other => other.map(|_| ()),
    };
    Ok(allowed.map_err(|e| {
        let field = match e {
            TokenError::Expired => "occurred_at",
            _ => "operation",
        };
        (
            field,
            format!(
                "the token presented did not allow this call then: {}",
                e.code()
            ),
        )
    }))
}

/// A registered, active reporter, by its credential.
pub struct Reporting(pub crate::server::model::reporter::Reporter);

impl axum::extract::FromRequestParts<AppState> for Reporting {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, ApiError> {
        let refused = || {
            ApiError::Unauthorized(
                "send a registered reporter's credential as `Authorization: Bearer mnd_rep_…`"
                    .into(),
            )
        };
        let secret = super::extract::bearer(&parts.headers).ok_or_else(refused)?;
        if !crate::server::secrets::is_well_formed(
            crate::server::secrets::REPORTER_SECRET_PREFIX,
            secret,
        ) {
            return Err(refused());
        }
        let reporter = state
            .store
            .reporter_by_secret(&crate::server::secrets::hash(secret))
            .await?
            .ok_or_else(refused)?;
        Ok(Reporting(reporter))
    }
}

/// Report uses of mandates (a registered verifier or gateway, by its credential). Each receipt
/// must carry the token used, signed by mandate's keys, and must verify as the call it reports;
/// all are recorded, with one audit event naming the reporter, or none is.
#[utoipa::path(
    post, path = "/v1/receipts", tag = "receipts",
    security(("reporter_secret" = [])),
    request_body = ReceiptsBody,
    responses(
        (status = 200, description = "Recorded", body = Recorded),
        (status = 401, description = "No credential of an active reporter", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A receipt is invalid or its token is not a mandate; none recorded", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn report(
    State(state): State<AppState>,
    Reporting(reporter): Reporting,
    ApiJson(body): ApiJson<ReceiptsBody>,
) -> Result<Json<Recorded>, ApiError> {
    if body.receipts.is_empty() || body.receipts.len() > MAX_RECEIPTS {
        return Err(ApiError::field("receipts", "send 1 to 100 receipts"));
    }
    let now = state.clock.now();
    let mut receipts = Vec::with_capacity(body.receipts.len());
    for (i, r) in body.receipts.into_iter().enumerate() {
        let field = |name: &str| format!("receipts[{i}].{name}");
        let mut check = crate::server::model::Validation::new();
        check.id(&field("tool"), &r.tool);
        check.id(&field("operation"), &r.operation);
        check.optional_text(&field("resource"), r.resource.as_deref(), 256);
        if !["success", "failure", "denied"].contains(&r.outcome.as_str()) {
            check.fail(field("outcome"), "must be success, failure or denied");
        }
        let is_digest = |d: &str| {
            d.len() == 64
                && d.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if r.arguments_sha256.as_deref().is_some_and(|d| !is_digest(d)) {
            check.fail(field("arguments_sha256"), "must be 64 lowercase hex digits");
        }
        check.optional_text(&field("reason"), r.reason.as_deref(), 512);
        if r.output
            .as_deref()
            .is_some_and(|o| !["redacted", "blocked"].contains(&o))
        {
            check.fail(field("output"), "must be redacted or blocked");
        }
        if r.latency_ms.is_some_and(|ms| ms > 86_400_000) {
            check.fail(field("latency_ms"), "must be at most a day");
        }
        check.finish()?;
        let checked = check_token(&state, &r.token)
            .await?
            .map_err(|e| ApiError::field(field("token"), format!("not a mandate: {}", e.code())))?;
        let mandate_id: Uuid = checked
            .verified()
            .mandate_id
            .parse()
            .map_err(|_| ApiError::field(field("token"), "not a mandate"))?;
        let Some(mandate) = state.store.mandate(mandate_id).await? else {
            return Err(ApiError::field(field("token"), "its mandate is unknown"));
        };
        let slack = chrono::Duration::seconds(60);
        let latest = mandate.expires_at.min(now) + slack;
        if r.occurred_at < mandate.issued_at - slack || r.occurred_at > latest {
            return Err(ApiError::field(
                field("occurred_at"),
                "outside its mandate's lifetime (or in the future)",
            ));
        }
        // A call that went ahead must be one the presented token allowed when it was made: its
        // own narrowing, not revoked by then. A denied call is reported as tried.
        let checked = Arc::new(checked);
        if r.outcome != "denied" {
            allowed_then(&state, Arc::clone(&checked), &r)
                .await?
                .map_err(|(name, reason)| ApiError::field(field(name), reason))?;
        }
        receipts.push(Receipt {
            id: new_id(now),
            mandate_id,
            revocation_id: checked.revocation_ids().last().cloned().unwrap_or_default(),
            hops: checked.verified().hops.clone(),
            tool: r.tool,
            operation: r.operation,
            resource: r.resource,
            outcome: r.outcome,
            occurred_at: r.occurred_at,
            recorded_at: now,
            reporter_id: Some(reporter.id.clone()),
            details: ReceiptDetails {
                arguments_sha256: r.arguments_sha256,
                reason: r.reason,
                output: r.output,
                latency_ms: r.latency_ms,
            },
        });
    }
    let audit = NewAuditEvent {
        id: new_id(now),
        occurred_at: now,
        actor: format!("reporter:{}", reporter.id),
        action: "receipts.recorded".to_owned(),
        target: None,
        outcome: AuditOutcome::Success,
        details: serde_json::json!({
            "receipts": receipts.iter().map(|r| serde_json::json!({
                "receipt": r.id, "mandate": r.mandate_id, "tool": r.tool,
                "operation": r.operation, "outcome": r.outcome,
            })).collect::<Vec<_>>(),
        }),
    };
    let recorded = receipts.len();
    state
        .metrics
        .commit(
            "insert_receipts",
            state.writers.receipts.submit((receipts, audit)),
        )
        .await?;
    Ok(Json(Recorded { recorded }))
}

/// Filters of an attribution query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ActionQuery {
    /// On behalf of this principal (subject).
    pub principal: Option<String>,
    /// Proven by this issuer URL.
    pub issuer: Option<String>,
    /// Through this orchestrator.
    pub agent: Option<String>,
    /// On this tool.
    pub tool: Option<String>,
    /// Under this mandate.
    pub mandate: Option<Uuid>,
    /// For this task.
    pub task: Option<String>,
    /// At or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Before this time.
    pub to: Option<DateTime<Utc>>,
    /// At most this many actions, 1 to 10000 (default 1000).
    pub limit: Option<u32>,
    /// `json` (default) or `ndjson` (one action per line, for a SIEM).
    pub format: Option<String>,
}

/// The principal of an action.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ActionPrincipal {
    /// Subject.
    pub subject: String,
    /// Issuer URL.
    pub issuer: String,
}

/// One action with its whole chain: principal → orchestrator → hops → tool → operation →
/// outcome.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Action {
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// On whose behalf.
    pub principal: ActionPrincipal,
    /// The orchestrator the mandate was minted for.
    pub orchestrator: String,
    /// Every hop after it, attested or claimed.
    #[schema(value_type = Vec<Object>)]
    pub hops: Vec<Hop>,
    /// The tool.
    pub tool: String,
    /// The operation.
    pub operation: String,
    /// The resource, if named.
    pub resource: Option<String>,
    /// How it ended.
    pub outcome: String,
    /// The mandate.
    pub mandate_id: Uuid,
    /// The task.
    pub task_id: String,
    /// The receipt.
    pub receipt_id: Uuid,
    /// The verifier or gateway that reported it.
    pub reporter: Option<String>,
    /// What the reporter added: the arguments' digest, a denial's reason, what became of the
    /// output, the latency.
    pub details: ReceiptDetails,
    /// The human approval the mandate carries for this operation: who approved it, when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub approval: Option<crate::token::approval::Approval>,
}

/// The approval an issuance recorded for `operation` of `tool`, if it carries one.
fn approval_of(
    mandate: &crate::server::store::Issuance,
    tool: &str,
    operation: &str,
) -> Option<crate::token::approval::Approval> {
    let approvals = mandate.request_meta.get("approvals")?;
    let approvals: Vec<crate::token::approval::Approval> =
        serde_json::from_value(approvals.clone()).ok()?;
    approvals
        .into_iter()
        .find(|a| a.tool == tool && a.operation == operation)
}

/// What agents did, on behalf of whom, through which hops: by principal, agent, tool, mandate,
/// task and time range, as JSON or NDJSON.
#[utoipa::path(
    get, path = "/v1/admin/attribution", tag = "admin", security(("admin_token" = [])),
    params(ActionQuery),
    responses(
        (status = 200, description = "Actions, oldest first (JSON array, or NDJSON with format=ndjson)", body = Vec<Action>),
        (status = 400, description = "Malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid admin token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Limit or format out of range", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn attribution(
    State(state): State<AppState>,
    Reader(_reader): Reader,
    ApiQuery(query): ApiQuery<ActionQuery>,
) -> Result<Response, ApiError> {
    let limit = query.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::field("limit", "must be between 1 and 10000"));
    }
    let ndjson = match query.format.as_deref() {
        None | Some("json") => false,
        Some("ndjson") => true,
        Some(_) => return Err(ApiError::field("format", "must be json or ndjson")),
    };
    let filter = ActionFilter {
        principal: query.principal,
        issuer: query.issuer,
        agent: query.agent,
        tool: query.tool,
        mandate: query.mandate,
        task: query.task,
        from: query.from,
        to: query.to,
    };
    let actions: Vec<Action> = state
        .store
        .actions(&filter, limit)
        .await?
        .into_iter()
        .map(|(receipt, mandate)| Action {
            approval: approval_of(&mandate, &receipt.tool, &receipt.operation),
            occurred_at: receipt.occurred_at,
            principal: ActionPrincipal {
                subject: mandate.principal_subject,
                issuer: mandate.principal_issuer,
            },
            orchestrator: mandate.agent_id,
            hops: receipt.hops,
            tool: receipt.tool,
            operation: receipt.operation,
            resource: receipt.resource,
            outcome: receipt.outcome,
            mandate_id: mandate.id,
            task_id: mandate.task_id,
            receipt_id: receipt.id,
            reporter: receipt.reporter_id,
            details: receipt.details,
        })
        .collect();
    if !ndjson {
        return Ok(Json(actions).into_response());
    }
    let mut body = String::new();
    for action in &actions {
        body.push_str(&serde_json::to_string(action).unwrap_or_default());
        body.push('\n');
    }
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

//! Revoking mandates: one, a holder's branch, or every live mandate a filter selects. Each call
//! records every newly revoked id and one audit event naming who, what and why; revoking what
//! is already revoked changes nothing and is not audited again.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::model::{Invalid, Validation};
use super::state::AppState;
use super::store::{
    new_id, AuditOutcome, Issuance, MandateFilter, NewAuditEvent, NewRevocation, Revocation,
    StoreError,
};

/// Longest reason accepted.
pub const MAX_REASON: usize = 512;
/// Mandate ids listed in one audit event (the revocation rows record every one).
const AUDITED_IDS: usize = 1000;

/// A revocation as answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RevocationView {
    /// The mandate it belongs to.
    pub mandate_id: Option<Uuid>,
    /// The revoked revocation id, hex.
    pub revocation_id: String,
    /// Who revoked it.
    pub revoked_by: String,
    /// Why.
    pub reason: String,
    /// When.
    pub revoked_at: DateTime<Utc>,
    /// When the mandate expires anyway.
    pub expires_at: DateTime<Utc>,
}

impl From<&Revocation> for RevocationView {
    fn from(r: &Revocation) -> Self {
        RevocationView {
            mandate_id: r.entry.mandate_id,
            revocation_id: hex::encode(&r.entry.revocation_id),
            revoked_by: r.entry.revoked_by.clone(),
            reason: r.entry.reason.clone(),
            revoked_at: r.entry.revoked_at,
            expires_at: r.entry.expires_at,
        }
    }
}

/// Checks a reason: present, bounded, printable.
pub fn check_reason(reason: &str) -> Result<(), Invalid> {
    let mut check = Validation::new();
    check.text("reason", reason, MAX_REASON, true);
    check.finish()
}

/// Revokes the given ids (authority ids of mandates, or a branch's last block) with one audit
/// event; returns what was newly revoked.
pub async fn revoke_ids(
    state: &AppState,
    ids: Vec<(Vec<u8>, Option<Uuid>, DateTime<Utc>)>,
    reason: &str,
    revoked_by: &str,
    action: &str,
    target: String,
    details: serde_json::Value,
) -> Result<Vec<Revocation>, StoreError> {
    let now = state.clock.now();
    let entries: Vec<NewRevocation> = ids
        .into_iter()
        .map(|(revocation_id, mandate_id, expires_at)| NewRevocation {
            id: new_id(now),
            revocation_id,
            mandate_id,
            reason: reason.to_owned(),
            revoked_by: revoked_by.to_owned(),
            revoked_at: now,
            expires_at,
        })
        .collect();
    let mandate_ids: Vec<String> = entries
        .iter()
        .filter_map(|e| e.mandate_id.map(|id| id.to_string()))
        .take(AUDITED_IDS)
        .collect();
    let audit = NewAuditEvent {
        id: new_id(now),
        occurred_at: now,
        actor: revoked_by.to_owned(),
        action: action.to_owned(),
        target: Some(target),
        outcome: AuditOutcome::Success,
        details: json!({
            "reason": reason, "count": entries.len(), "mandate_ids": mandate_ids,
            "selection": details,
        }),
    };
    let revoked = state
        .metrics
        .commit("revoke", state.store.revoke(&entries, &audit))
        .await?;
    state.metrics.revoked(action, revoked.len() as u64);
    Ok(revoked)
}

/// Revokes every live mandate `filter` selects (and, when `tool` is set, only those granting
/// it). Returns how many were revoked.
pub async fn revoke_live(
    state: &AppState,
    filter: &MandateFilter,
    tool: Option<&str>,
    reason: &str,
    revoked_by: &str,
    target: String,
) -> Result<usize, StoreError> {
    let now = state.clock.now();
    let mandates: Vec<Issuance> = state
        .store
        .live_mandates(filter, now)
        .await?
        .into_iter()
        .filter(|m| tool.is_none_or(|t| m.scope.iter().any(|r| r.tool == t)))
        .collect();
    if mandates.is_empty() {
        return Ok(0);
    }
    let ids = mandates
        .iter()
        .map(|m| (m.revocation_id.clone(), Some(m.id), m.expires_at))
        .collect();
    let selection = json!({
        "agent": filter.agent, "principal_subject": filter.principal_subject,
        "principal_issuer": filter.principal_issuer, "task": filter.task,
        "issued_before": filter.issued_before, "tool": tool,
    });
    let revoked = revoke_ids(
        state,
        ids,
        reason,
        revoked_by,
        "mandates.revoked",
        target,
        selection,
    )
    .await?;
    Ok(revoked.len())
}

/// Revokes every live mandate that a status no longer allows: of agents suspended or retired,
/// granting a tool disabled or retired, proven by an issuer disabled, or holding a right that no
/// policy which granted it still grants ([`revoke_ungranted`]), or issued to a principal before
/// they were offboarded. A status change commits
/// before its sweep; if the sweep then fails, repeating the request re-runs it, and this runs
/// it at start-up and every minute in any case. Returns how many were revoked.
pub async fn reconcile(state: &AppState) -> Result<usize, StoreError> {
    use super::model::agent::AgentStatus;
    use super::model::issuer::IssuerStatus;
    use super::model::tool::ToolStatus;
    use super::store::{all_agents, all_tools, IssuerFilter};
    let store = state.store.as_ref();
    let actor = "reconciler";
    let mut revoked = 0;
    for agent in all_agents(store).await? {
        if agent.status != AgentStatus::Active {
            let filter = MandateFilter {
                agent: Some(agent.id.clone()),
                ..MandateFilter::default()
            };
            let reason = format!("agent {}", agent.status.as_str());
            revoked += revoke_live(
                state,
                &filter,
                None,
                &reason,
                actor,
                format!("agent:{}", agent.id),
            )
            .await?;
        }
    }
    let withdrawn: Vec<_> = all_tools(store)
        .await?
        .into_iter()
        .filter(|t| t.status != ToolStatus::Active)
        .collect();
    if !withdrawn.is_empty() {
        // One read of the live mandates for every withdrawn tool.
        let live = store
            .live_mandates(&MandateFilter::default(), state.clock.now())
            .await?;
        for tool in withdrawn {
            let ids: Vec<_> = live
                .iter()
                .filter(|m| m.scope.iter().any(|r| r.tool == tool.id))
                .map(|m| (m.revocation_id.clone(), Some(m.id), m.expires_at))
                .collect();
            if ids.is_empty() {
                continue;
            }
            let reason = format!("tool {}", tool.status.as_str());
            let selection = json!({"tool": tool.id});
            revoked += revoke_ids(
                state,
                ids,
                &reason,
                actor,
                "mandates.revoked",
                format!("tool:{}", tool.id),
                selection,
            )
            .await?
            .len();
        }
    }
    revoked += revoke_ungranted(state, actor).await?;
    // Principals offboarded recently enough that mandates issued before it may still be live.
    let oldest_live =
        state.clock.now() - chrono::Duration::seconds(i64::from(state.config.max_ttl_seconds));
    for ((issuer_url, subject), not_after) in store.principal_cutoffs().await? {
        if not_after < oldest_live {
            continue;
        }
        let filter = MandateFilter {
            principal_subject: Some(subject.clone()),
            principal_issuer: Some(issuer_url),
            issued_before: Some(not_after + chrono::Duration::microseconds(1)),
            ..MandateFilter::default()
        };
        revoked += revoke_live(
            state,
            &filter,
            None,
            "principal offboarded",
            actor,
            format!("principal:{subject}"),
        )
        .await?;
    }
    let disabled = IssuerFilter {
        status: Some(IssuerStatus::Disabled.as_str().to_owned()),
    };
    let issuers = super::store::every_issuer(store, &disabled).await?;
    for issuer in issuers {
        let filter = MandateFilter {
            principal_issuer: Some(issuer.issuer_url.clone()),
            ..MandateFilter::default()
        };
        revoked += revoke_live(
            state,
            &filter,
            None,
            "issuer disabled",
            actor,
            format!("issuer:{}", issuer.id),
        )
        .await?;
    }
    Ok(revoked)
}

/// Revokes every live mandate holding a right that none of the policies which granted it at
/// mint still grants to its agent (a policy disabled, deleted, or changed to grant less).
/// Mandates minted without that record are left to expire. Returns how many were revoked.
pub async fn revoke_ungranted(state: &AppState, revoked_by: &str) -> Result<usize, StoreError> {
    let policies = state.store.all_policies().await?;
    let live = state
        .store
        .live_mandates(&MandateFilter::default(), state.clock.now())
        .await?;
    let ids: Vec<_> = live
        .iter()
        .filter(|m| {
            let granted_by: Option<Vec<super::policy::GrantedBy>> = m
                .request_meta
                .get("granted_by")
                .and_then(|v| serde_json::from_value(v.clone()).ok());
            granted_by.is_some_and(|rights| {
                rights
                    .iter()
                    .any(|right| !right.still_granted(&m.agent_id, &policies))
            })
        })
        .map(|m| (m.revocation_id.clone(), Some(m.id), m.expires_at))
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    let revoked = revoke_ids(
        state,
        ids,
        "no policy grants it any more",
        revoked_by,
        "mandates.revoked",
        "policies".to_owned(),
        json!({"policies": "no longer granting"}),
    )
    .await?;
    Ok(revoked.len())
}

//! The two ends of a mint that needs human approval: holding it as an approval request when the
//! policies gate an operation behind approval, and minting it once the request is approved.
//! The decisions in between are `approvals`' (`crate::server::approvals`).

use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde_json::json;

use super::request::MintRequest;
use crate::server::approvals::{self, binding_message, ApprovalError};
use crate::server::model::agent::Agent;
use crate::server::model::approval::{
    ApprovalRequest, ApprovalState, Approvers, GatedRight, HeldMint,
};
use crate::server::model::{Invalid, Validation};
use crate::server::policy::{Gate, Principal};
use crate::server::state::AppState;
use crate::server::store::snapshot::Inventory;
use crate::server::store::{new_id, AuditOutcome, NewAuditEvent, StoreError};
use crate::token::approval::Approval;
use crate::token::canonical::arguments_digest;
use crate::token::Right;

/// Checks the request's `arguments` against what the gates bind: every operation whose approval
/// is for one call names that call's arguments, and no other operation names any. Returns, for
/// each gate, the arguments it binds.
pub(super) fn bound_arguments(
    request: &MintRequest,
    gates: &[Gate],
) -> Result<Vec<Option<serde_json::Value>>, Invalid> {
    let mut check = Validation::new();
    let binds = |tool: &str, operation: &str| {
        gates
            .iter()
            .any(|g| g.rule.bind_arguments && g.tool == tool && g.operation == operation)
    };
    for (i, grant) in request.scope.iter().enumerate() {
        if grant.arguments.is_none() {
            continue;
        }
        if let Some(operation) = grant.operations.iter().find(|o| !binds(&grant.tool, o)) {
            check.fail(
                format!("scope[{i}].arguments"),
                format!(
                    "no policy binds an approval of `{}` `{operation}` to arguments: remove them",
                    grant.tool
                ),
            );
        }
    }
    let mut bound = Vec::with_capacity(gates.len());
    for gate in gates {
        let arguments = request
            .scope
            .iter()
            .find(|g| g.tool == gate.tool && g.operations.contains(&gate.operation))
            .and_then(|g| g.arguments.clone());
        if gate.rule.bind_arguments && arguments.is_none() {
            let i = request
                .scope
                .iter()
                .position(|g| g.tool == gate.tool && g.operations.contains(&gate.operation))
                .unwrap_or(0);
            check.fail(
                format!("scope[{i}].arguments"),
                format!(
                    "policy `{}` approves `{}` `{}` for one call: name its arguments",
                    gate.policy, gate.tool, gate.operation
                ),
            );
        }
        bound.push(arguments.filter(|_| gate.rule.bind_arguments));
    }
    check.finish()?;
    Ok(bound)
}

/// Records the mint as an approval request, with its audit event, and announces it.
pub(super) async fn hold(
    state: &AppState,
    agent: &Agent,
    inventory: &Inventory,
    principal: &Principal,
    request: &MintRequest,
    gates: Vec<(&Gate, Option<serde_json::Value>)>,
    request_meta: serde_json::Value,
) -> Result<ApprovalRequest, StoreError> {
    let now = state.clock.now();
    let mut gated = Vec::with_capacity(gates.len());
    for (gate, arguments) in gates {
        let approver_issuer = match &gate.rule.approvers {
            Approvers::Principal(_) => principal.issuer_url.clone(),
            Approvers::Named(named) => {
                let id = named.issuer.as_deref().unwrap_or(&gate.policy_issuer);
                inventory
                    .issuers
                    .iter()
                    .find(|i| i.id == id)
                    .map(|i| i.issuer_url.clone())
                    .ok_or_else(|| {
                        StoreError::Conflict(format!(
                            "policy `{}` names approvers of issuer `{id}`, which is not an \
                             active trusted issuer: nobody could approve; nothing was requested",
                            gate.policy
                        ))
                    })?
            }
        };
        gated.push(GatedRight {
            tool: gate.tool.clone(),
            operation: gate.operation.clone(),
            policy: gate.policy.clone(),
            rule: gate.rule.clone(),
            approver_issuer,
            arguments_sha256: arguments.as_ref().map(|a| arguments_digest(Some(a))),
            arguments,
        });
    }
    let valid = gated
        .iter()
        .map(|g| g.rule.valid_seconds)
        .min()
        .unwrap_or(crate::server::model::approval::DEFAULT_VALID_SECONDS);
    let id = new_id(now);
    let approval = ApprovalRequest {
        id,
        agent_id: agent.id.clone(),
        principal_subject: principal.subject.clone(),
        principal_issuer: principal.issuer_url.clone(),
        binding_message: binding_message(
            &principal.subject,
            &agent.id,
            &request.task_description,
            &gated,
        ),
        gated,
        held: HeldMint {
            task_description: request.task_description.clone(),
            task_ref: request.task_ref.clone(),
            scope: request.scope.clone(),
            ttl_seconds: request.ttl_seconds,
            holder_key: request.holder_key.as_ref().map(|k| k.to_jwk()),
            principal_groups: principal.groups.clone(),
            principal_issuer_id: principal.issuer_id.clone(),
            request_meta,
        },
        state: ApprovalState::Pending,
        created_at: now,
        expires_at: now + Duration::seconds(i64::from(valid)),
        decided_at: None,
        mandate_id: None,
        decisions: Vec::new(),
    };
    let audit = NewAuditEvent {
        id: new_id(now),
        occurred_at: now,
        actor: format!("agent:{}", agent.id),
        action: "approval.requested".to_owned(),
        target: Some(format!("approval:{id}")),
        outcome: AuditOutcome::Success,
        details: json!({
            "principal": {"subject": principal.subject, "issuer": principal.issuer_url},
            "agent": agent.id, "binding_message": approval.binding_message,
            "gated": approval.gated.iter().map(|g| json!({
                "tool": g.tool, "operation": g.operation, "policy": g.policy,
                "approvers": g.rule.approvers, "required": g.rule.required,
                "arguments_sha256": g.arguments_sha256,
            })).collect::<Vec<_>>(),
            "expires_at": approval.expires_at,
        }),
    };
    state.store.insert_approval(&approval, &audit).await?;
    approvals::announce(state, &approval, "approval.requested");
    Ok(approval)
}

/// The principal an approved request holds, unless their mandates were revoked since it was
/// made.
pub(super) fn principal(
    inventory: &Inventory,
    request: &ApprovalRequest,
) -> Result<Principal, ApprovalError> {
    if inventory
        .cutoff(&request.principal_issuer, &request.principal_subject)
        .is_some_and(|cutoff| cutoff >= request.created_at)
    {
        return Err(ApprovalError::PrincipalRevoked(request.id));
    }
    Ok(Principal {
        issuer_id: request.held.principal_issuer_id.clone(),
        issuer_url: request.principal_issuer.clone(),
        subject: request.principal_subject.clone(),
        groups: request.held.principal_groups.clone(),
        issued_at: None,
        single_use: None,
        client: None,
    })
}

/// Whether every gate the policies set now is one the request was approved under, by the same
/// policy and rule: a right gated since, or whose rule changed, needs a new request.
pub(super) fn covers(request: &ApprovalRequest, gates: &[Gate]) -> Result<(), Right> {
    for gate in gates {
        let same = request.gated.iter().any(|g| {
            g.tool == gate.tool
                && g.operation == gate.operation
                && g.policy == gate.policy
                && g.rule == gate.rule
        });
        if !same {
            return Err(Right {
                tool: gate.tool.clone(),
                operation: gate.operation.clone(),
            });
        }
    }
    Ok(())
}

/// What the mandate carries of an approved request: each gated right with the approvers who
/// counted toward it.
pub(super) fn carried(request: &ApprovalRequest) -> Vec<Approval> {
    // Whole seconds, as the token states dates.
    let approved_at = request
        .decided_at
        .unwrap_or(request.created_at)
        .trunc_subsecs(0);
    request
        .gated
        .iter()
        .map(|g| {
            let mut approvers = request.approvers_of(g);
            approvers.truncate(crate::token::approval::MAX_APPROVERS);
            Approval {
                id: request.id.to_string(),
                tool: g.tool.clone(),
                operation: g.operation.clone(),
                approved_at,
                approvers,
                arguments_sha256: g.arguments_sha256.clone(),
            }
        })
        .collect()
}

/// The latest a mandate minted on `request` may expire: its rules' validity after approval.
pub(super) fn latest_expiry(request: &ApprovalRequest) -> DateTime<Utc> {
    let approved_at = request.decided_at.unwrap_or(request.created_at);
    let valid = request
        .gated
        .iter()
        .map(|g| g.rule.valid_seconds)
        .min()
        .unwrap_or(0);
    approved_at + Duration::seconds(i64::from(valid))
}

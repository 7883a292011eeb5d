//! Step 3 of a mint: the requested operations against the agent's ceiling, the tools and the
//! delegation policies, with what only a mandate bound to a key would be granted.

use crate::server::model::agent::Agent;
use crate::server::model::Grant;
use crate::server::policy::{evaluate, Denial, DenialReason, Evaluation, Principal};
use crate::server::store::snapshot::Inventory;

/// Step 3: what the policies grant of the requested operations, and what they deny. An
/// unbound request (`bound` false) gets nothing from a policy that requires binding, and
/// nothing at all from an agent that does: what only binding would grant is denied as
/// `binding_required`.
pub(super) fn evaluate_scope(
    agent: &Agent,
    inventory: &Inventory,
    principal: &Principal,
    requested: &[Grant],
    bound: bool,
) -> Evaluation {
    tracing::info_span!("policy.evaluate").in_scope(|| {
        let tools = &inventory.tools;
        let binding_required = |operation: &str, tool: &str| Denial {
            tool: tool.to_owned(),
            operation: operation.to_owned(),
            reason: DenialReason::BindingRequired,
            argument: None,
        };
        let all_binding_required = || {
            requested
                .iter()
                .flat_map(|g| g.operations.iter().map(|o| binding_required(o, &g.tool)))
                .collect()
        };
        if !bound && agent.require_binding {
            return Evaluation {
                granted: Vec::new(),
                constraints: Vec::new(),
                denied: all_binding_required(),
                policy_ttl: None,
                granted_by: Vec::new(),
                gated: Vec::new(),
            };
        }
        let mut all = evaluate(principal, agent, requested, &inventory.policies, tools);
        // Unbound and no policy requires binding: the evaluation over every policy decides.
        if bound || !inventory.policies.iter().any(|p| p.require_binding) {
            for right in &mut all.granted_by {
                right.bound = bound;
            }
            return all;
        }
        let open: Vec<_> = inventory
            .policies
            .iter()
            .filter(|p| !p.require_binding)
            .cloned()
            .collect();
        let mut unbound = evaluate(principal, agent, requested, &open, tools);
        let granted_when_bound = |d: &Denial| {
            !all.denied
                .iter()
                .any(|a| a.tool == d.tool && a.operation == d.operation)
        };
        for denial in &mut unbound.denied {
            if granted_when_bound(denial) {
                *denial = binding_required(&denial.operation, &denial.tool);
            }
        }
        if unbound.policy_ttl.is_none() && unbound.denied.is_empty() && all.policy_ttl.is_some() {
            unbound.denied = all_binding_required();
        }
        unbound
    })
}

//! Scope evaluation, exhaustively: every rule of `policy.rs` on small inventories.
use chrono::DateTime;

use super::*;
use crate::server::model::agent::AgentKind;
use crate::server::model::policy::AgentScope;
use crate::server::model::tool::ToolKind;

fn grant(tool: &str, ops: &[&str]) -> Grant {
    Grant {
        tool: tool.into(),
        operations: ops.iter().map(|o| o.to_string()).collect(),
        constraints: Default::default(),
        approval: None,
        arguments: None,
    }
}

fn agent(id: &str, ceiling: Vec<Grant>) -> Agent {
    let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    Agent {
        require_binding: false,
        id: id.into(),
        display_name: id.into(),
        kind: AgentKind::Orchestrator,
        owner: "alice".into(),
        team: None,
        description: None,
        ceiling,
        max_ttl_seconds: 900,
        status: AgentStatus::Active,
        version: 1,
        created_at: t,
        updated_at: t,
    }
}

fn tool(id: &str, ops: &[&str]) -> Tool {
    let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    Tool {
        id: id.into(),
        display_name: id.into(),
        kind: ToolKind::Api,
        owner: "bob".into(),
        description: None,
        operations: ops.iter().map(|o| o.to_string()).collect(),
        status: ToolStatus::Active,
        version: 1,
        created_at: t,
        updated_at: t,
    }
}

fn policy(id: &str, agents: AgentScope, grants: Vec<Grant>) -> Policy {
    let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    Policy {
        require_binding: false,
        id: id.into(),
        name: id.into(),
        description: None,
        issuer: "idp".into(),
        subjects: vec![],
        groups: vec!["staff".into()],
        agents,
        grants,
        max_ttl_seconds: 600,
        enabled: true,
        version: 1,
        created_at: t,
        updated_at: t,
    }
}

fn alice(groups: &[&str]) -> Principal {
    Principal {
        issuer_id: "idp".into(),
        issuer_url: "https://idp.example.com/".into(),
        subject: "alice".into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        issued_at: None,
        single_use: None,
        client: None,
    }
}

fn reasons(e: &Evaluation) -> Vec<(String, DenialReason)> {
    e.denied
        .iter()
        .map(|d| (format!("{}:{}", d.tool, d.operation), d.reason))
        .collect()
}

fn constrained(tool: &str, ops: &[&str], constraints: &[(&str, Constraint)]) -> Grant {
    let mut g = grant(tool, ops);
    g.constraints = constraints
        .iter()
        .map(|(n, c)| ((*n).to_owned(), c.clone()))
        .collect();
    g
}

#[test]
fn argument_constraints_intersect_ceiling_policy_and_request() {
    let prefix = |p: &str| Constraint::Prefix(p.into());
    let bot = agent(
        "bot",
        vec![constrained(
            "gh",
            &["create"],
            &[(
                "owner",
                Constraint::Equals(crate::token::constraints::Scalar::Text("acme".into())),
            )],
        )],
    );
    let tools = [tool("gh", &["create"])];
    let policies = [policy(
        "p",
        AgentScope::Any,
        vec![constrained("gh", &["create"], &[("repo", prefix("acme/"))])],
    )];
    let ask = |constraints: &[(&str, Constraint)]| {
        evaluate(
            &alice(&["staff"]),
            &bot,
            &[constrained("gh", &["create"], constraints)],
            &policies,
            &tools,
        )
    };
    // Nothing asked of the arguments: the ceiling's and the policy's constraints both hold.
    let plain = ask(&[]);
    let carried: Vec<(&str, &Constraint)> = plain
        .constraints
        .iter()
        .map(|c| (c.argument.as_str(), &c.constraint))
        .collect();
    assert_eq!(carried.len(), 2, "{carried:?}");
    assert!(carried.contains(&("repo", &prefix("acme/"))));
    // Narrower than the policy: granted, carrying the request's too.
    let narrow = ask(&[("repo", prefix("acme/web"))]);
    assert!(narrow.denied.is_empty());
    assert!(narrow
        .constraints
        .iter()
        .any(|c| c.constraint == prefix("acme/web")));
    assert_eq!(narrow.granted_by[0].constraints.len(), 3);
    // Looser than the policy, or than the ceiling: denied naming the argument.
    let loose = ask(&[("repo", prefix("ac"))]);
    assert_eq!(
        loose.denied[0].reason,
        DenialReason::ArgumentsLooserThanPolicy
    );
    let argument = loose.denied[0].argument.clone().unwrap();
    assert_eq!(
        (argument.name.as_str(), argument.allowed),
        ("repo", prefix("acme/"))
    );
    assert!(loose.granted.is_empty() && loose.constraints.is_empty());
    let outside = ask(&[("owner", prefix("a"))]);
    assert_eq!(outside.denied[0].reason, DenialReason::OutsideAgentCeiling);
    assert_eq!(
        outside.denied[0].argument.as_ref().map(|a| a.name.as_str()),
        Some("owner")
    );
}

#[test]
fn of_the_policies_a_request_fits_the_least_constrained_decides() {
    let bot = agent("bot", vec![grant("gh", &["create"])]);
    let tools = [tool("gh", &["create"])];
    let tight = policy(
        "tight",
        AgentScope::Any,
        vec![constrained(
            "gh",
            &["create"],
            &[("repo", Constraint::Prefix("acme/".into()))],
        )],
    );
    let open = policy("open", AgentScope::Any, vec![grant("gh", &["create"])]);
    let e = evaluate(
        &alice(&["staff"]),
        &bot,
        &[grant("gh", &["create"])],
        &[tight.clone(), open.clone()],
        &tools,
    );
    assert!(e.constraints.is_empty(), "{:?}", e.constraints);
    // A mandate carrying no constraint stays live only while a policy grants it so.
    let by = &e.granted_by[0];
    assert!(by.still_granted("bot", &[tight.clone(), open]));
    assert!(
        !by.still_granted("bot", &[tight]),
        "a policy tightened since does not keep it"
    );
}

#[test]
fn a_request_within_policy_ceiling_and_tool_is_granted_with_the_policy_ttl() {
    let bot = agent("bot", vec![grant("crm", &["read", "write"])]);
    let tools = [tool("crm", &["read", "write"])];
    let mut short = policy("short", AgentScope::Any, vec![grant("crm", &["read"])]);
    short.max_ttl_seconds = 60;
    let long = policy(
        "long",
        AgentScope::Any,
        vec![grant("crm", &["read", "write"])],
    );
    let e = evaluate(
        &alice(&["staff"]),
        &bot,
        &[grant("crm", &["read", "write"])],
        &[short, long],
        &tools,
    );
    assert!(e.denied.is_empty());
    assert_eq!(e.granted.len(), 2);
    // read is allowed for 600 s by `long`: the most generous policy per right counts.
    assert_eq!(e.policy_ttl, Some(600));
}

#[test]
fn every_denied_operation_is_reported_with_its_reason() {
    let bot = agent(
        "bot",
        vec![grant("crm", &["read", "write"]), grant("old", &["x"])],
    );
    let mut old = tool("old", &["x"]);
    old.status = ToolStatus::Disabled;
    let tools = [tool("crm", &["read", "write", "delete"]), old];
    let policies = [policy("p", AgentScope::Any, vec![grant("crm", &["read"])])];
    let requested = [
        grant("crm", &["read", "write", "delete", "purge"]),
        grant("old", &["x"]),
        grant("ghost", &["y"]),
    ];
    let e = evaluate(&alice(&["staff"]), &bot, &requested, &policies, &tools);
    assert_eq!(
        reasons(&e),
        vec![
            ("crm:write".into(), DenialReason::NoPolicy),
            ("crm:delete".into(), DenialReason::OutsideAgentCeiling),
            ("crm:purge".into(), DenialReason::UnknownOperation),
            ("old:x".into(), DenialReason::ToolInactive),
            ("ghost:y".into(), DenialReason::UnknownTool),
        ]
    );
    assert!(e.granted.is_empty(), "all or nothing");
    assert_eq!(e.policy_ttl, None);
}

#[test]
fn a_policy_covers_only_its_issuer_subjects_groups_and_agents() {
    let bot = agent("bot", vec![grant("crm", &["read"])]);
    let tools = [tool("crm", &["read"])];
    let ask = [grant("crm", &["read"])];
    let mut by_subject = policy("s", AgentScope::Any, vec![grant("crm", &["read"])]);
    by_subject.groups = vec![];
    by_subject.subjects = vec!["alice".into()];
    assert!(evaluate(
        &alice(&[]),
        &bot,
        &ask,
        std::slice::from_ref(&by_subject),
        &tools
    )
    .denied
    .is_empty());
    let mut bob = alice(&[]);
    bob.subject = "bob".into();
    assert!(
        !evaluate(&bob, &bot, &ask, std::slice::from_ref(&by_subject), &tools)
            .denied
            .is_empty()
    );
    let mut other_issuer = alice(&["staff"]);
    other_issuer.issuer_id = "other".into();
    let by_group = policy("g", AgentScope::Any, vec![grant("crm", &["read"])]);
    assert!(!evaluate(
        &other_issuer,
        &bot,
        &ask,
        std::slice::from_ref(&by_group),
        &tools
    )
    .denied
    .is_empty());
    assert!(!evaluate(
        &alice(&["sales"]),
        &bot,
        &ask,
        std::slice::from_ref(&by_group),
        &tools
    )
    .denied
    .is_empty());
    let for_other_agent = policy(
        "o",
        AgentScope::Listed(vec!["x".into()]),
        vec![grant("crm", &["read"])],
    );
    assert!(
        !evaluate(&alice(&["staff"]), &bot, &ask, &[for_other_agent], &tools)
            .denied
            .is_empty()
    );
    let mut disabled = by_group;
    disabled.enabled = false;
    assert!(
        !evaluate(&alice(&["staff"]), &bot, &ask, &[disabled], &tools)
            .denied
            .is_empty()
    );
}

#[test]
fn the_ttl_is_the_least_of_request_policy_agent_and_cap() {
    assert_eq!(mandate_ttl(None, 3600, 3600, 3600), 900);
    assert_eq!(mandate_ttl(Some(120), 600, 900, 3600), 120);
    assert_eq!(mandate_ttl(Some(3000), 600, 900, 3600), 600);
    assert_eq!(mandate_ttl(Some(3000), 3000, 300, 3600), 300);
    assert_eq!(mandate_ttl(Some(3000), 3000, 3000, 60), 60);
}

proptest::proptest! {
    /// Granting is monotone: adding a policy never removes a grant, and removing one never
    /// adds a grant.
    #[test]
    fn adding_a_policy_never_takes_a_right_away(
        ops in proptest::collection::vec(0usize..4, 1..4),
        first in proptest::collection::vec(0usize..4, 1..4),
        second in proptest::collection::vec(0usize..4, 1..4),
    ) {
        let names = ["a", "b", "c", "d"];
        let pick = |ix: &[usize]| -> Vec<&str> { let mut v: Vec<&str> = ix.iter().map(|i| names[*i]).collect(); v.sort(); v.dedup(); v };
        let bot = agent("bot", vec![grant("t", &names)]);
        let tools = [tool("t", &names)];
        let ask = [grant("t", &pick(&ops))];
        let one = [policy("p1", AgentScope::Any, vec![grant("t", &pick(&first))])];
        let two = [one[0].clone(), policy("p2", AgentScope::Any, vec![grant("t", &pick(&second))])];
        let e1 = evaluate(&alice(&["staff"]), &bot, &ask, &one, &tools);
        let e2 = evaluate(&alice(&["staff"]), &bot, &ask, &two, &tools);
        proptest::prop_assert!(e2.denied.len() <= e1.denied.len());
        if e1.denied.is_empty() {
            proptest::prop_assert_eq!(&e1.granted, &e2.granted);
        }
        for d in &e2.denied {
            proptest::prop_assert!(e1.denied.contains(d));
        }
    }
}

fn pairs(reach: &[Reach]) -> Vec<(String, String, Vec<String>)> {
    reach
        .iter()
        .map(|r| (r.tool.clone(), r.operation.clone(), r.policies.clone()))
        .collect()
}

#[test]
fn reach_is_the_intersection_of_policy_ceiling_and_tool() {
    let bot = agent("bot", vec![grant("crm", &["read", "write"])]);
    let tools = [tool("crm", &["read", "write", "delete"])];
    let policies = [
        policy(
            "p1",
            AgentScope::Any,
            vec![grant("crm", &["read", "delete"])],
        ),
        policy(
            "p2",
            AgentScope::Listed(vec!["bot".into()]),
            vec![grant("crm", &["read", "write"])],
        ),
        policy(
            "other",
            AgentScope::Listed(vec!["someone-else".into()]),
            vec![grant("crm", &["write"])],
        ),
    ];
    assert_eq!(
        pairs(&reach(&bot, &policies, &tools)),
        vec![
            ("crm".into(), "read".into(), vec!["p1".into(), "p2".into()]),
            ("crm".into(), "write".into(), vec!["p2".into()]),
        ]
    );
}

#[test]
fn disabled_policies_inactive_tools_and_inactive_agents_reach_nothing() {
    let mut bot = agent("bot", vec![grant("crm", &["read"])]);
    let mut tools = [tool("crm", &["read"])];
    let mut policies = [policy("p", AgentScope::Any, vec![grant("crm", &["read"])])];
    assert_eq!(reach(&bot, &policies, &tools).len(), 1);

    policies[0].enabled = false;
    assert!(reach(&bot, &policies, &tools).is_empty());
    policies[0].enabled = true;

    tools[0].status = ToolStatus::Disabled;
    assert!(reach(&bot, &policies, &tools).is_empty());
    tools[0].status = ToolStatus::Active;

    bot.status = AgentStatus::Suspended;
    assert!(reach(&bot, &policies, &tools).is_empty());
}

#[test]
fn an_operation_the_tool_no_longer_offers_is_out_of_reach() {
    let bot = agent("bot", vec![grant("crm", &["read", "export"])]);
    let tools = [tool("crm", &["read"])];
    let policies = [policy(
        "p",
        AgentScope::Any,
        vec![grant("crm", &["read", "export"])],
    )];
    let found = reach(&bot, &policies, &tools);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].operation, "read");
}

#[test]
fn a_policy_that_comes_to_require_binding_keeps_only_bound_mandates_live() {
    let bot = agent("bot", vec![grant("crm", &["read"])]);
    let tools = [tool("crm", &["read"])];
    let mut open = policy("open", AgentScope::Any, vec![grant("crm", &["read"])]);
    let e = evaluate(
        &alice(&["staff"]),
        &bot,
        &[grant("crm", &["read"])],
        &[open.clone()],
        &tools,
    );
    let unbound = e.granted_by[0].clone();
    let bound = GrantedBy {
        bound: true,
        ..unbound.clone()
    };
    assert!(unbound.still_granted("bot", std::slice::from_ref(&open)));
    open.require_binding = true;
    assert!(!unbound.still_granted("bot", std::slice::from_ref(&open)));
    assert!(bound.still_granted("bot", &[open]));
}

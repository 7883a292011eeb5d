//! Human approvals carried in a mandate (mandate/v1). A right a policy gates behind approval is
//! minted only once the approvers have approved, and the authority block then says so, for any
//! verifier to show offline:
//!
//! ```text
//! approval($approval_id, $tool, $operation, $approved_at);       // one per gated right
//! approved_by($approval_id, $tool, $operation, $subject, $issuer); // one per approver of it
//! ```
//!
//! An approval bound to the exact arguments of the call also states their digest (lowercase hex
//! SHA-256 of the arguments in RFC 8785 canonical JSON, [`super::canonical`]) and checks it:
//!
//! ```text
//! approval_arguments($approval_id, $tool, $operation, $sha256);
//! check if tool($tool), operation($operation), !($tool == TOOL && $operation == OPERATION)
//!       or arguments_sha256(SHA256);
//! ```
//!
//! A verifier states `arguments_sha256($hex)` for the call it authorizes, computed from the
//! call's arguments, so a verifier that does not see them refuses the gated operation. Such an
//! approval is for one call: a gateway records the consuming call with mandate and refuses a
//! second one. These facts are stated only by the authority block.

use std::sync::LazyLock;

use biscuit_auth::builder::{fact, string, Check, Fact, Term};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::TokenError;

/// Most approvers one approval names.
pub const MAX_APPROVERS: usize = 16;

/// Who approved.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Approver {
    /// The approver's subject at their issuer.
    pub subject: String,
    /// The issuer URL that proved the approver.
    pub issuer: String,
}

/// One gated right's approval, as the mandate carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Approval {
    /// The approval request's id.
    pub id: String,
    /// The gated tool.
    pub tool: String,
    /// The gated operation.
    pub operation: String,
    /// When the approval was given (the last approver needed approved).
    pub approved_at: DateTime<Utc>,
    /// Who approved, sorted.
    pub approvers: Vec<Approver>,
    /// For an approval bound to exact arguments (one call): their SHA-256, hex, in RFC 8785
    /// canonical JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments_sha256: Option<String>,
}

/// The check of an argument-bound approval.
static ARGUMENTS_CHECK: LazyLock<Result<Check, biscuit_auth::error::Token>> = LazyLock::new(|| {
    Check::try_from(
        "check if tool($tool), operation($operation), \
         !($tool == {tool} && $operation == {operation}) or arguments_sha256({sha256})",
    )
});

/// Whether `text` is a SHA-256 in lowercase hex.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The facts and checks that state `approvals` in an authority block.
pub(super) fn compile(approvals: &[Approval]) -> Result<(Vec<Fact>, Vec<Check>), TokenError> {
    let mut facts = Vec::new();
    let mut checks = Vec::new();
    for approval in approvals {
        let printable = [&approval.id, &approval.tool, &approval.operation];
        if printable.iter().any(|s| !super::printable(s))
            || approval.approvers.is_empty()
            || approval.approvers.len() > MAX_APPROVERS
        {
            return Err(TokenError::Malformed);
        }
        let at = u64::try_from(approval.approved_at.timestamp()).map_err(|_| TokenError::Time)?;
        let (id, tool, operation) = (&approval.id, &approval.tool, &approval.operation);
        facts.push(fact(
            "approval",
            &[string(id), string(tool), string(operation), Term::Date(at)],
        ));
        for approver in &approval.approvers {
            if !super::printable(&approver.subject) || !super::printable(&approver.issuer) {
                return Err(TokenError::Malformed);
            }
            facts.push(fact(
                "approved_by",
                &[
                    string(id),
                    string(tool),
                    string(operation),
                    string(&approver.subject),
                    string(&approver.issuer),
                ],
            ));
        }
        if let Some(sha256) = &approval.arguments_sha256 {
            if !is_sha256_hex(sha256) {
                return Err(TokenError::Malformed);
            }
            facts.push(fact(
                "approval_arguments",
                &[string(id), string(tool), string(operation), string(sha256)],
            ));
            let mut check = ARGUMENTS_CHECK.clone()?;
            check.set("tool", tool.as_str())?;
            check.set("operation", operation.as_str())?;
            check.set("sha256", sha256.as_str())?;
            checks.push(check);
        }
    }
    Ok((facts, checks))
}

/// The approval facts of an authority block, as read.
#[derive(Debug, Default)]
pub(super) struct Read {
    /// `approval(id, tool, operation, at)`.
    pub(super) approvals: Vec<(String, String, String, u64)>,
    /// `approved_by(id, tool, operation, subject, issuer)`.
    pub(super) approvers: Vec<((String, String, String), Approver)>,
    /// `approval_arguments(id, tool, operation, sha256)`.
    pub(super) arguments: Vec<(String, String, String, String)>,
}

impl Read {
    /// Every gated right's approval, sorted by tool and operation: each `approval` with its
    /// approvers (at least one) and at most one digest; anything else is malformed.
    pub(super) fn finish(self) -> Result<Vec<Approval>, TokenError> {
        let mut out = Vec::new();
        for (id, tool, operation, at) in self.approvals {
            let mut approvers: Vec<Approver> = self
                .approvers
                .iter()
                .filter(|((of, t, o), _)| *of == id && *t == tool && *o == operation)
                .map(|(_, a)| a.clone())
                .collect();
            approvers.sort();
            approvers.dedup();
            let mut digests = self
                .arguments
                .iter()
                .filter(|(of, t, o, _)| *of == id && *t == tool && *o == operation)
                .map(|(_, _, _, d)| d.clone());
            let arguments_sha256 = digests.next();
            if approvers.is_empty() || digests.next().is_some() {
                return Err(TokenError::Malformed);
            }
            if arguments_sha256
                .as_deref()
                .is_some_and(|d| !is_sha256_hex(d))
            {
                return Err(TokenError::Malformed);
            }
            let approved_at = i64::try_from(at)
                .ok()
                .and_then(|secs| DateTime::from_timestamp(secs, 0))
                .ok_or(TokenError::Time)?;
            out.push(Approval {
                id,
                tool,
                operation,
                approved_at,
                approvers,
                arguments_sha256,
            });
        }
        out.sort_by(|a, b| (&a.tool, &a.operation).cmp(&(&b.tool, &b.operation)));
        let gated_twice = out
            .windows(2)
            .any(|w| w[0].tool == w[1].tool && w[0].operation == w[1].operation);
        // Every approver and digest belongs to an approval.
        let orphan = self.approvers.iter().any(|((id, t, o), _)| {
            !out.iter()
                .any(|a| &a.id == id && &a.tool == t && &a.operation == o)
        }) || self.arguments.iter().any(|(id, t, o, _)| {
            !out.iter()
                .any(|a| &a.id == id && &a.tool == t && &a.operation == o)
        });
        if gated_twice || orphan {
            return Err(TokenError::Malformed);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use biscuit_auth::{BlockBuilder, KeyPair, UnverifiedBiscuit};
    use serde_json::json;

    use super::*;
    use crate::token::attenuate::{attenuate, Attenuation};
    use crate::token::canonical::arguments_digest;
    use crate::token::keys::KeySet;
    use crate::token::mint::{mint, MandateSpec};
    use crate::token::verify::{check, AccessRequest, AgentKeys, Trust, VerifyOptions};
    use crate::token::Right;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn right(tool: &str, operation: &str) -> Right {
        Right {
            tool: tool.into(),
            operation: operation.into(),
        }
    }

    fn bob() -> Approver {
        Approver {
            subject: "bob".into(),
            issuer: "https://idp.example.com/".into(),
        }
    }

    /// A mandate of `crm` `read` and `delete`, the deletion approved by bob for one call with
    /// `{"id": "cust-42"}`.
    fn approved(arguments: Option<serde_json::Value>) -> (String, KeySet) {
        let root = KeyPair::new();
        let spec = MandateSpec {
            mandate_id: "01900000-0000-7000-8000-000000000042".into(),
            task_id: "dedupe".into(),
            task_digest: vec![3; 32],
            principal_subject: "alice".into(),
            principal_issuer: "https://idp.example.com/".into(),
            agent_id: "bot".into(),
            rights: vec![right("crm", "delete"), right("crm", "read")],
            expires_at: at(600),
            constraints: vec![],
            holder_key: None,
            approvals: vec![Approval {
                id: "01900000-0000-7000-8000-0000000000a1".into(),
                tool: "crm".into(),
                operation: "delete".into(),
                approved_at: at(-60),
                approvers: vec![bob()],
                arguments_sha256: arguments.map(|a| arguments_digest(Some(&a))),
            }],
        };
        let token = mint(&spec, &root, 1).unwrap().token;
        (token, KeySet::from([(1, root.public())]))
    }

    fn call(
        token: &str,
        keys: &KeySet,
        operation: &str,
        arguments: Option<serde_json::Value>,
    ) -> Result<crate::token::verify::Verified, TokenError> {
        let agent_keys = AgentKeys::new();
        let trust = Trust {
            keys,
            agent_keys: &agent_keys,
            is_revoked: &|_| false,
        };
        let options = VerifyOptions::default();
        let checked = check(token, &trust, &options)?;
        let request = AccessRequest {
            tool: "crm".into(),
            operation: operation.into(),
            now: at(0),
        };
        checked.authorize_call(&|_| false, &request, None, arguments.as_ref(), &options)
    }

    #[test]
    fn a_mandate_carries_who_approved_each_gated_right_and_when() {
        let (token, keys) = approved(None);
        let verified = call(&token, &keys, "delete", None).unwrap();
        assert_eq!(verified.approvals.len(), 1);
        let approval = &verified.approvals[0];
        assert_eq!(
            (approval.tool.as_str(), approval.operation.as_str()),
            ("crm", "delete")
        );
        assert_eq!(approval.approvers, vec![bob()]);
        assert_eq!(approval.approved_at, at(-60));
        assert_eq!(approval.arguments_sha256, None);
        // Narrowing keeps the approval: it is the authority's.
        let narrowed = attenuate(
            &token,
            &Attenuation {
                delegate: Some("cleaner".into()),
                ..Attenuation::default()
            },
        )
        .unwrap();
        let verified = call(&narrowed, &keys, "delete", Some(json!({"id": "x"}))).unwrap();
        assert_eq!(verified.approvals[0].approvers, vec![bob()]);
    }

    #[test]
    fn an_approval_bound_to_arguments_allows_exactly_those() {
        let (token, keys) = approved(Some(json!({"id": "cust-42", "hard": false})));
        // Member order does not matter: the digest is of canonical JSON.
        let same = json!({"hard": false, "id": "cust-42"});
        let verified = call(&token, &keys, "delete", Some(same)).unwrap();
        assert!(verified.approvals[0].arguments_sha256.is_some());
        for other in [
            Some(json!({"id": "cust-43", "hard": false})),
            Some(json!({"id": "cust-42"})),
            Some(json!({"id": "cust-42", "hard": false, "extra": 1})),
            None,
        ] {
            let refused = call(&token, &keys, "delete", other.clone()).unwrap_err();
            assert_eq!(refused.code(), "arguments_not_approved", "{other:?}");
        }
        // Other operations are not bound.
        assert!(call(&token, &keys, "read", None).is_ok());
    }

    #[test]
    fn approval_facts_in_a_later_block_are_refused() {
        let (token, _) = approved(None);
        for source in [
            r#"approval("x", "crm", "write", 2026-01-01T00:00:00Z);"#,
            r#"approved_by("x", "mallory", "https://idp");"#,
            r#"arguments_sha256("00");"#,
        ] {
            let block = BlockBuilder::new().code(source).unwrap();
            let appended = UnverifiedBiscuit::from_base64(&token)
                .unwrap()
                .append(block)
                .unwrap()
                .to_base64()
                .unwrap();
            let refused = crate::token::vocabulary::read(&appended, 16).unwrap_err();
            assert_eq!(refused.code(), "not_mandate_block", "{source}");
        }
    }

    #[test]
    fn what_cannot_be_stated_is_refused_at_mint() {
        let good = Approval {
            id: "a".into(),
            tool: "crm".into(),
            operation: "delete".into(),
            approved_at: at(0),
            approvers: vec![bob()],
            arguments_sha256: None,
        };
        let bad = [
            Approval {
                approvers: vec![],
                ..good.clone()
            },
            Approval {
                arguments_sha256: Some("ABC".into()),
                ..good.clone()
            },
            Approval {
                tool: "crm\"".into(),
                ..good.clone()
            },
        ];
        for approval in bad {
            assert!(
                compile(std::slice::from_ref(&approval)).is_err(),
                "{approval:?}"
            );
        }
        // One request's approval of two operations by different approvers: each is stated.
        let other = Approval {
            operation: "write".into(),
            approvers: vec![Approver {
                subject: "carol".into(),
                issuer: "https://idp".into(),
            }],
            ..good.clone()
        };
        assert!(compile(&[good.clone(), other]).is_ok());
        assert!(compile(&[good]).is_ok());
    }

    #[test]
    fn the_read_refuses_orphans_and_repeats() {
        let approval = (
            "a".to_owned(),
            "crm".to_owned(),
            "delete".to_owned(),
            1_800_000_000,
        );
        let of =
            |id: &str, operation: &str| (id.to_owned(), "crm".to_owned(), operation.to_owned());
        let by = (of("a", "delete"), bob());
        let digest = "0".repeat(64);
        let read = |approvals: Vec<_>, approvers: Vec<_>, arguments: Vec<_>| {
            Read {
                approvals,
                approvers,
                arguments,
            }
            .finish()
        };
        assert!(read(vec![approval.clone()], vec![by.clone()], vec![]).is_ok());
        // No approver.
        assert!(read(vec![approval.clone()], vec![], vec![]).is_err());
        // An approver of nothing, or of another operation of the same request.
        assert!(read(vec![], vec![by.clone()], vec![]).is_err());
        assert!(read(
            vec![approval.clone()],
            vec![by.clone(), (of("a", "write"), bob())],
            vec![]
        )
        .is_err());
        // A digest of nothing, two digests, a digest that is not one.
        let args = |id: &str, d: &str| {
            (
                id.to_owned(),
                "crm".to_owned(),
                "delete".to_owned(),
                d.to_owned(),
            )
        };
        assert!(read(
            vec![approval.clone()],
            vec![by.clone()],
            vec![args("b", &digest)]
        )
        .is_err());
        let two = vec![args("a", &digest), args("a", &"1".repeat(64))];
        assert!(read(vec![approval.clone()], vec![by.clone()], two).is_err());
        assert!(read(
            vec![approval.clone()],
            vec![by.clone()],
            vec![args("a", "zz")]
        )
        .is_err());
        // One right approved twice.
        let twice = vec![
            approval.clone(),
            ("b".to_owned(), "crm".to_owned(), "delete".to_owned(), 1),
        ];
        let both = vec![by.clone(), (of("b", "delete"), bob())];
        assert!(read(twice, both, vec![]).is_err());
    }
}

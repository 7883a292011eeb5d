//! Reading the authority block's facts from its serialized form. Only the authority block is
//! trusted for them, and only once the token's signatures verify: mandate signed it. Reading
//! them here, rather than by querying an authorizer, runs no Datalog at all.

use biscuit_auth::datalog::SymbolTable;
use biscuit_auth::format::schema::{self, term::Content};
use chrono::{DateTime, Utc};

use super::approval::{self, Approval, Approver};
use super::constraints::{read_fact, ArgConstraint};
use super::{Right, TokenError, SCHEMA_VERSION};

/// What the authority block states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    /// `mandate($id)`.
    pub mandate_id: String,
    /// `principal($subject, $issuer)`.
    pub principal_subject: String,
    /// `principal($subject, $issuer)`.
    pub principal_issuer: String,
    /// `agent($id)`.
    pub agent_id: String,
    /// `task($id, $digest)`.
    pub task_id: String,
    /// Every `right($tool, $operation)`, sorted.
    pub rights: Vec<Right>,
    /// `expires($date)`.
    pub expires_at: DateTime<Utc>,
    /// Every `constraint(…)`, in order.
    pub constraints: Vec<ArgConstraint>,
    /// `holder_key($jkt)`: the thumbprint of the key the mandate is bound to, if it is.
    pub holder_key: Option<String>,
    /// Every gated right's `approval(…)`, with its `approved_by(…)` and `approval_arguments(…)`
    /// ([`super::approval`]), sorted by tool and operation.
    pub approvals: Vec<Approval>,
}

/// Reads the mandate/v1 facts of `block`: exactly one of each single-valued fact, any number
/// of rights, and `mandate_schema(1)`.
pub fn read(block: &schema::Block) -> Result<Authority, TokenError> {
    let table = SymbolTable::from(block.symbols.clone()).map_err(|_| TokenError::Malformed)?;
    let text = |term: &schema::Term| match term.content {
        Some(Content::String(id)) => table
            .get_symbol(id)
            .map(str::to_owned)
            .ok_or(TokenError::Malformed),
        _ => Err(TokenError::Malformed),
    };
    let mut schema_version = None;
    let mut mandate = None;
    let mut principal = None;
    let mut agent = None;
    let mut task = None;
    let mut expires = None;
    let mut rights = Vec::new();
    let mut constraints = Vec::new();
    let mut holder_key = None;
    let mut approvals = approval::Read::default();
    for fact in &block.facts {
        let name = table
            .get_symbol(fact.predicate.name)
            .ok_or(TokenError::Malformed)?;
        match (name, fact.predicate.terms.as_slice()) {
            ("mandate_schema", [v]) => match v.content {
                Some(Content::Integer(v)) => once(&mut schema_version, v, "mandate_schema")?,
                _ => return Err(TokenError::Malformed),
            },
            ("mandate", [id]) => once(&mut mandate, text(id)?, "mandate")?,
            ("principal", [s, i]) => once(&mut principal, (text(s)?, text(i)?), "principal")?,
            ("agent", [id]) => once(&mut agent, text(id)?, "agent")?,
            ("task", [id, _digest]) => once(&mut task, text(id)?, "task")?,
            ("expires", [date]) => match date.content {
                Some(Content::Date(secs)) => once(&mut expires, secs, "expires")?,
                _ => return Err(TokenError::Malformed),
            },
            ("holder_key", [jkt]) => {
                let jkt = text(jkt)?;
                if !super::pop::is_thumbprint(&jkt) {
                    return Err(TokenError::Malformed);
                }
                once(&mut holder_key, jkt, "holder_key")?
            }
            ("approval", [id, tool, operation, at]) => match at.content {
                Some(Content::Date(at)) => {
                    let right = (text(id)?, text(tool)?, text(operation)?, at);
                    approvals.approvals.push(right);
                }
                _ => return Err(TokenError::Malformed),
            },
            ("approved_by", [id, tool, operation, subject, issuer]) => {
                let right = (text(id)?, text(tool)?, text(operation)?);
                let approver = Approver {
                    subject: text(subject)?,
                    issuer: text(issuer)?,
                };
                approvals.approvers.push((right, approver));
            }
            ("approval_arguments", [id, tool, operation, sha256]) => {
                let digest = (text(id)?, text(tool)?, text(operation)?, text(sha256)?);
                approvals.arguments.push(digest);
            }
            ("right", [tool, operation]) => rights.push(Right {
                tool: text(tool)?,
                operation: text(operation)?,
            }),
            ("constraint", terms) => {
                let symbol = |content: Option<&Content>| match content {
                    Some(Content::String(id)) => table.get_symbol(*id).ok_or("unknown symbol"),
                    _ => Err("expected a string"),
                };
                let (constraint, _) =
                    read_fact(terms, symbol).map_err(|_| TokenError::Malformed)?;
                constraints.push(constraint);
            }
            _ => return Err(TokenError::Malformed),
        }
    }
    if schema_version.ok_or(TokenError::MissingFact("mandate_schema"))? != SCHEMA_VERSION {
        return Err(TokenError::Malformed);
    }
    let (principal_subject, principal_issuer) =
        principal.ok_or(TokenError::MissingFact("principal"))?;
    let expires = expires.ok_or(TokenError::MissingFact("expires"))?;
    rights.sort();
    Ok(Authority {
        mandate_id: mandate.ok_or(TokenError::MissingFact("mandate"))?,
        principal_subject,
        principal_issuer,
        agent_id: agent.ok_or(TokenError::MissingFact("agent"))?,
        task_id: task.ok_or(TokenError::MissingFact("task"))?,
        rights,
        expires_at: i64::try_from(expires)
            .ok()
            .and_then(|secs| DateTime::from_timestamp(secs, 0))
            .ok_or(TokenError::Time)?,
        constraints,
        holder_key,
        approvals: approvals.finish()?,
    })
}

fn once<T>(slot: &mut Option<T>, value: T, what: &'static str) -> Result<(), TokenError> {
    if slot.replace(value).is_some() {
        return Err(TokenError::MissingFact(what));
    }
    Ok(())
}

//! Narrowing a mandate offline: a first-party block that only adds checks (tools and
//! operations, resources, an earlier expiry) and names the next holder. No key and no call to
//! mandate is needed.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use biscuit_auth::builder::Term;
use biscuit_auth::{BlockBuilder, UnverifiedBiscuit};
use chrono::{DateTime, Utc};

use super::constraints::{compile, valid_path, ArgConstraint, MAX_CONSTRAINTS};
use super::{Right, TokenError};

/// How to narrow a mandate. Every part is optional; at least one must be given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attenuation {
    /// Only these (tool, operation) pairs stay usable.
    pub rights: Option<Vec<Right>>,
    /// Only calls naming one of these resources stay allowed.
    pub resources: Option<Vec<String>>,
    /// The derived token stops working at this time (or earlier, if the parent does).
    pub expires_at: Option<DateTime<Utc>>,
    /// The agent that will hold the derived token.
    pub delegate: Option<String>,
    /// Further constraints on the arguments of calls (empty: none added).
    pub constraints: Vec<ArgConstraint>,
}

/// Datalog source and parameters of an attenuation block.
fn block(attenuation: &Attenuation) -> Result<BlockBuilder, TokenError> {
    let values = attenuation
        .delegate
        .iter()
        .chain(attenuation.resources.iter().flatten())
        .chain(
            attenuation
                .rights
                .iter()
                .flatten()
                .flat_map(|r| [&r.tool, &r.operation]),
        );
    for value in values {
        if !super::printable(value) {
            return Err(TokenError::Malformed);
        }
    }
    // What the block vocabulary reads back, and no more (see `super::vocabulary`).
    let too_many = |n: Option<usize>, most| n.is_some_and(|n| n > most);
    if too_many(attenuation.rights.as_ref().map(Vec::len), super::MAX_RIGHTS)
        || too_many(
            attenuation.resources.as_ref().map(Vec::len),
            super::MAX_RESOURCES,
        )
    {
        return Err(TokenError::Malformed);
    }
    let mut source = String::new();
    let mut params: HashMap<String, Term> = HashMap::new();
    if let Some(agent) = &attenuation.delegate {
        source.push_str("delegate({delegate});\n");
        params.insert("delegate".to_owned(), Term::Str(agent.clone()));
    }
    if let Some(rights) = &attenuation.rights {
        if rights.is_empty() {
            source.push_str("check if false;\n");
        } else {
            source.push_str("check if tool($tool), operation($operation), ");
            for (i, right) in rights.iter().enumerate() {
                if i > 0 {
                    source.push_str(" || ");
                }
                // Writing to a String cannot fail.
                let _ = write!(
                    source,
                    "($tool == {{tool{i}}} && $operation == {{operation{i}}})"
                );
                params.insert(format!("tool{i}"), Term::Str(right.tool.clone()));
                params.insert(format!("operation{i}"), Term::Str(right.operation.clone()));
            }
            source.push_str(";\n");
        }
    }
    if let Some(resources) = &attenuation.resources {
        source.push_str("check if resource($resource), {resources}.contains($resource);\n");
        let set: BTreeSet<Term> = resources.iter().cloned().map(Term::Str).collect();
        params.insert("resources".to_owned(), Term::Set(set));
    }
    if let Some(expires) = attenuation.expires_at {
        source.push_str("check if time($time), $time <= {expires};\n");
        let secs = u64::try_from(expires.timestamp()).map_err(|_| TokenError::Time)?;
        params.insert("expires".to_owned(), Term::Date(secs));
    }
    if source.is_empty() && attenuation.constraints.is_empty() {
        return Err(TokenError::EmptyAttenuation);
    }
    let mut builder = BlockBuilder::new().code_with_params(source, params, HashMap::new())?;
    for compiled in constrained(&attenuation.constraints)? {
        builder = builder.fact(compiled.fact)?.check(compiled.check)?;
    }
    Ok(builder)
}

/// The facts and checks of argument constraints, refused unless a block can state them.
pub(crate) fn constrained(
    constraints: &[ArgConstraint],
) -> Result<Vec<super::constraints::Compiled>, TokenError> {
    let mut all = Vec::new();
    for c in constraints {
        let names = [&c.tool, &c.operation, &c.argument];
        if !names.iter().all(|s| super::printable(s))
            || !valid_path(&c.argument)
            || c.constraint.problem().is_some()
        {
            return Err(TokenError::Malformed);
        }
        all.extend(compile(c)?);
    }
    if all.len() > MAX_CONSTRAINTS {
        return Err(TokenError::Malformed);
    }
    Ok(all)
}

/// Appends an attenuation block to `token` (base64) and returns the derived token.
pub fn attenuate(token: &str, attenuation: &Attenuation) -> Result<String, TokenError> {
    if token.len() > super::MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge);
    }
    let parent = UnverifiedBiscuit::from_base64(token)?;
    Ok(parent.append(block(attenuation)?)?.to_base64()?)
}

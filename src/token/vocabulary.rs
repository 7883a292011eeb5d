//! The mandate/v1 block vocabulary: what a block after the authority may state.
//!
//! Anyone holding a Biscuit can append any block to it, and biscuit-auth bounds the evaluation
//! of a block's Datalog only between fixpoint iterations: one rule joining its own facts k ways
//! runs to completion inside one. So a verifier reads every later block from its serialized
//! form and refuses the token unless each block is one of the shapes below, before any Datalog
//! runs. The check is one pass over the token's bytes, with fixed bounds on everything it reads.
//!
//! A first-party block (appended by a holder, signed by no one in particular) states, each at
//! most once and at least one of them:
//! - `delegate($agent)`: the next holder;
//! - `check if tool($t), operation($o), ($t == T1 && $o == O1) || … || ($t == Tn && $o == On)`
//!   (1 to [`MAX_RIGHTS`] pairs), or `check if false`: only these rights stay usable;
//! - `check if resource($r), {R1, …, Rn}.contains($r)` (0 to [`MAX_RESOURCES`] strings): only
//!   calls naming one of these resources;
//! - `check if time($t), $t <= EXPIRY`: an earlier expiry;
//! - up to [`MAX_CONSTRAINTS`] argument constraints, each a `constraint(…)` fact and the one
//!   check it compiles to, in the same order ([`super::constraints`]).
//!
//! A third-party block states one fact and nothing else: `hop($agent)` (an attested hop, signed
//! by the agent's registered key), or `holder_key($jkt)` (the binding moved to another key,
//! signed by the key it is bound to so far; `$jkt` is an RFC 7638 thumbprint). No block may carry rules, scopes (`trusting …`), `check all`, `reject if`, or
//! any other fact, predicate, operator or term. Strings are at most [`MAX_STRING`] bytes with
//! no quotes, backslashes or control characters. `docs/token-schema.md` documents the same.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use biscuit_auth::datalog::SymbolTable;
use biscuit_auth::format::schema;
use chrono::{DateTime, Utc};
use prost::Message as _;

use biscuit_auth::format::convert::proto_check_to_token_check;

use super::attenuate::Attenuation;
use super::constraints::{expected_check, read_fact, MAX_CONSTRAINTS, MAX_ONE_OF};
use super::{Right, TokenError};
pub use super::{MAX_RESOURCES, MAX_RIGHTS, MAX_STRING};
/// Most symbols a later block may add to the token's table.
const MAX_SYMBOLS: usize = 2 * MAX_RIGHTS + MAX_RESOURCES + MAX_CONSTRAINTS * (6 + MAX_ONE_OF) + 16;

/// Why a block is not a mandate/v1 shape.
type Refusal = &'static str;

/// base64url, with or without padding (as Biscuit libraries read it).
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What one block after the authority states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stated {
    /// A holder's narrowing (a first-party block).
    Narrowing(Attenuation),
    /// An agent's signed statement that it holds the token (a third-party block).
    Attestation {
        /// The agent attesting its hop.
        agent: String,
    },
    /// The holder's signed statement moving the binding to another key (a third-party block,
    /// valid only if signed by the key the token is bound to so far: [`super::pop`]).
    Rebind {
        /// The RFC 7638 thumbprint of the key that holds the token from here.
        holder_key: String,
    },
}

/// A token's blocks as serialized, decoded but not yet verified.
#[derive(Debug)]
pub struct Decoded {
    /// The root key id the token names.
    pub root_key_id: Option<u32>,
    /// The authority block: trust it only once the signatures verify.
    pub authority: schema::Block,
    /// What each later block states, in order.
    pub blocks: Vec<Stated>,
}

/// Decodes `token` (base64url) and reads every block after the authority as a mandate/v1
/// shape. Nothing is verified: a token that passes still needs its signatures checked.
pub fn read(token: &str, max_blocks: usize) -> Result<Decoded, TokenError> {
    let bytes = BASE64URL
        .decode(token.trim())
        .map_err(|_| TokenError::Malformed)?;
    let container = schema::Biscuit::decode(bytes.as_slice()).map_err(|_| TokenError::Malformed)?;
    if container.blocks.len() + 1 > max_blocks {
        return Err(TokenError::TooManyBlocks);
    }
    let authority = decode_block(&container.authority.block)?;
    let later: Vec<schema::Block> = container
        .blocks
        .iter()
        .map(|b| decode_block(&b.block))
        .collect::<Result<_, _>>()?;
    // First-party blocks resolve symbols against the token's table: the defaults, the
    // authority's symbols, then every first-party block's, in order (as biscuit-auth does).
    // A third-party block has a table of its own.
    let refused = |index: usize| move |reason| TokenError::NotMandateBlock { index, reason };
    let mut table = symbol_table(&authority).map_err(|_| TokenError::Malformed)?;
    for (i, (block, signed)) in later.iter().zip(&container.blocks).enumerate() {
        if signed.external_signature.is_none() {
            let own = bounded_symbols(block).map_err(refused(i + 1))?;
            table.extend(&own).map_err(|_| TokenError::Malformed)?;
        }
    }
    let mut blocks = Vec::with_capacity(later.len());
    for (i, (block, signed)) in later.iter().zip(&container.blocks).enumerate() {
        let stated = if signed.external_signature.is_some() {
            bounded_symbols(block).and_then(|own| signed_statement(block, &own))
        } else {
            narrowing(block, &table)
        };
        blocks.push(stated.map_err(refused(i + 1))?);
    }
    Ok(Decoded {
        root_key_id: container.root_key_id,
        authority,
        blocks,
    })
}

fn decode_block(bytes: &[u8]) -> Result<schema::Block, TokenError> {
    schema::Block::decode(bytes).map_err(|_| TokenError::Malformed)
}

fn symbol_table(block: &schema::Block) -> Result<SymbolTable, Refusal> {
    SymbolTable::from(block.symbols.clone()).map_err(|_| "a block may not redefine a symbol")
}

/// The symbols a later block adds, bounded in number and length.
fn bounded_symbols(block: &schema::Block) -> Result<SymbolTable, Refusal> {
    if block.symbols.len() > MAX_SYMBOLS || block.symbols.iter().any(|s| s.len() > MAX_STRING) {
        return Err("a block states too many strings, or too long a one");
    }
    symbol_table(block)
}

/// The parts no mandate/v1 block has.
fn plain(block: &schema::Block) -> Result<(), Refusal> {
    if !block.rules.is_empty() {
        return Err("a block may not carry rules");
    }
    if !block.scope.is_empty() || !block.public_keys.is_empty() {
        return Err("a block may not change what it trusts");
    }
    Ok(())
}

/// A third-party block: an attested hop or a moved binding.
fn signed_statement(block: &schema::Block, table: &SymbolTable) -> Result<Stated, Refusal> {
    const ONE_FACT: Refusal =
        "a signed block states exactly one `hop($agent)` or `holder_key($jkt)`, and nothing else";
    plain(block)?;
    if !block.checks.is_empty() {
        return Err(ONE_FACT);
    }
    let [fact] = block.facts.as_slice() else {
        return Err(ONE_FACT);
    };
    match predicate(&fact.predicate, table) {
        Some(("hop", [term])) => Ok(Stated::Attestation {
            agent: string(term.content.as_ref(), table)?.to_owned(),
        }),
        Some(("holder_key", [term])) => {
            let jkt = string(term.content.as_ref(), table)?;
            if !super::pop::is_thumbprint(jkt) {
                return Err("a holder key is an RFC 7638 thumbprint (43 base64url characters)");
            }
            Ok(Stated::Rebind {
                holder_key: jkt.to_owned(),
            })
        }
        _ => Err(ONE_FACT),
    }
}

fn narrowing(block: &schema::Block, table: &SymbolTable) -> Result<Stated, Refusal> {
    plain(block)?;
    let mut narrowed = Attenuation::default();
    let mut stated = Vec::new();
    for fact in &block.facts {
        match predicate(&fact.predicate, table) {
            Some(("delegate", [term])) => {
                if narrowed.delegate.is_some() {
                    return Err("a block names at most one delegate");
                }
                narrowed.delegate = Some(string(term.content.as_ref(), table)?.to_owned());
            }
            Some(("constraint", terms)) => {
                if stated.len() == MAX_CONSTRAINTS {
                    return Err("too many constraints in one block");
                }
                stated.push(read_fact(terms, |c| string(c, table))?);
            }
            Some(("hop", _)) => return Err("a hop claimed without a signature of its own"),
            Some(("holder_key", _)) => {
                return Err("a binding moved without the holder's signature")
            }
            _ => {
                return Err(
                    "the only facts a holder may state are `delegate($agent)` and `constraint(…)`",
                )
            }
        }
    }
    if block.checks.len() > 3 + stated.len() {
        return Err("too many checks");
    }
    let mut constraint_checks = Vec::new();
    for check in &block.checks {
        if check.queries.len() == 2 {
            constraint_checks.push(check);
            continue;
        }
        let [query] = check.queries.as_slice() else {
            return Err("a check has exactly one query");
        };
        if check.kind.unwrap_or(0) != schema::check::Kind::One as i32 {
            return Err("only `check if` narrows");
        }
        if !query.head.terms.is_empty() || !query.scope.is_empty() {
            return Err("a check has no head terms and no scope");
        }
        let [expression] = query.expressions.as_slice() else {
            return Err("a check has exactly one expression");
        };
        let body: Vec<_> = query
            .body
            .iter()
            .map(|p| predicate(p, table).ok_or("unknown symbol"))
            .collect::<Result<_, _>>()?;
        let ops = expression.ops.as_slice();
        match body.as_slice() {
            [] => set_once(&mut narrowed.rights, never(ops)?)?,
            [("tool", [tool]), ("operation", [operation])] => {
                let vars = (variable(tool)?, variable(operation)?);
                set_once(&mut narrowed.rights, rights(ops, vars, table)?)?;
            }
            [("resource", [resource])] => set_once(
                &mut narrowed.resources,
                resources(ops, variable(resource)?, table)?,
            )?,
            [("time", [time])] => {
                set_once(&mut narrowed.expires_at, expiry(ops, variable(time)?)?)?
            }
            _ => return Err("not a mandate/v1 check"),
        }
    }
    // Each `constraint` fact comes with exactly the check it compiles to, in the same order,
    // and no other check has two queries.
    if constraint_checks.len() != stated.len() {
        return Err("each constraint fact comes with its check, and only those");
    }
    let version = block.version.unwrap_or(0);
    for ((constraint, kind), check) in stated.iter().zip(constraint_checks) {
        let expected = expected_check(constraint, kind, table)
            .map_err(|_| "a constraint that cannot be checked")?;
        let actual = proto_check_to_token_check(check, version)
            .map_err(|_| "a constraint's check is not readable")?;
        if actual != expected {
            return Err("a constraint's check is not the one its fact states");
        }
    }
    narrowed.constraints = stated.into_iter().map(|(c, _)| c).collect();
    if narrowed == Attenuation::default() {
        return Err("a block must narrow something or name a delegate");
    }
    Ok(Stated::Narrowing(narrowed))
}

fn set_once<T>(slot: &mut Option<T>, value: T) -> Result<(), Refusal> {
    if slot.is_some() {
        return Err("a block narrows each of rights, resources and expiry at most once");
    }
    *slot = Some(value);
    Ok(())
}

/// A predicate's name and terms, if its name resolves.
fn predicate<'a>(
    p: &'a schema::Predicate,
    table: &'a SymbolTable,
) -> Option<(&'a str, &'a [schema::Term])> {
    Some((table.get_symbol(p.name)?, p.terms.as_slice()))
}

fn string<'a>(
    content: Option<&schema::term::Content>,
    table: &'a SymbolTable,
) -> Result<&'a str, Refusal> {
    let Some(&schema::term::Content::String(id)) = content else {
        return Err("expected a string");
    };
    let value = table.get_symbol(id).ok_or("unknown symbol")?;
    if value.is_empty()
        || value.len() > MAX_STRING
        || value
            .chars()
            .any(|c| c == '"' || c == '\\' || c.is_control())
    {
        return Err("a string must be 1 to 256 bytes, without quotes, backslashes or controls");
    }
    Ok(value)
}

fn variable(term: &schema::Term) -> Result<u32, Refusal> {
    match term.content {
        Some(schema::term::Content::Variable(v)) => Ok(v),
        _ => Err("expected a variable"),
    }
}

fn value(op: &schema::Op) -> Option<&schema::term::Content> {
    match &op.content {
        Some(schema::op::Content::Value(term)) => term.content.as_ref(),
        _ => None,
    }
}

fn is_binary(op: &schema::Op, kind: schema::op_binary::Kind) -> bool {
    matches!(&op.content, Some(schema::op::Content::Binary(b)) if b.kind == kind as i32 && b.ffi_name.is_none())
}

fn is_parens(op: &schema::Op) -> bool {
    matches!(&op.content, Some(schema::op::Content::Unary(u)) if u.kind == schema::op_unary::Kind::Parens as i32 && u.ffi_name.is_none())
}

/// The ops of a closure without parameters (the right side of `&&` and `||`).
fn closure(op: &schema::Op) -> Option<&[schema::Op]> {
    match &op.content {
        Some(schema::op::Content::Closure(c)) if c.params.is_empty() => Some(&c.ops),
        _ => None,
    }
}

/// `check if false`.
fn never(ops: &[schema::Op]) -> Result<Vec<Right>, Refusal> {
    match ops {
        [op] if value(op) == Some(&schema::term::Content::Bool(false)) => Ok(Vec::new()),
        _ => Err("a check without predicates is `check if false`"),
    }
}

const RIGHT: Refusal = "a right is `($tool == T && $operation == O)`";

/// `$v == "string"`: the string.
fn equals<'a>(ops: &[schema::Op], var: u32, table: &'a SymbolTable) -> Result<&'a str, Refusal> {
    match ops {
        [left, right, eq]
            // `==` (any types) or `===` (same types): the same on strings.
            if (is_binary(eq, schema::op_binary::Kind::HeterogeneousEqual)
                || is_binary(eq, schema::op_binary::Kind::Equal))
                && value(left) == Some(&schema::term::Content::Variable(var)) =>
        {
            string(value(right), table)
        }
        _ => Err(RIGHT),
    }
}

/// `($t == T && $o == O)`, with or without the parentheses: `$t == T`, a closure holding
/// `$o == O`, `&&`.
fn pair(ops: &[schema::Op], (t, o): (u32, u32), table: &SymbolTable) -> Result<Right, Refusal> {
    let ops = match ops.split_last() {
        Some((last, inner)) if is_parens(last) => inner,
        _ => ops,
    };
    match ops {
        [_, _, _, then, and] if is_binary(and, schema::op_binary::Kind::LazyAnd) => {
            let second = closure(then).ok_or(RIGHT)?;
            Ok(Right {
                tool: equals(&ops[..3], t, table)?.to_owned(),
                operation: equals(second, o, table)?.to_owned(),
            })
        }
        _ => Err(RIGHT),
    }
}

/// `pair || pair || …`, left to right as the parser writes it: the first pair's ops, then per
/// further pair a closure holding it and `||`.
fn rights(
    ops: &[schema::Op],
    vars: (u32, u32),
    table: &SymbolTable,
) -> Result<Vec<Right>, Refusal> {
    if vars.0 == vars.1 {
        return Err("tool and operation need their own variables");
    }
    let first_len = if ops.get(5).is_some_and(is_parens) {
        6
    } else {
        5
    };
    let (first, mut rest) = ops.split_at(first_len.min(ops.len()));
    let mut found = vec![pair(first, vars, table)?];
    while let [next, or, tail @ ..] = rest {
        if !is_binary(or, schema::op_binary::Kind::LazyOr) {
            return Err("rights are joined with `||`");
        }
        if found.len() == MAX_RIGHTS {
            return Err("too many rights in one block");
        }
        found.push(pair(closure(next).ok_or(RIGHT)?, vars, table)?);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err("rights are joined with `||`");
    }
    Ok(found)
}

/// `{R1, …}.contains($r)`.
fn resources(ops: &[schema::Op], var: u32, table: &SymbolTable) -> Result<Vec<String>, Refusal> {
    let [set, subject, contains] = ops else {
        return Err("a resource check is `{R1, …}.contains($resource)`");
    };
    let (Some(schema::term::Content::Set(set)), Some(&schema::term::Content::Variable(v))) =
        (value(set), value(subject))
    else {
        return Err("a resource check is `{R1, …}.contains($resource)`");
    };
    if v != var || !is_binary(contains, schema::op_binary::Kind::Contains) {
        return Err("a resource check is `{R1, …}.contains($resource)`");
    }
    // An empty set allows no resource: a narrowing, as `check if false` is for rights.
    if set.set.len() > MAX_RESOURCES {
        return Err("a resource check names at most 64 resources");
    }
    set.set
        .iter()
        .map(|term| string(term.content.as_ref(), table).map(str::to_owned))
        .collect()
}

/// `$t <= EXPIRY`.
fn expiry(ops: &[schema::Op], var: u32) -> Result<DateTime<Utc>, Refusal> {
    match ops {
        [subject, date, le] if is_binary(le, schema::op_binary::Kind::LessOrEqual) => {
            match (value(subject), value(date)) {
                (
                    Some(&schema::term::Content::Variable(v)),
                    Some(&schema::term::Content::Date(secs)),
                ) if v == var => i64::try_from(secs)
                    .ok()
                    .and_then(|secs| DateTime::from_timestamp(secs, 0))
                    .ok_or("an expiry out of range"),
                _ => Err("an expiry is `$time <= DATE`"),
            }
        }
        _ => Err("an expiry is `$time <= DATE`"),
    }
}

#[cfg(test)]
#[path = "vocabulary_tests.rs"]
mod tests;

//! Argument constraints (mandate/v1): what the arguments of one operation may be.
//!
//! A grant may constrain, per argument, the values a call passes: `equals`, `one_of`, `prefix`,
//! `glob`, `range` (integers) or `max_length`. In a token each constraint is a fact, stated
//! for the reader, and a check, which is what enforces it:
//!
//! ```text
//! constraint($tool, $operation, $argument, $kind, $value);
//! check if tool($tool), operation($operation), !($tool == TOOL && $operation == OPERATION)
//!       or arg(ARGUMENT, $value), EXPRESSION;
//! ```
//!
//! The check passes for any other operation, and for this one only if the verifier states the
//! argument (`arg($path, $value)`) and its value satisfies the expression. A verifier that
//! does not state the call's arguments therefore refuses every constrained call: the checks
//! fail closed. Every value is bound as a parameter, never spliced into the source. The
//! expressions, by kind (the fact's `$kind`):
//!
//! | kind         | `$value` in the fact      | expression                    |
//! |--------------|---------------------------|-------------------------------|
//! | `equals`     | string, integer, boolean  | `$value == V`                 |
//! | `one_of`     | a set of those            | `V.contains($value)`          |
//! | `prefix`     | string                    | `$value.starts_with(V)`       |
//! | `glob`       | string (the glob)         | `$value.matches(REGEX)`       |
//! | `min`, `max` | integer                   | `$value >= V`, `$value <= V`  |
//! | `max_length` | integer                   | `$value.length() <= V`        |
//!
//! A glob has `*` (any run of characters) and `?` (one character); its regex is
//! `(?s)^…$` with every other regex metacharacter written as a one-character class (`[.]`),
//! so no backslash appears; `[`, `]`, `^` and `\` are refused in globs. A JSON array of
//! scalars is stated as one set: `one_of` then requires every element to be allowed, and
//! `max_length` bounds its number of elements. Nested values are addressed by their path:
//! `options.owner`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::LazyLock;

use biscuit_auth::builder::{Check, Term};
use biscuit_auth::datalog::SymbolTable;
use biscuit_auth::format::schema::{self, term::Content};
use serde::{Deserialize, Serialize};

use super::TokenError;

/// Most `constraint` facts one block (the authority included) may state.
pub const MAX_CONSTRAINTS: usize = 64;
/// Most arguments one grant (in a policy, a ceiling or a request) may constrain.
pub const MAX_GRANT_CONSTRAINTS: usize = 16;
/// Most values one `one_of` may list.
pub const MAX_ONE_OF: usize = 32;
/// Longest glob.
pub const MAX_GLOB: usize = 64;
/// Longest argument path.
pub const MAX_PATH: usize = 128;
/// Most argument facts a verifier states for one call.
pub const MAX_ARGUMENT_FACTS: usize = 64;
/// Deepest nesting a verifier follows into a call's arguments.
pub const MAX_DEPTH: usize = 4;

/// A scalar argument value: a string, an integer or a boolean.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum Scalar {
    /// A boolean.
    Boolean(bool),
    /// An integer.
    Integer(i64),
    /// A string.
    Text(String),
}

/// What one argument's values may be.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Constraint {
    /// Exactly this value.
    Equals(Scalar),
    /// One of these values (for an array: every element one of them).
    OneOf(Vec<Scalar>),
    /// A string starting with this.
    Prefix(String),
    /// A string matching this glob (`*`: any run of characters, `?`: one character).
    Glob(String),
    /// An integer within these bounds (inclusive; at least one given).
    Range {
        /// The least allowed value.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<i64>,
        /// The greatest allowed value.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<i64>,
    },
    /// A string of at most this many bytes (an array: at most this many elements).
    MaxLength(u32),
}

/// One constraint on one argument of one operation of one tool.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct ArgConstraint {
    /// The tool.
    pub tool: String,
    /// The operation.
    pub operation: String,
    /// The argument's path (`repo`, `options.owner`).
    pub argument: String,
    /// What its values may be.
    pub constraint: Constraint,
}

/// A call's argument value as a verifier states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgValue {
    /// A string, integer or boolean.
    Scalar(Scalar),
    /// An array of scalars.
    List(Vec<Scalar>),
}

/// A call's arguments, by path, as the verifier states them to the checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Arguments(pub BTreeMap<String, ArgValue>);

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Boolean(b) => write!(f, "{b}"),
            Scalar::Integer(i) => write!(f, "{i}"),
            Scalar::Text(s) => write!(f, "`{s}`"),
        }
    }
}

impl fmt::Display for Constraint {
    /// What the constraint requires, as a denial names it: `must start with `acme/``.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Constraint::Equals(v) => write!(f, "must equal {v}"),
            Constraint::OneOf(values) => {
                f.write_str("must be one of ")?;
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                Ok(())
            }
            Constraint::Prefix(p) => write!(f, "must start with `{p}`"),
            Constraint::Glob(g) => write!(f, "must match `{g}`"),
            Constraint::Range { min, max } => match (min, max) {
                (Some(min), Some(max)) => write!(f, "must be an integer from {min} to {max}"),
                (Some(min), None) => write!(f, "must be an integer of at least {min}"),
                (None, Some(max)) => write!(f, "must be an integer of at most {max}"),
                (None, None) => f.write_str("must be an integer"),
            },
            Constraint::MaxLength(n) => write!(f, "must be at most {n} long"),
        }
    }
}

impl Constraint {
    /// Whether the constraint is well-formed: a non-empty `one_of` of at most [`MAX_ONE_OF`]
    /// values, a glob of the supported syntax, a range with a bound and `min <= max`, strings
    /// a block can state.
    pub fn problem(&self) -> Option<String> {
        let text = |s: &str| -> Option<String> {
            (!super::printable(s)).then(|| {
                "strings must be 1 to 256 bytes, without quotes, backslashes or controls".into()
            })
        };
        match self {
            Constraint::Equals(Scalar::Text(s)) | Constraint::Prefix(s) => text(s),
            Constraint::Equals(_) | Constraint::MaxLength(_) => None,
            Constraint::OneOf(values) => {
                if values.is_empty() || values.len() > MAX_ONE_OF {
                    return Some(format!("`one_of` lists 1 to {MAX_ONE_OF} values"));
                }
                if values.iter().any(|v| kind_of(v) != kind_of(&values[0])) {
                    return Some("`one_of` lists values of one type".into());
                }
                values.iter().find_map(|v| match v {
                    Scalar::Text(s) => text(s),
                    _ => None,
                })
            }
            Constraint::Glob(g) => glob_problem(g),
            Constraint::Range { min, max } => match (min, max) {
                (None, None) => Some("a range needs `min`, `max` or both".into()),
                (Some(min), Some(max)) if min > max => {
                    Some("a range's `min` exceeds its `max`".into())
                }
                _ => None,
            },
        }
    }

    /// Whether `value` satisfies the constraint, as the token's check decides it.
    pub fn allows(&self, value: &ArgValue) -> bool {
        match (self, value) {
            (Constraint::Equals(want), ArgValue::Scalar(v)) => want == v,
            (Constraint::OneOf(set), ArgValue::Scalar(v)) => set.contains(v),
            (Constraint::OneOf(set), ArgValue::List(items)) => {
                items.iter().all(|v| set.contains(v))
            }
            (Constraint::Prefix(p), ArgValue::Scalar(Scalar::Text(s))) => s.starts_with(p.as_str()),
            (Constraint::Glob(g), ArgValue::Scalar(Scalar::Text(s))) => glob_matches(g, s),
            (Constraint::Range { min, max }, ArgValue::Scalar(Scalar::Integer(i))) => {
                min.is_none_or(|min| *i >= min) && max.is_none_or(|max| *i <= max)
            }
            (Constraint::MaxLength(n), ArgValue::Scalar(Scalar::Text(s))) => s.len() <= *n as usize,
            (Constraint::MaxLength(n), ArgValue::List(items)) => {
                // Biscuit sets hold each value once.
                items.iter().collect::<BTreeSet<_>>().len() <= *n as usize
            }
            _ => false,
        }
    }

    /// Whether every value this constraint allows, `other` allows too (so asking for `self`
    /// where `other` is the rule asks for nothing looser). Decided on the constraints' shapes;
    /// where that cannot tell, the answer is no.
    pub fn implies(&self, other: &Constraint) -> bool {
        use Constraint::*;
        let all = |values: &[Scalar]| {
            values
                .iter()
                .all(|v| other.allows(&ArgValue::Scalar(v.clone())))
        };
        match (self, other) {
            (Equals(v), _) => other.allows(&ArgValue::Scalar(v.clone())),
            (OneOf(values), _) => all(values),
            (Prefix(p), Prefix(q)) => p.starts_with(q.as_str()),
            // `q*` with no other wildcard, where `p` extends `q`.
            (Prefix(p), Glob(g)) => g
                .strip_suffix('*')
                .is_some_and(|q| !q.contains(['*', '?']) && p.starts_with(q)),
            (Glob(g), Glob(h)) => g == h,
            (Glob(g), Prefix(p)) => glob_head(g).starts_with(p.as_str()),
            (Range { min: a, max: b }, Range { min: c, max: d }) => {
                let low = match (a, c) {
                    (_, None) => true,
                    (Some(a), Some(c)) => a >= c,
                    (None, Some(_)) => false,
                };
                let high = match (b, d) {
                    (_, None) => true,
                    (Some(b), Some(d)) => b <= d,
                    (None, Some(_)) => false,
                };
                low && high
            }
            (MaxLength(m), MaxLength(n)) => m <= n,
            _ => false,
        }
    }
}

/// A scalar's type, as Biscuit sets require one per set.
fn kind_of(value: &Scalar) -> u8 {
    match value {
        Scalar::Boolean(_) => 0,
        Scalar::Integer(_) => 1,
        Scalar::Text(_) => 2,
    }
}

/// The literal part of a glob before its first wildcard.
fn glob_head(glob: &str) -> &str {
    let end = glob.find(['*', '?']).unwrap_or(glob.len());
    &glob[..end]
}

fn glob_problem(glob: &str) -> Option<String> {
    if glob.is_empty() || glob.len() > MAX_GLOB {
        return Some(format!("a glob is 1 to {MAX_GLOB} bytes"));
    }
    if !super::printable(glob) || glob.contains(['[', ']', '^']) {
        return Some(
            "a glob has `*` and `?` and no `[`, `]`, `^`, quotes, backslashes or controls".into(),
        );
    }
    None
}

/// The regex a glob compiles to (see the module's documentation).
pub fn glob_regex(glob: &str) -> String {
    let mut regex = String::from("(?s)^");
    for c in glob.chars() {
        match c {
            '*' => regex.push_str(".*"),
            '?' => regex.push('.'),
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' | '#' | '&' | '-' | '~' => {
                regex.push('[');
                regex.push(c);
                regex.push(']');
            }
            c => regex.push(c),
        }
    }
    regex.push('$');
    regex
}

/// Whether `value` matches `glob`, without a regex engine.
fn glob_matches(glob: &str, value: &str) -> bool {
    let pattern: Vec<char> = glob.chars().collect();
    let text: Vec<char> = value.chars().collect();
    // The classic two-pointer match with backtracking to the last star: linear in practice,
    // quadratic at worst, on strings a verifier has already bounded.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// One fact's worth of a constraint: a kind and its value term.
fn facts(constraint: &Constraint) -> Vec<(&'static str, Term)> {
    let scalar = |v: &Scalar| match v {
        Scalar::Boolean(b) => Term::Bool(*b),
        Scalar::Integer(i) => Term::Integer(*i),
        Scalar::Text(s) => Term::Str(s.clone()),
    };
    match constraint {
        Constraint::Equals(v) => vec![("equals", scalar(v))],
        Constraint::OneOf(values) => {
            vec![("one_of", Term::Set(values.iter().map(scalar).collect()))]
        }
        Constraint::Prefix(p) => vec![("prefix", Term::Str(p.clone()))],
        Constraint::Glob(g) => vec![("glob", Term::Str(g.clone()))],
        Constraint::Range { min, max } => min
            .map(|v| ("min", Term::Integer(v)))
            .into_iter()
            .chain(max.map(|v| ("max", Term::Integer(v))))
            .collect(),
        Constraint::MaxLength(n) => vec![("max_length", Term::Integer(i64::from(*n)))],
    }
}

/// The check's source for one kind (the guard, then the kind's expression).
fn check_source(kind: &str) -> Option<String> {
    let expression = match kind {
        "equals" => "$value == {value}",
        "one_of" => "{value}.contains($value)",
        "prefix" => "$value.starts_with({value})",
        "glob" => "$value.matches({value})",
        "min" => "$value >= {value}",
        "max" => "$value <= {value}",
        "max_length" => "$value.length() <= {value}",
        _ => return None,
    };
    Some(format!(
        "check if tool($tool), operation($operation), \
         !($tool == {{tool}} && $operation == {{operation}}) \
         or arg({{argument}}, $value), {expression}"
    ))
}

const KINDS: [&str; 7] = [
    "equals",
    "one_of",
    "prefix",
    "glob",
    "min",
    "max",
    "max_length",
];

/// Each kind's check, parsed once.
static TEMPLATES: LazyLock<Result<Vec<(&'static str, Check)>, biscuit_auth::error::Token>> =
    LazyLock::new(|| {
        KINDS
            .iter()
            .map(|kind| {
                let source = check_source(kind).unwrap_or_default();
                Ok((*kind, Check::try_from(source.as_str())?))
            })
            .collect()
    });

/// A constraint as stated in a block: one fact and one check per kind it compiles to.
pub struct Compiled {
    /// `constraint($tool, $operation, $argument, $kind, $value)`.
    pub fact: biscuit_auth::builder::Fact,
    /// The check enforcing it.
    pub check: Check,
}

/// How many `constraint` facts `constraints` state (a range with both bounds is two).
pub fn stated(constraints: &[ArgConstraint]) -> usize {
    constraints.iter().map(|c| facts(&c.constraint).len()).sum()
}

/// Compiles `c` to its facts and checks.
pub fn compile(c: &ArgConstraint) -> Result<Vec<Compiled>, TokenError> {
    facts(&c.constraint)
        .into_iter()
        .map(|(kind, value)| compiled(&c.tool, &c.operation, &c.argument, kind, value))
        .collect()
}

fn compiled(
    tool: &str,
    operation: &str,
    argument: &str,
    kind: &str,
    value: Term,
) -> Result<Compiled, TokenError> {
    let templates = LazyLock::force(&TEMPLATES)
        .as_ref()
        .map_err(|e| e.clone())?;
    let mut check = templates
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, c)| c.clone())
        .ok_or(TokenError::Malformed)?;
    let check_value = match (kind, &value) {
        ("glob", Term::Str(glob)) => Term::Str(glob_regex(glob)),
        _ => value.clone(),
    };
    check.set("tool", tool)?;
    check.set("operation", operation)?;
    check.set("argument", argument)?;
    check.set("value", check_value)?;
    let fact = biscuit_auth::builder::fact(
        "constraint",
        &[
            Term::Str(tool.to_owned()),
            Term::Str(operation.to_owned()),
            Term::Str(argument.to_owned()),
            Term::Str(kind.to_owned()),
            value,
        ],
    );
    Ok(Compiled { fact, check })
}

/// Whether an argument path is one a constraint may name: segments of `[A-Za-z0-9_-]`
/// joined by dots, at most [`MAX_PATH`] bytes.
pub fn valid_path(path: &str) -> bool {
    path.len() <= MAX_PATH
        && path.split('.').all(|segment| {
            !segment.is_empty()
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
}

/// Why a fact is not a constraint.
type Refusal = &'static str;

/// Reads one `constraint(…)` fact's terms (from any block); `text` resolves a string term as
/// the block's rules require.
pub fn read_fact<'a>(
    terms: &'a [schema::Term],
    text: impl Fn(Option<&'a Content>) -> Result<&'a str, Refusal>,
) -> Result<(ArgConstraint, &'a str), Refusal> {
    let [tool, operation, argument, kind, value] = terms else {
        return Err("a constraint is `constraint($tool, $operation, $argument, $kind, $value)`");
    };
    let tool = text(tool.content.as_ref())?;
    let operation = text(operation.content.as_ref())?;
    let argument = text(argument.content.as_ref())?;
    if !valid_path(argument) {
        return Err("an argument path is dot-joined segments of `[A-Za-z0-9_-]`");
    }
    let kind = KINDS
        .iter()
        .find(|k| Ok(**k) == text(kind.content.as_ref()))
        .ok_or("unknown constraint kind")?;
    let scalar = |content: Option<&'a Content>| -> Result<Scalar, Refusal> {
        match content {
            Some(Content::Bool(b)) => Ok(Scalar::Boolean(*b)),
            Some(Content::Integer(i)) => Ok(Scalar::Integer(*i)),
            Some(Content::String(_)) => Ok(Scalar::Text(text(content)?.to_owned())),
            _ => Err("a constraint's value is a string, an integer or a boolean"),
        }
    };
    let integer = |content: Option<&Content>| match content {
        Some(Content::Integer(i)) => Ok(*i),
        _ => Err("this constraint's value is an integer"),
    };
    let value = value.content.as_ref();
    let constraint = match *kind {
        "equals" => Constraint::Equals(scalar(value)?),
        "one_of" => match value {
            Some(Content::Set(set)) if !set.set.is_empty() && set.set.len() <= MAX_ONE_OF => {
                let mut values: Vec<Scalar> = set
                    .set
                    .iter()
                    .map(|t| scalar(t.content.as_ref()))
                    .collect::<Result<_, _>>()?;
                values.sort();
                Constraint::OneOf(values)
            }
            _ => return Err("`one_of` is a set of 1 to 32 values"),
        },
        "prefix" => Constraint::Prefix(text(value)?.to_owned()),
        "glob" => {
            let glob = text(value)?;
            if glob_problem(glob).is_some() {
                return Err("not a glob");
            }
            Constraint::Glob(glob.to_owned())
        }
        "min" => Constraint::Range {
            min: Some(integer(value)?),
            max: None,
        },
        "max" => Constraint::Range {
            min: None,
            max: Some(integer(value)?),
        },
        _ => Constraint::MaxLength(
            u32::try_from(integer(value)?).map_err(|_| "`max_length` is 0 to 2^32-1")?,
        ),
    };
    Ok((
        ArgConstraint {
            tool: tool.to_owned(),
            operation: operation.to_owned(),
            argument: argument.to_owned(),
            constraint,
        },
        kind,
    ))
}

/// The check a `constraint` fact must come with, as it would be stated in a block whose
/// symbols are `table` (for comparing with what the block states).
pub fn expected_check(
    c: &ArgConstraint,
    kind: &str,
    table: &SymbolTable,
) -> Result<biscuit_auth::datalog::Check, TokenError> {
    let (_, value) = facts(&c.constraint)
        .into_iter()
        .find(|(k, _)| *k == kind)
        .ok_or(TokenError::Malformed)?;
    let compiled = compiled(&c.tool, &c.operation, &c.argument, kind, value)?;
    let mut scratch = table.clone();
    Ok(biscuit_auth::builder::Convert::convert(
        &compiled.check,
        &mut scratch,
    ))
}

impl Arguments {
    /// The arguments of a call, read from its JSON object: strings, integers and booleans by
    /// their path (`options.owner`), arrays of scalars as lists. Floats, nulls, arrays holding
    /// anything else, and anything deeper than [`MAX_DEPTH`] are not stated, so a constraint
    /// naming them fails. Only paths in `wanted` are kept (a verifier states what the token's
    /// constraints name, and no more than [`MAX_ARGUMENT_FACTS`]).
    pub fn from_json(arguments: &serde_json::Value, wanted: &BTreeSet<&str>) -> Self {
        let mut found = BTreeMap::new();
        if let serde_json::Value::Object(members) = arguments {
            for path in wanted.iter().take(MAX_ARGUMENT_FACTS) {
                if let Some(value) = lookup(members, path).and_then(arg_value) {
                    found.insert((*path).to_owned(), value);
                }
            }
        }
        Arguments(found)
    }
}

fn lookup<'a>(
    members: &'a serde_json::Map<String, serde_json::Value>,
    path: &str,
) -> Option<&'a serde_json::Value> {
    let mut segments = path.split('.');
    let mut value = members.get(segments.next()?)?;
    for (depth, segment) in segments.enumerate() {
        if depth + 1 >= MAX_DEPTH {
            return None;
        }
        value = value.as_object()?.get(segment)?;
    }
    Some(value)
}

fn scalar_of(value: &serde_json::Value) -> Option<Scalar> {
    match value {
        serde_json::Value::Bool(b) => Some(Scalar::Boolean(*b)),
        serde_json::Value::Number(n) => n.as_i64().map(Scalar::Integer),
        serde_json::Value::String(s) => Some(Scalar::Text(s.clone())),
        _ => None,
    }
}

fn arg_value(value: &serde_json::Value) -> Option<ArgValue> {
    match value {
        // A Biscuit set holds values of one type.
        serde_json::Value::Array(items) => items
            .iter()
            .map(scalar_of)
            .collect::<Option<Vec<_>>>()
            .filter(|list| list.iter().all(|v| kind_of(v) == kind_of(&list[0])))
            .map(ArgValue::List),
        other => scalar_of(other).map(ArgValue::Scalar),
    }
}

/// An argument value as a Datalog term.
pub fn term(value: &ArgValue) -> Term {
    let scalar = |v: &Scalar| match v {
        Scalar::Boolean(b) => Term::Bool(*b),
        Scalar::Integer(i) => Term::Integer(*i),
        Scalar::Text(s) => Term::Str(s.clone()),
    };
    match value {
        ArgValue::Scalar(v) => scalar(v),
        ArgValue::List(items) => Term::Set(items.iter().map(scalar).collect()),
    }
}

#[cfg(test)]
#[path = "constraints_unit_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "constraints_tests.rs"]
mod verify_tests;

//! The inventory IAM teams administer: agents, tools, issuers, policies and admin tokens, with
//! the validation rules every write must pass. Types here are what the API speaks and what the
//! store keeps.

pub mod admin_token;
pub mod agent;
pub mod approval;
pub mod approval_rule;
pub mod issuer;
pub mod lifecycle;
pub mod page;
pub mod policy;
pub mod reporter;
pub mod tool;

use std::collections::{BTreeMap, BTreeSet};

use crate::token::approval::MAX_APPROVERS;
use crate::token::constraints::{valid_path, Constraint, MAX_GRANT_CONSTRAINTS};

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

/// Longest id (agents, tools, issuers, policies, operations).
pub const MAX_ID_LEN: usize = 64;
/// Most grants in one ceiling or policy, and most operations in one grant or tool.
pub const MAX_ITEMS: usize = 256;

/// Where a list of grants is: what each may state besides tools and operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantsOf {
    /// An agent's ceiling.
    Ceiling,
    /// A policy: grants may require approval.
    Policy,
    /// A mint request: grants may name the arguments of an approved call.
    Request,
}

/// Tool operations granted together: `{tool, operations}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// The tool's id.
    #[schema(example = "github")]
    pub tool: String,
    /// Operations of that tool.
    #[schema(example = json!(["issues.read", "issues.create"]))]
    pub operations: Vec<String>,
    /// What the arguments of these operations may be, by argument path (`repo`,
    /// `options.owner`): one constraint per argument. Absent or empty: any arguments.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(example = json!({"repo": {"prefix": "acme/"}, "labels": {"one_of": ["bug", "triage"]}}))]
    pub constraints: BTreeMap<String, Constraint>,
    /// In a policy only: the human approval these operations need before a mandate grants
    /// them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<approval_rule::ApprovalRule>,
    /// In a mint request only: the exact arguments (a JSON object) of the one call an approval
    /// that binds arguments is asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>, example = json!({"id": "cust-42"}))]
    pub arguments: Option<serde_json::Value>,
}

impl Grant {
    /// A grant of `operations` of `tool` with no argument constraints.
    pub fn new(tool: impl Into<String>, operations: Vec<String>) -> Self {
        Grant {
            tool: tool.into(),
            operations,
            constraints: BTreeMap::new(),
            approval: None,
            arguments: None,
        }
    }
}

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// The field, as a path: `ceiling[0].operations[2]`.
    #[schema(example = "owner")]
    pub field: String,
    /// What is wrong with it.
    #[schema(example = "must not be empty")]
    pub message: String,
}

/// Why a request was refused before anything was done: every invalid field, each named
/// (answered 422 at the edge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub Vec<FieldError>);

impl std::fmt::Display for Invalid {
    /// `field: what is wrong; other: …`, as the CLI prints it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for error in &self.0 {
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            write!(f, "{}: {}", error.field, error.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Invalid {}

impl Invalid {
    /// One invalid field and what is wrong with it.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }
}

/// Collects every problem of a request body, so one answer names all the bad fields.
#[derive(Debug, Default)]
pub struct Validation {
    errors: Vec<FieldError>,
}

impl Validation {
    /// A check with no problems yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a problem with `field`.
    pub fn fail(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// An id: 1 to 64 characters of `[a-z0-9._-]`, starting with a letter or digit.
    pub fn id(&mut self, field: &str, value: &str) {
        if let Err(message) = check_id(value) {
            self.fail(field, message);
        }
    }

    /// Free text: at most `max` characters, no control, invisible or bidirectional-override
    /// characters,
    /// and (when `required`) not blank.
    pub fn text(&mut self, field: &str, value: &str, max: usize, required: bool) {
        if required && value.trim().is_empty() {
            self.fail(field, "must not be empty");
        } else if value.chars().count() > max {
            self.fail(field, format!("must be at most {max} characters"));
        } else if value.chars().any(is_forbidden_char) {
            self.fail(
                field,
                "must not contain control, invisible or bidirectional-override characters",
            );
        }
    }

    /// Optional free text.
    pub fn optional_text(&mut self, field: &str, value: Option<&str>, max: usize) {
        if let Some(value) = value {
            self.text(field, value, max, false);
        }
    }

    /// A list of distinct ids.
    pub fn ids(&mut self, field: &str, values: &[String]) {
        if values.len() > MAX_ITEMS {
            self.fail(field, format!("must have at most {MAX_ITEMS} entries"));
            return;
        }
        let mut seen = BTreeSet::new();
        for (i, value) in values.iter().enumerate() {
            self.id(&format!("{field}[{i}]"), value);
            if !seen.insert(value) {
                self.fail(
                    format!("{field}[{i}]"),
                    format!("`{value}` is listed twice"),
                );
            }
        }
    }

    /// A TTL in seconds between 1 and `cap`.
    pub fn ttl(&mut self, field: &str, value: i64, cap: u32) {
        if value < 1 || value > i64::from(cap) {
            self.fail(field, format!("must be between 1 and {cap} seconds"));
        }
    }

    /// Grants: well-formed ids, at least one operation each, no operation of a tool twice;
    /// `approval` only where `kind` allows it, `arguments` only in a request.
    pub fn grants(&mut self, field: &str, grants: &[Grant], kind: GrantsOf) {
        if grants.len() > MAX_ITEMS {
            self.fail(field, format!("must have at most {MAX_ITEMS} entries"));
            return;
        }
        let mut operations = BTreeSet::new();
        for (i, grant) in grants.iter().enumerate() {
            self.id(&format!("{field}[{i}].tool"), &grant.tool);
            for operation in &grant.operations {
                if !operations.insert((&grant.tool, operation)) {
                    self.fail(
                        format!("{field}[{i}].operations"),
                        format!("`{}` `{operation}` is listed twice", grant.tool),
                    );
                }
            }
            match (&grant.approval, kind) {
                (Some(rule), GrantsOf::Policy) => {
                    self.approval_rule(&format!("{field}[{i}].approval"), rule)
                }
                (Some(_), _) => self.fail(
                    format!("{field}[{i}].approval"),
                    "only a policy's grants require approval",
                ),
                (None, _) => {}
            }
            match (&grant.arguments, kind) {
                (Some(serde_json::Value::Object(_)), GrantsOf::Request) => {
                    let canonical = crate::token::canonical::canonical(
                        grant.arguments.as_ref().unwrap_or(&serde_json::Value::Null),
                    );
                    // JSON escapes a NUL as \u0000, which Postgres refuses to store.
                    if canonical.contains("\\u0000") {
                        self.fail(
                            format!("{field}[{i}].arguments"),
                            "must not contain NUL characters",
                        );
                    }
                    if canonical.len() > approval_rule::MAX_ARGUMENTS_BYTES {
                        self.fail(
                            format!("{field}[{i}].arguments"),
                            format!(
                                "must be at most {} bytes as canonical JSON",
                                approval_rule::MAX_ARGUMENTS_BYTES
                            ),
                        );
                    }
                }
                (Some(_), GrantsOf::Request) => {
                    self.fail(format!("{field}[{i}].arguments"), "must be a JSON object")
                }
                (Some(_), _) => self.fail(
                    format!("{field}[{i}].arguments"),
                    "only a mint request names the arguments of an approved call",
                ),
                (None, _) => {}
            }
            if grant.operations.is_empty() {
                self.fail(
                    format!("{field}[{i}].operations"),
                    "must name at least one operation",
                );
            }
            self.ids(&format!("{field}[{i}].operations"), &grant.operations);
            self.constraints(&format!("{field}[{i}].constraints"), &grant.constraints);
        }
    }

    /// An approval rule of a policy grant at `field`.
    pub fn approval_rule(&mut self, field: &str, rule: &approval_rule::ApprovalRule) {
        let check = self;
        if rule.required == 0 || rule.required as usize > MAX_APPROVERS {
            check.fail(
                format!("{field}.required"),
                format!("must be 1 to {MAX_APPROVERS}"),
            );
        }
        if !approval_rule::VALID_SECONDS.contains(&rule.valid_seconds) {
            check.fail(
                format!("{field}.valid_seconds"),
                format!(
                    "must be {} to {} seconds",
                    approval_rule::VALID_SECONDS.start(),
                    approval_rule::VALID_SECONDS.end()
                ),
            );
        }
        match &rule.approvers {
            approval_rule::Approvers::Principal(_) => {
                if rule.required != 1 {
                    check.fail(
                        format!("{field}.required"),
                        "the principal alone approves: required must be 1",
                    );
                }
            }
            approval_rule::Approvers::Named(named) => {
                if let Some(issuer) = &named.issuer {
                    check.id(&format!("{field}.approvers.issuer"), issuer);
                }
                if named.subjects.is_empty() && named.groups.is_empty() {
                    check.fail(
                        format!("{field}.approvers"),
                        "name at least one subject or group",
                    );
                }
                for (name, values) in [("subjects", &named.subjects), ("groups", &named.groups)] {
                    if values.len() > MAX_ITEMS {
                        check.fail(
                            format!("{field}.approvers.{name}"),
                            format!("must have at most {MAX_ITEMS} entries"),
                        );
                    }
                    for (i, value) in values.iter().enumerate() {
                        check.text(&format!("{field}.approvers.{name}[{i}]"), value, 256, true);
                    }
                }
                let named_count = named.subjects.len();
                if named.groups.is_empty() && (rule.required as usize) > named_count {
                    check.fail(
                        format!("{field}.required"),
                        format!("only {named_count} subjects are named"),
                    );
                }
            }
        }
        if let Some(url) = &rule.webhook {
            if approval_rule::webhook_url(url).is_none() {
                check.fail(
                    format!("{field}.webhook"),
                    "must be an https URL, or http on a loopback address, of at most 512 bytes",
                );
            }
        }
    }

    /// Argument constraints: at most [`MAX_GRANT_CONSTRAINTS`], each on a valid path and well
    /// formed.
    pub fn constraints(&mut self, field: &str, constraints: &BTreeMap<String, Constraint>) {
        if constraints.len() > MAX_GRANT_CONSTRAINTS {
            self.fail(
                field,
                format!("must have at most {MAX_GRANT_CONSTRAINTS} entries"),
            );
            return;
        }
        for (argument, constraint) in constraints {
            if !valid_path(argument) {
                self.fail(
                    format!("{field}.{argument}"),
                    "an argument path is dot-joined segments of `[A-Za-z0-9_-]`, at most 128 bytes",
                );
            } else if let Some(problem) = constraint.problem() {
                self.fail(format!("{field}.{argument}"), problem);
            }
        }
    }

    /// The problems found, if any.
    pub fn finish(self) -> Result<(), Invalid> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Invalid(self.errors))
        }
    }
}

/// Checks one id.
pub fn check_id(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if value.len() > MAX_ID_LEN {
        return Err(format!("must be at most {MAX_ID_LEN} characters"));
    }
    let mut bytes = value.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let rest_ok = bytes.all(|b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_' || b == b'-'
    });
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err("must match [a-z0-9][a-z0-9._-]* (lowercase letters, digits, '.', '_', '-')".to_owned())
    }
}

/// Controls, bidirectional controls, and characters that render as nothing (zero-width
/// spaces and joiners, word joiners, the byte-order mark, soft hyphen): text shown to
/// administrators must look like what it is.
fn is_forbidden_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2060}'..='\u{2064}'
                | '\u{061C}'
                | '\u{00AD}'
                | '\u{180E}'
                | '\u{FEFF}'
        )
}

/// For PATCH bodies: absent stays `None` (unchanged), `null` becomes `Some(None)` (cleared).
pub fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Implements `as_str` and `FromStr` for a unit enum stored as text.
macro_rules! text_enum {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// The wire and stored name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $text),+
                }
            }
        }

        impl std::str::FromStr for $ty {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, String> {
                match text {
                    $($text => Ok($ty::$variant),)+
                    other => Err(format!("unknown {} `{other}`", stringify!($ty))),
                }
            }
        }
    };
}
pub(crate) use text_enum;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_lowercase_slugs_of_bounded_length() {
        for good in ["a", "github", "crm.v2", "sub_agent-7", &"a".repeat(64)] {
            assert_eq!(check_id(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "GitHub",
            "-lead",
            ".hidden",
            "has space",
            "slash/y",
            "ünï",
            "nul\0",
            &"a".repeat(65),
        ] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn text_refuses_controls_bidi_overrides_invisibles_and_oversize() {
        let mut check = Validation::new();
        check.text("a", "fine ünïcode ✓", 20, true);
        check.text("b", "   ", 20, true);
        check.text("c", "x\u{0}y", 20, true);
        check.text("d", "abc\u{202E}fed", 20, true);
        check.text("e", &"x".repeat(21), 20, true);
        check.text("f", "\u{200D}", 20, true);
        check.text("g", "ad\u{00AD}min\u{FEFF}", 20, true);
        let Err(Invalid(errors)) = check.finish() else {
            panic!("expected errors")
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["b", "c", "d", "e", "f", "g"]);
    }

    #[test]
    fn grants_need_operations_and_no_repeats() {
        let mut check = Validation::new();
        let crm = |operations: &[&str]| {
            Grant::new("crm", operations.iter().map(|o| o.to_string()).collect())
        };
        let mut approved = crm(&["delete"]);
        approved.arguments = Some(serde_json::json!({"id": 1}));
        check.grants(
            "grants",
            &[
                crm(&[]),
                crm(&["read", "read"]),
                crm(&["write"]),
                crm(&["write"]),
                approved,
            ],
            GrantsOf::Policy,
        );
        let Err(Invalid(errors)) = check.finish() else {
            panic!("expected errors")
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "grants[0].operations",
                "grants[1].operations",
                "grants[1].operations[1]",
                "grants[3].operations",
                "grants[4].arguments",
            ]
        );
    }

    #[test]
    fn ttls_are_bounded_by_the_cap() {
        let mut check = Validation::new();
        check.ttl("a", 0, 3600);
        check.ttl("b", -5, 3600);
        check.ttl("c", 3601, 3600);
        check.ttl("d", 3600, 3600);
        check.ttl("e", 1, 3600);
        let Err(Invalid(errors)) = check.finish() else {
            panic!("expected errors")
        };
        assert_eq!(errors.len(), 3);
    }
}

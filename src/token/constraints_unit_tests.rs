//! Constraints on their own: globs, implication, reading arguments, malformed shapes.
use super::*;

fn text(s: &str) -> ArgValue {
    ArgValue::Scalar(Scalar::Text(s.into()))
}

#[test]
fn globs_match_as_their_regex_does() {
    for (glob, value, expected) in [
        ("acme/*", "acme/web", true),
        ("acme/*", "acme/", true),
        ("acme/*", "beta/web", false),
        ("a?c", "abc", true),
        ("a?c", "ac", false),
        ("*.md", "docs/readme.md", true),
        ("*.md", "readme.mdx", false),
        ("a.b", "axb", false),
        ("x*y*z", "xaaybbz", true),
        ("x*y*z", "xaayb", false),
    ] {
        assert_eq!(glob_matches(glob, value), expected, "{glob} on {value}");
        assert_eq!(Constraint::Glob(glob.into()).allows(&text(value)), expected);
    }
    assert_eq!(glob_regex("a.b*(c)?"), "(?s)^a[.]b.*[(]c[)].$");
}

#[test]
fn implication_is_decided_on_shapes_and_never_guesses_yes() {
    let prefix = |p: &str| Constraint::Prefix(p.into());
    assert!(prefix("acme/web").implies(&prefix("acme/")));
    assert!(!prefix("acme").implies(&prefix("acme/")));
    assert!(Constraint::Equals(Scalar::Text("acme/x".into())).implies(&prefix("acme/")));
    assert!(Constraint::Glob("acme/*.rs".into()).implies(&prefix("acme/")));
    assert!(!Constraint::Glob("*/acme".into()).implies(&prefix("acme/")));
    assert!(prefix("acme/web").implies(&Constraint::Glob("acme/*".into())));
    assert!(!prefix("acme/web").implies(&Constraint::Glob("acme/*.rs".into())));
    let range = |min, max| Constraint::Range { min, max };
    assert!(range(Some(2), Some(3)).implies(&range(Some(1), Some(5))));
    assert!(!range(None, Some(3)).implies(&range(Some(1), Some(5))));
    assert!(range(Some(1), None).implies(&range(Some(0), None)));
    let one_of =
        |v: &[&str]| Constraint::OneOf(v.iter().map(|s| Scalar::Text((*s).into())).collect());
    assert!(one_of(&["bug"]).implies(&one_of(&["bug", "triage"])));
    assert!(!one_of(&["bug", "p0"]).implies(&one_of(&["bug", "triage"])));
    assert!(Constraint::MaxLength(10).implies(&Constraint::MaxLength(20)));
    assert!(!Constraint::MaxLength(30).implies(&Constraint::MaxLength(20)));
    assert!(!Constraint::MaxLength(3).implies(&prefix("a")));
}

#[test]
fn arguments_are_read_by_path_and_unreadable_values_are_left_out() {
    let json = serde_json::json!({
        "repo": "acme/web", "count": 3, "draft": true, "ratio": 0.5,
        "labels": ["bug", "p1"], "mixed": [{"a": 1}], "options": {"owner": "alice"},
        "deep": {"a": {"b": {"c": {"d": "x"}}}}
    });
    let wanted: BTreeSet<&str> = [
        "repo",
        "count",
        "draft",
        "ratio",
        "labels",
        "mixed",
        "options.owner",
        "deep.a.b.c.d",
        "missing",
    ]
    .into();
    let args = Arguments::from_json(&json, &wanted);
    let keys: Vec<&str> = args.0.keys().map(String::as_str).collect();
    assert_eq!(keys, ["count", "draft", "labels", "options.owner", "repo"]);
    assert_eq!(args.0["options.owner"], text("alice"));
}

#[test]
fn malformed_constraints_are_named() {
    assert!(Constraint::OneOf(vec![]).problem().is_some());
    let mixed = vec![Scalar::Text("a".into()), Scalar::Integer(1)];
    assert!(Constraint::OneOf(mixed).problem().is_some());
    assert!(Constraint::Glob("a[b]".into()).problem().is_some());
    assert!(Constraint::Range {
        min: Some(3),
        max: Some(1)
    }
    .problem()
    .is_some());
    assert!(Constraint::Range {
        min: None,
        max: None
    }
    .problem()
    .is_some());
    assert!(Constraint::Prefix("a\"b".into()).problem().is_some());
    assert!(Constraint::Prefix("acme/".into()).problem().is_none());
}

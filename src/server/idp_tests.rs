//! Unit tests of subject-token checks: segments, critical headers, dates, groups, URLs.
use super::*;

fn segment(value: Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

#[test]
fn tokens_that_are_not_three_base64_json_segments_are_malformed() {
    let ok_header = segment(serde_json::json!({"alg": "RS256"}));
    for bad in [
        "".to_owned(),
        "a.b".to_owned(),
        "a.b.c.d".to_owned(),
        format!("{ok_header}.!!!.sig"),
        format!("{}.{}.sig", segment(serde_json::json!([1])), ok_header),
        "x".repeat(MAX_SUBJECT_TOKEN_BYTES + 1),
    ] {
        assert!(
            matches!(peek(&bad), Err(IdpError::Malformed(_))),
            "{bad:.40}"
        );
    }
}

#[test]
fn a_header_naming_critical_extensions_is_refused() {
    let claims = segment(serde_json::json!({"iss": "https://idp"}));
    let crit = segment(serde_json::json!({"alg": "RS256", "crit": ["exp"], "exp": 1}));
    assert!(matches!(
        peek(&format!("{crit}.{claims}.sig")),
        Err(IdpError::Malformed(_))
    ));
    let plain = segment(serde_json::json!({"alg": "RS256"}));
    assert!(peek(&format!("{plain}.{claims}.sig")).is_ok());
}

#[test]
fn dates_beyond_the_year_9999_or_before_1970_are_malformed_not_forever() {
    for bad in [
        serde_json::json!(1e300),
        serde_json::json!(-1),
        serde_json::json!("1"),
    ] {
        let claims: Map<String, Value> =
            serde_json::from_value(serde_json::json!({ "exp": bad })).unwrap();
        assert!(
            matches!(numeric_date(&claims, "exp"), Err(IdpError::Malformed(_))),
            "{bad}"
        );
    }
    let claims: Map<String, Value> =
        serde_json::from_value(serde_json::json!({"exp": 1_800_000_000.5})).unwrap();
    assert_eq!(numeric_date(&claims, "exp").unwrap(), Some(1_800_000_000));
}

#[test]
fn groups_are_read_from_a_list_or_a_string_and_bounded() {
    let claims: Map<String, Value> = serde_json::from_value(serde_json::json!({
        "list": ["a", 3, "", "b"], "one": "solo", "many": vec!["g"; 1000]
    }))
    .unwrap();
    assert_eq!(groups_of(&claims, Some("list")), ["a", "b"]);
    assert_eq!(groups_of(&claims, Some("one")), ["solo"]);
    assert_eq!(groups_of(&claims, Some("many")).len(), MAX_GROUPS);
    assert!(groups_of(&claims, None).is_empty());
}

#[test]
fn only_https_or_loopback_http_urls_are_fetched() {
    assert!(allowed_url("https://idp.example.com/jwks").is_some());
    assert!(allowed_url("http://127.0.0.1:9/jwks").is_some());
    assert!(allowed_url("http://idp.example.com/jwks").is_none());
    assert!(allowed_url("file:///etc/passwd").is_none());
}

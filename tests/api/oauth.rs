//! RFC 8693 token exchange, driven by curl: plain form encoding and HTTP Basic client
//! authentication, nothing of the project's own types.

use std::process::Command;

use mandate::clock::Clock;
use reqwest::Method;
use serde_json::Value;

use crate::both_stores;
use crate::helpers::fixtures::mint_setup;
use crate::helpers::TestApp;

const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// POSTs the form with curl (off the runtime the server shares); returns (status, headers,
/// JSON body).
async fn curl(
    url: &str,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> (u16, String, Value) {
    let url = url.to_owned();
    let basic = basic.map(|(a, b)| (a.to_owned(), b.to_owned()));
    let form: Vec<(String, String)> = form
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let basic = basic.as_ref().map(|(a, b)| (a.as_str(), b.as_str()));
        let form: Vec<(&str, &str)> = form.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        curl_blocking(&url, basic, &form)
    })
    .await
    .unwrap()
}

fn curl_blocking(
    url: &str,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> (u16, String, Value) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-D", "-", "-o", "-", "-X", "POST", url]);
    if let Some((id, secret)) = basic {
        cmd.args(["--user", &format!("{id}:{secret}")]);
    }
    for (name, value) in form {
        cmd.args(["--data-urlencode", &format!("{name}={value}")]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "curl: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (
        status,
        head.to_lowercase(),
        serde_json::from_str(body).unwrap(),
    )
}

both_stores!(
    token_exchange_works_with_a_plain_form_and_http_basic,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (idp, secret) = mint_setup(&app).await;
        let jwt = idp.sign("rsa-1", &idp.claims("alice", &["support"], app.clock.now()));
        let url = app.url("/oauth2/token");
        let form = [
            ("grant_type", EXCHANGE),
            ("subject_token", jwt.as_str()),
            ("subject_token_type", JWT_TYPE),
            ("scope", "crm:read crm:write"),
            ("task_description", "Reconcile ACME's invoices & reply"),
            ("task_ref", "JIRA-42"),
        ];
        let (status, headers, body) = curl(&url, Some(("bot", &secret)), &form).await;
        assert_eq!(status, 200, "{body}");
        assert!(headers.contains("cache-control: no-store"), "{headers}");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(
            body["issued_token_type"],
            "urn:mandate:params:oauth:token-type:mandate"
        );
        assert_eq!(body["scope"], "crm:read crm:write");
        assert_eq!(body["expires_in"], 600);
        assert!(body["access_token"].as_str().unwrap().len() > 100);
        let id: uuid::Uuid = body["mandate_id"].as_str().unwrap().parse().unwrap();
        let issuance = app.store.mandate(id).await.unwrap().unwrap();
        assert_eq!(issuance.task_id, "JIRA-42");
        assert_eq!(
            issuance.task_description,
            "Reconcile ACME's invoices & reply"
        );
        assert_eq!(issuance.request_meta["endpoint"], "/oauth2/token");

        // The agent secret may ride as actor_token instead.
        let mut with_actor = form.to_vec();
        with_actor.push(("actor_token", secret.as_str()));
        with_actor.push((
            "actor_token_type",
            "urn:mandate:params:oauth:token-type:agent-secret",
        ));
        let (status, _, body) = curl(&url, None, &with_actor).await;
        assert_eq!(status, 200, "{body}");
    }
);

/// HTTP Basic credentials, if any.
type Basic<'a> = Option<(&'a str, &'a str)>;
/// Form parameters in order.
type Form = Vec<(String, String)>;

/// A token exchange form asking for `scope` with `subject_token`.
fn form(scope: &str, subject_token: &str) -> Vec<(String, String)> {
    vec![
        ("grant_type".into(), EXCHANGE.into()),
        ("subject_token".into(), subject_token.into()),
        ("subject_token_type".into(), JWT_TYPE.into()),
        ("scope".into(), scope.into()),
        ("task_description".into(), "t".into()),
    ]
}

async fn run(
    url: &str,
    basic: Option<(&str, &str)>,
    form: &[(String, String)],
) -> (u16, String, Value) {
    let pairs: Vec<(&str, &str)> = form.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    curl(url, basic, &pairs).await
}

both_stores!(
    token_exchange_errors_follow_rfc_6749,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (idp, secret) = mint_setup(&app).await;
        let jwt = idp.sign("rsa-1", &idp.claims("alice", &["support"], app.clock.now()));
        let url = app.url("/oauth2/token");
        let bot = Some(("bot", secret.as_str()));
        let good = form("crm:read", &jwt);
        let without_task: Vec<_> = good
            .iter()
            .filter(|(k, _)| k != "task_description")
            .cloned()
            .collect();
        let password: Vec<_> = good
            .iter()
            .map(|(k, v)| {
                let v = if k == "grant_type" {
                    "password".to_owned()
                } else {
                    v.clone()
                };
                (k.clone(), v)
            })
            .collect();
        let mut repeated = good.clone();
        repeated.push(("scope".into(), "crm:write".into()));
        let cases: Vec<(Basic, Form, u16, &str)> = vec![
            (
                Some(("bot", "mnd_agt_wrong")),
                good.clone(),
                401,
                "invalid_client",
            ),
            (
                Some(("helper", secret.as_str())),
                good.clone(),
                401,
                "invalid_client",
            ),
            (None, good.clone(), 401, "invalid_client"),
            (bot, form("crm:delete", &jwt), 400, "invalid_scope"),
            (bot, form("crm", &jwt), 400, "invalid_scope"),
            (bot, form("crm:read", "not-a-jwt"), 400, "invalid_request"),
            (bot, without_task, 400, "invalid_request"),
            (bot, password, 400, "unsupported_grant_type"),
            // A repeated parameter is refused (RFC 6749 section 3.2).
            (bot, repeated, 400, "invalid_request"),
        ];
        for (basic, form, status, error) in cases {
            let (got, headers, body) = run(&url, basic, &form).await;
            assert_eq!(
                (got, body["error"].as_str()),
                (status, Some(error)),
                "{body}"
            );
            assert!(body["error_description"].is_string());
            if error == "invalid_client" {
                assert!(headers.contains("www-authenticate: basic"), "{headers}");
            }
        }
        // JSON is not the token endpoint's format.
        let json = serde_json::json!({"grant_type": EXCHANGE});
        let response = app
            .call(Method::POST, "/oauth2/token", None, Some(&json))
            .await;
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request");
    }
);

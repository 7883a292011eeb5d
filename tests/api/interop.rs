//! Interoperability with another Biscuit library: biscuit-python (PyPI `biscuit-python`)
//! narrows a mandate by docs/token-schema.md and mandate verifies it; mandate narrows one and
//! biscuit-python verifies it.

use std::process::{Command, Stdio};

use chrono::Duration;
use mandate::clock::Clock;
use mandate::token::attenuate::{attenuate, Attenuation};
use mandate::token::constraints::{ArgConstraint, Constraint, Scalar};
use mandate::token::keys::KeysDocument;
use mandate::token::verify::{
    verify, verify_with, AccessRequest, AgentKeys, Hop, Trust, VerifyOptions,
};
use mandate::token::{Right, TokenError};
use serde_json::json;

use crate::helpers::fixtures::{mint_body, mint_setup};
use crate::helpers::{Backend, TestApp};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/biscuit_interop.py"
);

/// Runs the Python side with `token` on stdin; fails loudly when biscuit-python is missing.
async fn python(args: Vec<String>, token: String) -> String {
    run_python(SCRIPT, args, token).await
}

/// Runs `script` with `args` and `stdin`; its standard output.
pub(crate) async fn run_python(script: &'static str, args: Vec<String>, stdin: String) -> String {
    let token = stdin;
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut child = Command::new("python3")
            .arg(script)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(token.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "biscuit-python failed (install it with `python3 -m pip install biscuit-python==0.4.0`): {stderr}"
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    })
    .await
    .unwrap()
}

/// A crm read+write mandate for alice, and mandate's keys, parsed and saved to a file for the
/// Python side.
struct Minted {
    app: TestApp,
    now: chrono::DateTime<chrono::Utc>,
    token: String,
    keys: mandate::token::keys::KeySet,
    keys_file: std::path::PathBuf,
}

async fn minted_with_keys() -> Minted {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (idp, secret) = mint_setup(&app).await;
    let now = app.clock.now();
    let jwt = idp.sign("rsa-1", &idp.claims("alice", &["support"], now));
    let (status, minted) = app
        .agent(&secret)
        .mint_body(mint_body(
            &jwt,
            json!([{"tool": "crm", "operations": ["read", "write"]}]),
        ))
        .await;
    assert_eq!(status, 201, "{minted}");
    let token = minted["token"].as_str().unwrap().to_owned();
    let document: KeysDocument = app
        .get("/.well-known/mandate-keys")
        .await
        .json()
        .await
        .unwrap();
    let keys = document.key_set().unwrap();
    let keys_file = app.db.data_dir().join("keys.json");
    std::fs::write(&keys_file, serde_json::to_string(&document).unwrap()).unwrap();
    Minted {
        app,
        now,
        token,
        keys,
        keys_file,
    }
}

#[tokio::test]
async fn mandates_narrowed_and_verified_by_biscuit_python_interoperate() {
    let Minted {
        // Holds the data directory the keys file is in.
        app: _app,
        now,
        token,
        keys,
        keys_file,
    } = minted_with_keys().await;
    let keys_path = keys_file.to_str().unwrap().to_owned();
    let now_text = now.to_rfc3339();

    // biscuit-python narrows; mandate verifies.
    let narrowed = python(
        vec!["narrow".into(), keys_path.clone(), now_text.clone()],
        token.clone(),
    )
    .await;
    let at = |secs: i64, op: &str| AccessRequest {
        tool: "crm".into(),
        operation: op.into(),
        now: now + Duration::seconds(secs),
    };
    let verified = verify(&narrowed, &keys, &at(0, "read")).unwrap();
    assert_eq!(verified.principal_subject, "alice");
    assert_eq!(
        verified.hops,
        vec![Hop {
            agent: "py-agent".into(),
            attested: false
        }]
    );
    assert!(matches!(
        verify(&narrowed, &keys, &at(0, "write")),
        Err(TokenError::NotAuthorized(_))
    ));
    assert!(matches!(
        verify(&narrowed, &keys, &at(61, "read")),
        Err(TokenError::Expired)
    ));
    assert!(
        verify(&token, &keys, &at(0, "write")).is_ok(),
        "the parent is unchanged"
    );

    // mandate narrows; biscuit-python verifies.
    let ours = attenuate(
        &token,
        &Attenuation {
            rights: Some(vec![Right {
                tool: "crm".into(),
                operation: "read".into(),
            }]),
            delegate: Some("rust-agent".into()),
            ..Attenuation::default()
        },
    )
    .unwrap();
    let read = python(
        vec![
            "verify".into(),
            keys_path.clone(),
            now_text.clone(),
            "crm".into(),
            "read".into(),
        ],
        ours.clone(),
    )
    .await;
    let read: serde_json::Value = serde_json::from_str(&read).unwrap();
    assert_eq!(read, json!({"allowed": true, "principal": "alice"}));
    let write = python(
        vec![
            "verify".into(),
            keys_path,
            now_text,
            "crm".into(),
            "write".into(),
        ],
        ours,
    )
    .await;
    let write: serde_json::Value = serde_json::from_str(&write).unwrap();
    assert_eq!(write["allowed"], false, "{write}");
}

/// The Datalog blocks of docs/token-schema.md, as written there.
fn schema_snippets() -> Vec<String> {
    let doc = include_str!("../../docs/token-schema.md");
    doc.split("```datalog\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn every_datalog_block_of_the_schema_doc_appended_by_biscuit_python_verifies_as_documented() {
    let Minted {
        app,
        now,
        token,
        keys,
        keys_file,
    } = minted_with_keys().await;
    let snippets = schema_snippets();
    assert_eq!(snippets.len(), 3, "the schema doc's Datalog blocks");
    let trust = Trust {
        keys: &keys,
        agent_keys: &AgentKeys::new(),
        is_revoked: &|_| false,
    };
    let call = |op: &str| AccessRequest {
        tool: "crm".into(),
        operation: op.into(),
        now,
    };
    let mut narrowed = Vec::new();
    for (i, snippet) in snippets.iter().enumerate() {
        let file = app.db.data_dir().join(format!("snippet-{i}.datalog"));
        std::fs::write(&file, snippet).unwrap();
        let args = vec![
            "append".to_owned(),
            keys_file.to_str().unwrap().to_owned(),
            now.to_rfc3339(),
            file.to_str().unwrap().to_owned(),
        ];
        narrowed.push(python(args, token.clone()).await);
    }
    // delegate, crm:read only, an expiry in 2030.
    let options = VerifyOptions::default();
    let first = verify_with(&narrowed[0], &trust, &call("read"), None, &options).unwrap();
    assert_eq!(first.hops[0].agent, "helper");
    assert!(matches!(
        verify_with(&narrowed[0], &trust, &call("write"), None, &options),
        Err(TokenError::NotAuthorized(_))
    ));
    // Only calls naming acme/api.
    assert!(verify_with(
        &narrowed[1],
        &trust,
        &call("write"),
        Some("acme/api"),
        &options
    )
    .is_ok());
    assert!(verify_with(
        &narrowed[1],
        &trust,
        &call("write"),
        Some("acme/web"),
        &options
    )
    .is_err());
    assert!(verify_with(&narrowed[1], &trust, &call("write"), None, &options).is_err());
    // crm:write only with a `ticket` starting with `T-`; reads are unconstrained.
    let checked = mandate::token::verify::check(&narrowed[2], &trust, &options).unwrap();
    let write = |ticket: &str| {
        checked.authorize_call(
            &|_| false,
            &call("write"),
            None,
            Some(&json!({ "ticket": ticket })),
            &options,
        )
    };
    assert!(write("T-42").is_ok());
    assert!(matches!(
        write("X-42"),
        Err(TokenError::ArgumentNotAllowed { argument, .. }) if argument == "ticket"
    ));
    assert!(verify_with(&narrowed[2], &trust, &call("read"), None, &options).is_ok());
}

#[tokio::test]
async fn biscuit_python_enforces_the_argument_constraints_mandate_writes() {
    let Minted {
        app: _app,
        now,
        token,
        keys_file,
        ..
    } = minted_with_keys().await;
    let constrained = attenuate(
        &token,
        &Attenuation {
            constraints: vec![
                ArgConstraint {
                    tool: "crm".into(),
                    operation: "write".into(),
                    argument: "repo".into(),
                    constraint: Constraint::Glob("acme/*".into()),
                },
                ArgConstraint {
                    tool: "crm".into(),
                    operation: "write".into(),
                    argument: "labels".into(),
                    constraint: Constraint::OneOf(vec![
                        Scalar::Text("bug".into()),
                        Scalar::Text("triage".into()),
                    ]),
                },
                ArgConstraint {
                    tool: "crm".into(),
                    operation: "write".into(),
                    argument: "count".into(),
                    constraint: Constraint::Range {
                        min: Some(1),
                        max: Some(5),
                    },
                },
            ],
            ..Attenuation::default()
        },
    )
    .unwrap();
    let call = |operation: &str, arguments: serde_json::Value| {
        let args = vec![
            "verify-call".to_owned(),
            keys_file.to_str().unwrap().to_owned(),
            now.to_rfc3339(),
            "crm".to_owned(),
            operation.to_owned(),
            arguments.to_string(),
        ];
        let token = constrained.clone();
        async move {
            let out: serde_json::Value = serde_json::from_str(&python(args, token).await).unwrap();
            out["allowed"] == true
        }
    };
    assert!(
        call(
            "write",
            json!({"repo": "acme/web", "labels": ["bug"], "count": 2})
        )
        .await
    );
    assert!(
        !call(
            "write",
            json!({"repo": "evil/web", "labels": ["bug"], "count": 2})
        )
        .await
    );
    assert!(
        !call(
            "write",
            json!({"repo": "acme/web", "labels": ["bug", "p0"], "count": 2})
        )
        .await
    );
    assert!(
        !call(
            "write",
            json!({"repo": "acme/web", "labels": ["bug"], "count": 9})
        )
        .await
    );
    assert!(
        !call("write", json!({"repo": "acme/web", "labels": ["bug"]})).await,
        "a missing argument fails"
    );
    assert!(
        call("read", json!({})).await,
        "other operations are unconstrained"
    );
}

/// The authority example of docs/token-schema.md: what follows its marker, up to the fence.
fn authority_example() -> String {
    let doc = include_str!("../../docs/token-schema.md");
    let after = doc
        .split("<!-- authority-example:")
        .nth(1)
        .unwrap_or_else(|| panic!("the schema doc marks its authority example"));
    let block = after.split("```\n").nth(1).unwrap_or_default();
    block.to_owned()
}

#[test]
fn the_schema_docs_authority_example_is_a_minted_authority_block_and_parses() {
    use mandate::token::mint::{mint, MandateSpec};
    use sha2::Digest as _;
    let spec = MandateSpec {
        approvals: vec![],
        mandate_id: "01a22658-d042-787f-ad56-cce53d3723bd".into(),
        task_id: "task-01a22658-d042-787f-ad56-cce53d3723bd".into(),
        task_digest: sha2::Sha256::digest(b"Summarise open CRM tickets").to_vec(),
        principal_subject: "alice".into(),
        principal_issuer: "https://login.example.com/".into(),
        agent_id: "support-orchestrator".into(),
        rights: vec![Right {
            tool: "crm".into(),
            operation: "read".into(),
        }],
        expires_at: "2026-11-29T08:23:04Z".parse().unwrap(),
        constraints: vec![],
        holder_key: None,
    };
    let root = biscuit_auth::KeyPair::new();
    let token = mint(&spec, &root, 1).unwrap().token;
    let printed = biscuit_auth::Biscuit::from_base64(&token, root.public())
        .unwrap()
        .print_block_source(0)
        .unwrap();
    let example = authority_example();
    assert_eq!(
        example.trim(),
        printed.trim(),
        "docs/token-schema.md's example"
    );
    // Any Biscuit library can read it back: it is Datalog, with nothing elided.
    biscuit_auth::builder::BlockBuilder::new()
        .code(example.as_str())
        .unwrap();
}
